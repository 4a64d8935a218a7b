"""The result tables' builders: finished runs in, a `Built` table out.

Each builder takes a table's finished runs (`Run`, arm by arm, in seed
order) and returns the markdown rows, the CSV rows and the notes under
the table. Every mean, sample std, 95 % interval and paired verdict comes
from `experiments.stats`; a cell over several seeds reads `OVER_SEEDS`.

Private module; `experiments.results` re-exports the builders and the
arm constants the registry and the tests use.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

from experiments import lottery_report
from experiments import stats
from experiments import sweep as sweep_lib
from experiments._result_types import Built
from experiments._result_types import ResultsError
from experiments._result_types import RunOf


def _seeds_of(runs: list) -> list:
  """The seeds of `runs`, sorted."""
  return sorted({r.seed for r in runs})


def _seed_list(seeds: list) -> str:
  """``seed 0`` or ``seeds 0, 1, 2``, as the tables' notes say it."""
  return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


OVER_SEEDS = "mean ± sample std [95% CI, Student t] over the seeds"
"""How the tables' cells with several seeds read (``stats``' convention)."""


def _seeds_read(seeds: list) -> str:
  """The seeds, then how the cells read when there are several: ``seed 0``
  or ``seeds 0, 1, 2; `` + `OVER_SEEDS`."""
  return _seed_list(seeds) + ("; " + OVER_SEEDS if len(seeds) > 1 else "")


def _acc(values: Sequence[float]) -> str:
  """One value as is; several as mean ± sample std [95% CI]."""
  if len(values) == 1:
    return f"{values[0]:.4f}"
  return stats.format_mean_std_ci(stats.summarize(values), with_n=False)


def _stat_cells(values: Sequence[float]) -> list:
  """n, mean, sample std, 95% CI low and high of `values` (CSV cells; the
  interval blank for one value, all but n blank for none)."""
  if not values:
    return [0, None, None, None, None]
  st = stats.summarize(values)
  return [st["n"], st["mean"], st["std"], *(st["ci95"] or (None, None))]


def read_json(path: str):
  """The JSON file at `path`."""
  with open(path) as f:
    return json.load(f)


def _control_values(workdir: str, level: int, name: str) -> list:
  """The test accuracies (and early-stop steps) of a lottery run's control
  `name` at `level`, one per control seed, in seed order."""
  d = os.path.join(workdir, f"level_{level:02d}", "controls")
  out = []
  while os.path.exists(p := os.path.join(d, f"{name}_{len(out)}",
                                         "result.json")):
    out.append(read_json(p))
  return out


def lottery_table(runs: list) -> Built:
  """Per level: remaining %, ticket, random re-init, random prune (test
  accuracy), ticket − re-init (paired, with verdict), early-stop steps.

  Several seeds: every arm is summarized over the seeds (a control's value
  per seed is the mean over that run's control seeds); ticket − re-init is
  the paired difference over seeds (`stats.paired`). One seed (the main
  job): the ticket is one value, the controls are summarized over their
  own seeds, and ticket − re-init is the one pair (ticket, mean re-init)
  of that seed: no interval, "indistinguishable at n=1".
  """
  levels = [r["level"] for r in runs[0].summary["levels"]]
  one = len(runs) == 1
  header = ["level", "remaining %", "ticket", "random re-init",
            "random prune", "ticket − re-init", "early-stop step: ticket",
            "early-stop step: re-init"]
  csv_header = ["level", "remaining_percent"]
  for arm in ("ticket", "random_reinit", "random_prune"):
    csv_header += [f"{arm}_{k}" for k in ("n", "mean", "std", "ci95_lo",
                                          "ci95_hi")]
  csv_header += ["diff_n", "diff_mean", "diff_std", "diff_ci95_lo",
                 "diff_ci95_hi", "verdict", "ticket_early_stop_mean",
                 "reinit_early_stop_mean"]
  rows, csv_rows = [], []
  for i, level in enumerate(levels):
    trunk = [r.summary["levels"][i] for r in runs]
    remaining = 100 * sum(t["remaining_fraction"] for t in trunk) / len(trunk)
    ticket = [t["test_accuracy"] for t in trunk]
    ticket_es = [t["early_stop_step"] for t in trunk]
    arms, es = {}, {}
    for name in ("random_reinit", "random_prune"):
      per_run = [_control_values(r.workdir, level, name) for r in runs]
      if not all(per_run):
        continue
      if one:
        arms[name] = [c["test_accuracy"] for c in per_run[0]]
        es[name] = [c["early_stop_step"] for c in per_run[0]]
      else:
        arms[name] = [sum(c["test_accuracy"] for c in cs) / len(cs)
                      for cs in per_run]
        es[name] = [sum(c["early_stop_step"] for c in cs) / len(cs)
                    for cs in per_run]
    diff = None
    if "random_reinit" in arms:
      reinit = arms["random_reinit"]
      diff = stats.paired(ticket, [sum(reinit) / len(reinit)] if one
                          else reinit)
    mean_es = lambda xs: sum(xs) / len(xs)
    rows.append([
        str(level), f"{remaining:.1f}", _acc(ticket),
        *(_acc(arms[n]) if n in arms else "-"
          for n in ("random_reinit", "random_prune")),
        stats.format_paired(diff) if diff else "-",
        (f"{mean_es(ticket_es):.0f}" if one else
         f"{mean_es(ticket_es):.0f} ± {stats.summarize(ticket_es)['std']:.0f}"),
        (f"{mean_es(es['random_reinit']):.0f}" if "random_reinit" in es
         else "-")])
    row = [level, remaining]
    for values in (ticket, arms.get("random_reinit"),
                   arms.get("random_prune")):
      row += _stat_cells(values)
    if diff:
      ci = diff["ci95"] or (None, None)
      row += [diff["n"], diff["mean_diff"], diff["std"], *ci,
              diff["verdict"]]
    else:
      row += [0, None, None, None, None, None]
    row += [mean_es(ticket_es),
            mean_es(es["random_reinit"]) if "random_reinit" in es else None]
    csv_rows.append(row)
  s0 = runs[0].summary
  n_controls = len(_control_values(runs[0].workdir, levels[-1],
                                   "random_reinit"))
  if one:
    notes = (f"Test accuracy ({s0['model']} on {s0['dataset']}, seed "
             f"{runs[0].seed}). The ticket is one run; each control is "
             f"mean ± sample std [95% CI, Student t] over its {n_controls} "
             "seeds; ticket − re-init is the ticket minus the re-init "
             "mean, one pair (one trunk seed), so no interval. "
             "Early-stop step: minimum validation loss (the ticket's; the "
             "re-init's mean over its seeds).")
  else:
    notes = (f"Test accuracy ({s0['model']} on {s0['dataset']}), mean ± "
             f"sample std [95% CI, Student t] over {len(runs)} seeds "
             f"({', '.join(str(r.seed) for r in runs)}); each seed is one "
             f"IMP run with {n_controls} random re-init and random prune "
             "control(s) per level (a control's value per seed: the mean "
             "over them). Ticket − re-init: the paired difference over seeds "
             "with its verdict. Early-stop step: minimum validation loss, "
             "mean ± sample std over seeds (re-init: mean).")
  return Built(header, rows, csv_header, csv_rows, notes)


def plain_table(runs: list, compare: Sequence[tuple] = ()) -> Built:
  """Per arm: test accuracy (one seed as is, several as mean ± sample std
  [95% CI]), remaining weights, wall time (mean over seeds); the notes give
  the paired difference over seeds of each (arm, arm) in `compare`."""
  arms = list(dict.fromkeys(r.arm for r in runs))
  header = ["run", "test accuracy", "remaining weights", "wall time"]
  csv_header = ["run", "n", "test_accuracy_mean", "test_accuracy_std",
                "ci95_lo", "ci95_hi", "remaining_fraction", "wall_seconds"]
  rows, csv_rows = [], []
  for arm in arms:
    mine = [r for r in runs if r.arm == arm]
    accs = [r.summary["final"]["test_accuracy"] for r in mine]
    rem = sum(r.summary["final"]["remaining_fraction"] for r in mine) / len(
        mine)
    secs = sum(r.seconds for r in mine) / len(mine)
    rows.append([arm, _acc(accs), f"{100 * rem:.1f}%", f"{secs:.0f} s"])
    csv_rows.append([arm, *_stat_cells(accs), rem, secs])
  seeds = _seeds_of(runs)
  notes = (f"Test accuracy ({runs[0].summary.get('model', 'the model')}, "
           + _seeds_read(seeds) + "). Wall time: the run's "
           "launch.train process, start-up and compilation included, on a "
           "machine shared with other jobs." + paired_arms(runs, compare))
  return Built(header, rows, csv_header, csv_rows, notes)


def paired_arms(runs: list, compare: Sequence[tuple]) -> str:
  """`A − B <paired difference>` over the seeds for each (A, B) of arm
  labels in `compare` ("" for one seed or none)."""
  if len(_seeds_of(runs)) < 2 or not compare:
    return ""
  acc = lambda arm: _accs(sorted((r for r in runs if r.arm == arm),
                                 key=lambda r: r.seed))
  for a, b in compare:
    if not acc(a) or not acc(b):
      raise ResultsError(f"compare: no finished run of arm {a!r} or {b!r}")
  return " Paired over seeds: " + "; ".join(
      f"{a} − {b}: {stats.format_paired(stats.paired(acc(a), acc(b)))}"
      for a, b in compare) + "."


def flags_table(runs: list, compare: Sequence[tuple] = ()) -> Built:
  """Per arm: its extra command-line flags and test accuracy (one seed as
  is, several as mean ± sample std [95% CI]); the notes give the paired
  difference over seeds of each (arm, arm) in `compare` (bind it with
  `functools.partial`)."""
  arms = list(dict.fromkeys(r.arm for r in runs))
  header = ["run", "extra flags", "test accuracy"]
  csv_header = ["run", "extra_flags", "n", "test_accuracy_mean",
                "test_accuracy_std", "ci95_lo", "ci95_hi"]
  rows, csv_rows = [], []
  for arm in arms:
    mine = [r for r in runs if r.arm == arm]
    flags = " ".join(f"--config.{f}={sweep_lib.cli_value(v)}"
                     for f, v in mine[0].overrides)
    accs = [r.summary["final"]["test_accuracy"] for r in mine]
    rows.append([arm, f"`{flags}`" if flags else "", _acc(accs)])
    csv_rows.append([arm, flags, *_stat_cells(accs)])
  seeds = _seeds_of(runs)
  notes = ("Test accuracy, " + _seed_list(seeds)
           + (f" ({OVER_SEEDS})"
              if len(seeds) > 1 else "") + "." + paired_arms(runs, compare))
  return Built(header, rows, csv_header, csv_rows, notes)


def fbs_table(runs: list) -> Built:
  """Per arm (a density d): test accuracy (one seed as is, several as mean
  ± sample std [95% CI]) and `final.macs_fraction` (mean over seeds); the
  notes give the saliency predictors' share of the dense MACs."""
  arms = list(dict.fromkeys(r.arm for r in runs))
  header = ["d", "test accuracy", "macs_fraction"]
  csv_header = ["d", "n", "test_accuracy_mean", "test_accuracy_std",
                "ci95_lo", "ci95_hi", "macs_fraction_mean",
                "macs_fraction_std", "macs_overhead_fraction"]
  rows, csv_rows = [], []
  mean = lambda xs: sum(xs) / len(xs)
  overhead = []
  for arm in arms:
    mine = [r.summary["final"] for r in runs if r.arm == arm]
    accs = [f["test_accuracy"] for f in mine]
    macs = [f["macs_fraction"] for f in mine]
    over = [f["macs_overhead_fraction"] for f in mine]
    overhead += over
    m = stats.summarize(macs)
    rows.append([arm, _acc(accs), f"{mean(macs):.3f}"])
    csv_rows.append([arm, *_stat_cells(accs), m["mean"], m["std"],
                     mean(over)])
  seeds = _seeds_of(runs)
  notes = ("Test accuracy, " + _seeds_read(seeds)
           + ". macs_fraction: MACs executed "
           "(saliency predictors included) over the dense network's, "
           "averaged over the test set" + (" and the seeds" if len(seeds) > 1
                                           else "") +
           f"; the predictors alone: {mean(overhead):.4f} of the dense "
           "MACs.")
  return Built(header, rows, csv_header, csv_rows, notes)


def scratch_table(runs: list) -> Built:
  """Per arm (a structured-pruning method): MACs fraction (mean over seeds),
  the pruned network's test accuracy and its Scratch-E and Scratch-B
  baselines' (`summary["baselines"]`), one seed as is, several as mean ±
  sample std [95% CI]; pruned − Scratch-E / −Scratch-B paired over the
  seeds in the notes."""
  arms = list(dict.fromkeys(r.arm for r in runs))
  b_steps = sorted({r.summary["baselines"]["scratch_b"]["steps"]
                    for r in runs})
  header = ["method", "MACs", "pruned", "Scratch-E",
            f"Scratch-B ({' / '.join(f'{n:,}' for n in b_steps)} steps)"]
  csv_header = ["method", "macs_fraction"]
  for col in ("pruned", "scratch_e", "scratch_b"):
    csv_header += [f"{col}_{k}" for k in ("n", "mean", "std", "ci95_lo",
                                          "ci95_hi")]
  rows, csv_rows, paired = [], [], []
  for arm in arms:
    mine = [r.summary for r in runs if r.arm == arm]
    macs = sum(m["final"]["macs_fraction"] for m in mine) / len(mine)
    cols = {"pruned": [m["final"]["test_accuracy"] for m in mine]}
    for k in ("scratch_e", "scratch_b"):
      cols[k] = [m["baselines"][k]["test_accuracy"] for m in mine]
    rows.append([arm, f"{macs:.3f}", *(_acc(v) for v in cols.values())])
    csv_rows.append([arm, macs, *(c for v in cols.values()
                                  for c in _stat_cells(v))])
    if len(mine) > 1:
      paired += [f"{arm}: pruned − {name} "
                 + stats.format_paired(stats.paired(cols["pruned"], cols[k]))
                 for k, name in (("scratch_e", "Scratch-E"),
                                 ("scratch_b", "Scratch-B"))]
  seeds = _seeds_of(runs)
  notes = ("Test accuracy, " + _seeds_read(seeds)
           + ". MACs: the pruned network's "
           "over the dense one's. Scratch-E: the pruned architecture from a "
           "fresh init for the original number of steps; Scratch-B: for the "
           "same MACs (at most twice as long)."
           + (" Paired over seeds: " + "; ".join(paired) + "."
              if paired else ""))
  return Built(header, rows, csv_header, csv_rows, notes)


def benn_table(runs: list) -> Built:
  """Per ensemble size k: each arm's (ensemble method's) test accuracy of
  the first k members, hard / soft vote (k = 1: the first member alone,
  where both votes agree), from `summary["ensemble"]`; one seed as is,
  several as mean ± sample std [95% CI] over the seeds."""
  arms = list(dict.fromkeys(r.arm for r in runs))
  sizes = [c["size"] for c in runs[0].summary["ensemble"]]
  header = ["k", *arms]
  csv_header = ["k"]
  for arm in arms:
    for vote in ("hard", "soft"):
      csv_header += [f"{arm}_{vote}_{k}" for k in ("n", "mean", "std",
                                                   "ci95_lo", "ci95_hi")]
  rows, csv_rows = [], []
  for i, size in enumerate(sizes):
    row, csv_row = [str(size)], [size]
    for arm in arms:
      curve = [r.summary["ensemble"][i] for r in runs if r.arm == arm]
      hard = [c["hard_vote_accuracy"] for c in curve]
      soft = [c["soft_vote_accuracy"] for c in curve]
      row.append(_acc(soft) if size == 1 else f"{_acc(hard)} / {_acc(soft)}")
      csv_row += _stat_cells(hard) + _stat_cells(soft)
    rows.append(row)
    csv_rows.append(csv_row)
  seeds = _seeds_of(runs)
  notes = (f"Test accuracy of the first k members, hard / soft vote "
           f"({runs[0].summary.get('model', 'the model')} members on "
           f"{runs[0].summary.get('dataset', 'the data')}; k = 1: the first "
           f"member alone), " + _seed_list(seeds)
           + ("; " + OVER_SEEDS
              if len(seeds) > 1 else
              "; one seed, so no interval: read differences between "
              "columns as within seed noise unless large") + ".")
  return Built(header, rows, csv_header, csv_rows, notes)


def _where(runs: list, base: dict, want: dict) -> list:
  """The sweep runs whose grid values are `base` updated by `want` (on
  every field of either), in seed order."""
  target = {**base, **want}
  return sorted((r for r in runs if all(r.values.get(f) == v
                                        for f, v in target.items())),
                key=lambda r: r.seed)


def _accs(runs: list) -> list:
  return [r.summary["final"]["test_accuracy"] for r in runs]


def _arm_csv(runs: list, extra: Sequence[str] = ()) -> tuple[list, list]:
  """A sweep table's CSV: one row per arm, its grid values, test accuracy
  (n, mean, sample std, 95% CI) and the mean of each `extra` final field
  over the arm's seeds."""
  fields = list(runs[0].values)
  header = [*fields, "n", "test_accuracy_mean", "test_accuracy_std",
            "ci95_lo", "ci95_hi", *(f"{k}_mean" for k in extra)]
  rows = []
  for arm in dict.fromkeys(r.arm for r in runs):
    mine = [r for r in runs if r.arm == arm]
    row = [mine[0].values[f] for f in fields] + _stat_cells(_accs(mine))
    for k in extra:
      xs = [r.summary["final"][k] for r in mine
            if r.summary["final"].get(k) is not None]
      row.append(sum(xs) / len(xs) if xs else None)
    rows.append(row)
  return header, rows


ABLATION_BASE = {"optimizer": "adam",
                 "model_kwargs.kernel_quantizer": "ste_sign",
                 "clip_weights": 1.0, "grad_clip_norm": 0.0,
                 "model_kwargs.bn_momentum": 0.85, "lr_schedule": "constant"}
"""ablation_digits.py's base point (every variation is one field off it)."""


def ablation_table(runs: list) -> Built:
  """The optimizer x STE ablation (ablation_digits.py's sweep): per
  optimizer and weight clipping (on: latent weights in [-1, 1]; off), test
  accuracy of each kernel quantizer (clipped STE, identity STE, approx_sign,
  swish_sign, none: the float net) and the fraction of latent weights
  outside the STE window at the end (clipped / identity STE); the notes
  give the one-field variations around the base (Adam + ste_sign) and the
  paired differences over seeds."""
  q = "model_kwargs.kernel_quantizer"
  quantizers = ("ste_sign", "ste_identity_sign", "approx_sign", "swish_sign",
                "identity")
  header = ["optimizer", "weight clip", "ste_sign (clipped)", "identity STE",
            "\\|w\\| > 1", "approx_sign", "swish_sign", "float (no sign)"]
  rows = []
  outside = lambda rs: (sum(r.summary["final"]["latent_outside_window"]
                            for r in rs) / len(rs))
  for clip in (1.0, 0.0):
    for opt in ("sgd", "momentum", "adam"):
      cell = {k: _where(runs, ABLATION_BASE, {"optimizer": opt, q: k,
                                              "clip_weights": clip})
              for k in quantizers}
      accs = {k: (_acc(_accs(v)) if v else "") for k, v in cell.items()}
      w = (f"{outside(cell['ste_sign']):.2g} / "
           f"{outside(cell['ste_identity_sign']):.2g}")
      rows.append([opt, "[-1, 1]" if clip else "off", accs["ste_sign"],
                   accs["ste_identity_sign"], w, accs["approx_sign"],
                   accs["swish_sign"], accs["identity"]])
  base = _accs(_where(runs, ABLATION_BASE, {}))
  around = []
  for field, value, label in (
      ("grad_clip_norm", 1.0, "gradient clipping at norm 1"),
      ("model_kwargs.bn_momentum", 0.5, "BatchNorm momentum 0.5"),
      ("model_kwargs.bn_momentum", 0.99, "BatchNorm momentum 0.99"),
      ("lr_schedule", "cosine", "cosine schedule"),
      ("lr_schedule", "step", "step schedule")):
    accs = _accs(_where(runs, ABLATION_BASE, {field: value}))
    around.append(f"{label} {_acc(accs)} (minus the base: "
                  f"{stats.format_paired(stats.paired(accs, base))})")
  pairs = []
  for what, a, b in (
      ("Adam − SGD, clipped STE, clip on", {"optimizer": "adam"},
       {"optimizer": "sgd"}),
      ("Adam − momentum, clipped STE, clip on", {"optimizer": "adam"},
       {"optimizer": "momentum"}),
      ("binary (clipped STE) − float, Adam", {}, {q: "identity"}),
      *((f"identity STE − clipped STE, {o}, clip off",
         {"optimizer": o, q: "ste_identity_sign", "clip_weights": 0.0},
         {"optimizer": o, "clip_weights": 0.0})
        for o in ("sgd", "momentum", "adam"))):
    pairs.append(f"{what}: " + stats.format_paired(stats.paired(
        _accs(_where(runs, ABLATION_BASE, a)),
        _accs(_where(runs, ABLATION_BASE, b)))))
  seeds = _seeds_of(runs)
  notes = ("Test accuracy, " + _seed_list(seeds) + "; " + OVER_SEEDS
           + ". \\|w\\| > 1: the fraction of latent binary weights outside "
           "the STE window at the end, clipped / identity STE (mean over "
           "the seeds). Around the base (Adam, clipped STE, clip on, "
           f"{_acc(base)}): " + "; ".join(around) + ". Paired over seeds: "
           + "; ".join(pairs) + ".")
  csv_header, csv_rows = _arm_csv(runs, ("latent_outside_window",
                                         "latent_abs_max"))
  return Built(header, rows, csv_header, csv_rows, notes)


def fpgm_table(runs: list) -> Built:
  """FPGM against the L2-norm criterion (fpgm_digits.py's sweep): per
  criterion, rate and soft-pruning variant, the MACs fraction, test
  accuracy (mean ± sample std [95% CI]), each seed's, and the filters a
  selection released after the previous one had zeroed them (mean per
  run); the notes pair FPGM − L2 over seeds at each rate and variant."""
  crit, rate, var = ("filterprune.criterion", "filterprune.rate",
                     "filterprune.soft_variant")
  name = {"geometric_median": "FPGM", "l2": "L2 norm"}
  header = ["criterion", "rate", "variant", "MACs", "test accuracy",
            "per seed", "revived"]
  rows, pairs = [], []
  first = {}
  for r in runs:
    first.setdefault(r.arm, r.values)
  groups = sorted(first, key=lambda a: (first[a][var] != "paper",
                                        first[a][rate],
                                        first[a][crit] != "geometric_median"))
  mean = lambda xs: sum(xs) / len(xs)
  for arm in groups:
    mine = sorted((r for r in runs if r.arm == arm), key=lambda r: r.seed)
    v = mine[0].values
    f = [r.summary["final"] for r in mine]
    rows.append([name.get(v[crit], v[crit]), f"{v[rate]:g}", v[var],
                 f"{mean([x['macs_fraction'] for x in f]):.3f}",
                 _acc(_accs(mine)),
                 " / ".join(f"{a:.4f}" for a in _accs(mine)),
                 f"{mean([x['revived_filters'] for x in f]):.0f}"])
  for arm in groups:
    v = next(r.values for r in runs if r.arm == arm)
    if v[crit] != "geometric_median":
      continue
    keep = {rate: v[rate], var: v[var]}
    fpgm = _accs(_where(runs, {}, {**keep, crit: "geometric_median"}))
    l2 = _accs(_where(runs, {}, {**keep, crit: "l2"}))
    if l2:
      pairs.append(f"rate {v[rate]:g}, {v[var]}: "
                   + stats.format_paired(stats.paired(fpgm, l2)))
  seeds = _seeds_of(runs)
  notes = ("Test accuracy, " + _seed_list(seeds) + "; " + OVER_SEEDS
           + ". MACs: the pruned network's over the dense one's (mean over "
           "the seeds). Revived: filters per run that a selection released "
           "after the previous one had zeroed them (mean over the seeds). "
           "FPGM − L2 norm, paired over seeds: " + "; ".join(pairs) + ".")
  csv_header, csv_rows = _arm_csv(runs, ("macs_fraction", "revived_filters"))
  return Built(header, rows, csv_header, csv_rows, notes)


GRADCOUNT_RHOS = (0.2, 0.35, 0.5)
"""The gradcount_shapes table's inactivity thresholds (how much it prunes)."""


def gradcount_arms(rho: float) -> tuple:
  """The gradient-count arm at `rho` and its L1 and magnitude controls at
  the sparsity that run reached (same seed)."""
  gc = f"gradient count, rho {rho:g}"
  return ((gc, (("gradcount.rho", rho),)),
          *((f"{m}, rho {rho:g}'s sparsity",
             (("gradcount.method", m), ("gradcount.match_workdir", RunOf(gc))))
            for m in ("l1", "magnitude")))


GRADCOUNT_DENSE = (("gradcount.joint_steps", 1), ("gradcount.lam", 0.0),
                   ("gradcount.rho", 0.0), ("gradcount.s_max", 1.0))
"""The dense reference: nothing is shrunk, pruned or removed."""


def gradcount_table(runs: list) -> Built:
  """Gradient counting against the L1 and magnitude controls at the
  sparsity it reached: per rho, the kept kernel weights, Dice of each
  method (one seed as is, several as mean ± sample std [95% CI]) and the
  conv filters gradient counting kept; the notes give the dense reference
  and gradient count − control, paired over the seeds. The controls
  prune weights, not filters; a filter they empty counts as removed."""
  dice = lambda rs: [r.summary["final"]["dice"] for r in rs]
  mean = lambda xs: sum(xs) / len(xs)
  by = lambda arm: [r for r in runs if r.arm == arm]
  header = ["kept weights", "rho", "gradient count", "L1", "magnitude",
            "conv filters kept (gradient count / L1 / magnitude)"]
  csv_header = ["rho", "remaining_fraction", "filters_remaining_fraction",
                "l1_filters_remaining_fraction",
                "magnitude_filters_remaining_fraction"]
  for col in ("gradcount", "l1", "magnitude"):
    csv_header += [f"{col}_dice_{k}" for k in ("n", "mean", "std", "ci95_lo",
                                               "ci95_hi")]
  rows, csv_rows, pairs = [], [], []
  for rho in GRADCOUNT_RHOS:
    arms = [a for a, _ in gradcount_arms(rho)]
    gc, l1, mag = (by(a) for a in arms)
    kept = mean([r.summary["final"]["remaining_fraction"] for r in gc])
    filters = [mean([r.summary["final"]["filters_remaining_fraction"]
                     for r in x]) for x in (gc, l1, mag)]
    rows.append([f"{100 * kept:.1f}%", f"{rho:g}",
                 *(_acc(dice(x)) for x in (gc, l1, mag)),
                 " / ".join(f"{100 * f:.1f}%" for f in filters)])
    csv_rows.append([rho, kept, *filters, *(c for x in (gc, l1, mag)
                                            for c in _stat_cells(dice(x)))])
    for name, x in (("L1", l1), ("magnitude", mag)):
      pairs.append(f"rho {rho:g}, gradient count − {name}: "
                   + stats.format_paired(stats.paired(dice(gc), dice(x))))
  dense = by("dense reference")
  seeds = _seeds_of(runs)
  notes = ("Dice (foreground classes), " + _seeds_read(seeds)
           + ". Kept weights: the gradient-count run's remaining kernel "
           "weights, which its L1 and magnitude controls are matched to "
           "(`gradcount.match_workdir`, same seed). Dense reference: Dice "
           f"{_acc(dice(dense))}. Paired over seeds: " + "; ".join(pairs)
           + ".")
  return Built(header, rows, csv_header, csv_rows, notes)


MAINSUB_CONTROLS = ("learned", "greedy", "random")
"""main/subsidiary's controls at the learned per-layer counts."""


def mainsub_table(runs: list) -> Built:
  """Main/subsidiary pruning against its controls (mainsub_digits.py):
  per arm, the binary filters removed, the unpruned main network, the
  layer-wise pruned network and each control fine-tuned the same number
  of steps (one seed as is, several as mean ± sample std [95% CI]), and
  the controls' masks applied without fine-tuning (means); the notes pair
  the pruned network with the unpruned one and with each control."""
  arms = list(dict.fromkeys(r.arm for r in runs))
  mean = lambda xs: sum(xs) / len(xs)
  header = ["recipe", "% removed", "unpruned main", "pruned (layer-wise)",
            *MAINSUB_CONTROLS,
            "before FT: " + " / ".join(MAINSUB_CONTROLS)]
  csv_header = ["recipe", "removed_percent"]
  for col in ("main", "pruned", *MAINSUB_CONTROLS):
    csv_header += [f"{col}_{k}" for k in ("n", "mean", "std", "ci95_lo",
                                          "ci95_hi")]
  csv_header += [f"{c}_before_finetune_mean" for c in MAINSUB_CONTROLS]
  rows, csv_rows, pairs = [], [], []
  for arm in arms:
    mine = [r.summary for r in runs if r.arm == arm]
    removed = mean([100 * (1 - m["filters_remaining_fraction"])
                    for m in mine])
    cols = {"main": [m["main"]["test_accuracy"] for m in mine],
            "pruned": [m["final"]["test_accuracy"] for m in mine]}
    for c in MAINSUB_CONTROLS:
      cols[c] = [m["controls"][c]["test_accuracy"] for m in mine]
    before = [mean([m["controls"][c]["test_accuracy_before_finetune"]
                    for m in mine]) for c in MAINSUB_CONTROLS]
    rows.append([arm, f"{removed:.1f}", *(_acc(v) for v in cols.values()),
                 " / ".join(f"{b:.3f}" for b in before)])
    csv_rows.append([arm, removed, *(c for v in cols.values()
                                     for c in _stat_cells(v)), *before])
    if len(mine) > 1:
      pairs += [f"{arm}: pruned − {k} " + stats.format_paired(
          stats.paired(cols["pruned"], cols[k]))
                for k in ("main", *MAINSUB_CONTROLS)]
  seeds = _seeds_of(runs)
  notes = ("Test accuracy, " + _seeds_read(seeds)
           + ". % removed: binary filters, mean over the seeds. The controls "
           "(learned keep vectors, greedy: smallest mean |w|, random) take "
           "the learned per-layer counts, are applied to the main network "
           "at once and fine-tuned for the same steps; before FT: their "
           "masks on the main network, no training (means)."
           + (" Paired over seeds: " + "; ".join(pairs) + "." if pairs
              else ""))
  return Built(header, rows, csv_header, csv_rows, notes)


def lottery_plot(runs: list, path: str) -> None:
  """`lottery_report.plot` of the seeds' summaries."""
  lottery_report.plot([r.summary for r in runs], path)

