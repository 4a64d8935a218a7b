r"""The README's result tables as artifacts: run, tabulate, record the machine.

A *table* (`Table`, registered in `TABLES`) names the runs behind one README
table (a config file, its overrides, the seeds) and a builder that turns
the finished runs into rows. `make(table, ...)` (what
`python -m launch.results --table=NAME` calls) runs what is missing and
writes, in the results folder (`results/` by default):

  NAME.md    the title, the table, the seeds, the exact commands and the
             machine the runs ran on (CPU model, core count, jax / jaxlib /
             flax / optax versions, the date the last run finished, the
             runs' wall time)
  NAME.csv   the table's numbers at full precision, one row per row
  NAME.png   a plot, for tables that have one

Runs go through the sweep machinery (`experiments.sweep`), one one-point
sweep per seed in `RUNS/seed_<s>/` (`RUNS` = `results/runs/NAME` by
default, git-ignored): each is a `launch.train` subprocess, a finished run
(its `summary.json`) is skipped and a killed one resumes from its newest
checkpoint, so re-running the command resumes; `--seeds=N` (the first N
seeds) reuses every seed already run. `RUNS/seed_<s>/machine.json` records
the machine a seed's runs ran on, written when they ran, so a later
re-tabulation elsewhere still names the right machine.

The README holds each table between the markers

  <!-- results/NAME.md -->
  | ... the table of results/NAME.md ... |
  <!-- end results/NAME.md -->

and `tests/test_results.py` checks that every such block equals its file's
table (`table_of`), so the README cannot drift from what the command
writes; `update_readme` (`--update_readme`) rewrites the block.

Every mean, sample std, 95 % interval and paired verdict comes from
`experiments.stats`. CPU figures vary slightly between processors (XLA's
CPU code differs), so each file names its machine.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import json
import os
import platform
import shlex
from collections.abc import Callable, Sequence
from importlib import metadata

from experiments import lottery_report
from experiments import stats
from experiments import sweep as sweep_lib

ROOT = sweep_lib.ROOT
RESULTS_DIR = os.path.join(ROOT, "results")
README = os.path.join(ROOT, "README.md")
VERSIONED = ("jax", "jaxlib", "flax", "optax")


class ResultsError(ValueError):
  """Bad input to the results command (one line)."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One finished run of a table: its seed, workdir, summary.json, arm
  (label; "" for a one-arm table), wall seconds (over its attempts), the
  arm's overrides ((field, value), ...) and, in a sweep table, the
  effective value of every grid field (`sweep.Point.values`)."""
  seed: int
  workdir: str
  summary: dict
  arm: str = ""
  seconds: float = 0.0
  overrides: tuple = ()
  values: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunOf:
  """An arm's override value: the run directory of the earlier arm `arm`
  at the same seed, e.g. a control's ``gradcount.match_workdir`` (the
  controls prune to the sparsity that run reached)."""
  arm: str


@dataclasses.dataclass(frozen=True)
class Built:
  """A table's content: the markdown header and rows (strings), the CSV's
  header and rows (numbers), and notes printed under the table."""
  header: list
  rows: list
  csv_header: list
  csv_rows: list
  notes: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  """One result table: the runs behind it and how to tabulate them.

  `config` is relative to the repository root (`file.py:arg` passes `arg`
  to its `get_config`, as `launch.train --config=file.py:arg` does);
  `overrides` are
  `--config.<field>=<value>` of every run; `arms` ((label, overrides), ...)
  are variants each run at every seed (in `RUNS/<label>/seed_<s>/`; one
  unnamed arm by default); `build(runs)` gets the finished runs, arm by
  arm, in seed order; `plot(runs, path)` (optional) writes the PNG.
  `test_only` tables exist for tests/test_results.py (tiny, tmp dirs).

  A `sweep` table's `config` is a sweep file (`get_config` and
  `get_sweep`, experiments/sweep.py): its points are the runs, run as one
  sweep in RUNS (what `python -m launch.sweep --config=CONFIG
  --workdir=RUNS` runs); each run's arm is its point's overrides
  (`point_label`), in the sweep's order. It has no `arms` or `overrides`,
  and its `seeds` are the sweep file's (checked when it runs).
  """
  name: str
  title: str
  config: str
  seeds: tuple
  build: Callable[[list], Built]
  overrides: tuple = ()
  arms: tuple = (("", ()),)
  plot: Callable[[list, str], None] | None = None
  description: str = ""
  test_only: bool = False
  sweep: bool = False


# ------------------------------------------------------------ builders --
def _seeds_of(runs: list) -> list:
  """The seeds of `runs`, sorted."""
  return sorted({r.seed for r in runs})


def _seed_list(seeds: list) -> str:
  """``seed 0`` or ``seeds 0, 1, 2``, as the tables' notes say it."""
  return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


OVER_SEEDS = "mean ± sample std [95% CI, Student t] over the seeds"
"""How the tables' cells with several seeds read (``stats``' convention)."""


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


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _control_values(workdir: str, level: int, name: str) -> list:
  """The test accuracies (and early-stop steps) of a lottery run's control
  `name` at `level`, one per control seed, in seed order."""
  d = os.path.join(workdir, f"level_{level:02d}", "controls")
  out = []
  while os.path.exists(p := os.path.join(d, f"{name}_{len(out)}",
                                         "result.json")):
    out.append(_read_json(p))
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
           + _seed_list(seeds)
           + ("; " + OVER_SEEDS
              if len(seeds) > 1 else "") + "). Wall time: the run's "
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
  notes = ("Test accuracy, " + _seed_list(seeds)
           + ("; " + OVER_SEEDS
              if len(seeds) > 1 else "") + ". macs_fraction: MACs executed "
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
  notes = ("Test accuracy, " + _seed_list(seeds)
           + ("; " + OVER_SEEDS
              if len(seeds) > 1 else "") + ". MACs: the pruned network's "
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


def _gc_arms(rho: float) -> tuple:
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
  and gradient count − control, paired over the seeds."""
  dice = lambda rs: [r.summary["final"]["dice"] for r in rs]
  mean = lambda xs: sum(xs) / len(xs)
  by = lambda arm: [r for r in runs if r.arm == arm]
  header = ["kept weights", "rho", "gradient count", "L1", "magnitude",
            "conv filters kept (gradient count; controls keep all)"]
  csv_header = ["rho", "remaining_fraction", "filters_remaining_fraction"]
  for col in ("gradcount", "l1", "magnitude"):
    csv_header += [f"{col}_dice_{k}" for k in ("n", "mean", "std", "ci95_lo",
                                               "ci95_hi")]
  rows, csv_rows, pairs = [], [], []
  for rho in GRADCOUNT_RHOS:
    arms = [a for a, _ in _gc_arms(rho)]
    gc, l1, mag = (by(a) for a in arms)
    kept = mean([r.summary["final"]["remaining_fraction"] for r in gc])
    filters = mean([r.summary["final"]["filters_remaining_fraction"]
                    for r in gc])
    rows.append([f"{100 * kept:.1f}%", f"{rho:g}",
                 *(_acc(dice(x)) for x in (gc, l1, mag)),
                 f"{100 * filters:.1f}%"])
    csv_rows.append([rho, kept, filters, *(c for x in (gc, l1, mag)
                                           for c in _stat_cells(dice(x)))])
    for name, x in (("L1", l1), ("magnitude", mag)):
      pairs.append(f"rho {rho:g}, gradient count − {name}: "
                   + stats.format_paired(stats.paired(dice(gc), dice(x))))
  dense = by("dense reference")
  seeds = _seeds_of(runs)
  notes = ("Dice (foreground classes), " + _seed_list(seeds)
           + ("; " + OVER_SEEDS if len(seeds) > 1 else "")
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
  notes = ("Test accuracy, " + _seed_list(seeds)
           + ("; " + OVER_SEEDS if len(seeds) > 1 else "")
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


# ------------------------------------------------------------ registry --
BINARYCONNECT_ARMS = (
    ("BinaryConnect, deterministic", ()),
    ("float twin", (("binarize", False),)),
    ("BinaryConnect, stochastic",
     (("model_kwargs.kernel_quantizer", "stochastic_sign"),)),
    ("BNN (binary activations)",
     (("model_kwargs.input_quantizer", "ste_sign"),
      ("model_kwargs.activation", "hard_tanh"))))
"""The BinaryConnect tables' arms: the config as shipped and its variants."""

BINARYCONNECT_PAIRS = tuple((arm, "float twin") for arm, _ in
                            BINARYCONNECT_ARMS if arm != "float twin")
"""Each binary variant against its float twin."""


TABLES = {t.name: t for t in (
    Table(
        name="main_job",
        title="Results of the main job: lottery tickets on digits",
        config="experiments/configs/lottery_digits.py", seeds=(0,),
        build=lottery_table, plot=lottery_plot,
        description="lottery_digits.py as shipped: seed 0, 2 seeds per "
        "control"),
    Table(
        name="lottery_mnist5k",
        title="Lottery tickets on real MNIST images (mnist5k)",
        config="experiments/configs/lottery_lenet_mnist5k.py",
        seeds=(0, 1, 2, 3, 4), build=lottery_table, plot=lottery_plot,
        description="LeNet-300-100 on mnist5k, 18 levels, 5 seeds"),
    Table(
        name="tiny_test",
        title="A tiny lottery run (tests only)",
        config="experiments/configs/lottery_digits.py", seeds=(0,),
        overrides=(("num_steps", 20), ("eval_every", 10), ("log_every", 10),
                   ("checkpoint_every", 20), ("lottery.levels", 1),
                   ("lottery.control_seeds", 1)),
        build=lottery_table, plot=None,
        description="tests/test_results.py: 1 level, 20 steps",
        test_only=True),
    Table(
        name="tiny_sweep_test",
        title="A tiny sweep table (tests only)",
        config="tests/_tiny_sweep.py", seeds=(0,), build=flags_table,
        sweep=True, description="tests/test_results.py: a 20-step MLP at "
        "two learning rates", test_only=True),
    Table(
        name="digits_magnitude",
        title="Magnitude pruning on digits (the plain run)",
        config="experiments/configs/digits_magnitude.py",
        seeds=(0, 1, 2, 3, 4),
        arms=(("dense (`--config.pruning.method=none`)",
               (("pruning.method", "none"),)),
              ("magnitude, gradual, layer-wise 80%", ())),
        build=functools.partial(plain_table, compare=((
            "magnitude, gradual, layer-wise 80%",
            "dense (`--config.pruning.method=none`)"),)),
        description="digits_magnitude.py as shipped (4,000 Adam steps, "
        "batch 64) and its dense twin, 5 seeds"),
    Table(
        name="binaryconnect_digits",
        title="BinaryConnect and BNN on digits, with the float twin",
        config="experiments/configs/binaryconnect_digits.py",
        seeds=(0, 1, 2, 3, 4),
        arms=BINARYCONNECT_ARMS,
        build=functools.partial(flags_table, compare=BINARYCONNECT_PAIRS),
        description="binaryconnect_digits.py as shipped (3,000 Adam steps, "
        "batch 64) and its variants, 5 seeds"),
    Table(
        name="binaryconnect_mnist5k",
        title="BinaryConnect and BNN on real MNIST images (mnist5k), with "
        "the float twin",
        config="experiments/configs/binaryconnect_mnist5k.py",
        seeds=(0, 1, 2, 3, 4),
        arms=BINARYCONNECT_ARMS,
        build=functools.partial(flags_table, compare=(
            *BINARYCONNECT_PAIRS,
            ("BinaryConnect, stochastic", "BinaryConnect, deterministic"))),
        description="binaryconnect_mnist5k.py as shipped (3 x 512 binary "
        "MLP, 2,100 Adam steps of batch 100) and its variants, 5 seeds"),
    Table(
        name="repr_digits",
        title="RePr on digits and its ablations",
        config="experiments/configs/repr_digits.py", seeds=(0, 1, 2),
        arms=(("standard training", (("repr.cycles", 0),)),
              ("RePr (orthogonality ranking, orthogonal re-init)", ()),
              ("random drop + random re-init",
               (("repr.ranking", "random"), ("repr.reinit", "random"))),
              ("orthogonality ranking + random re-init",
               (("repr.reinit", "random"),)),
              ("magnitude ranking + orthogonal re-init",
               (("repr.ranking", "magnitude"),))),
        build=functools.partial(flags_table, compare=(
            ("RePr (orthogonality ranking, orthogonal re-init)",
             "standard training"),
            *((a, "RePr (orthogonality ranking, orthogonal re-init)")
              for a in ("random drop + random re-init",
                        "orthogonality ranking + random re-init",
                        "magnitude ranking + orthogonal re-init")))),
        description="repr_digits.py as shipped (vanilla CNN, 3 cycles of "
        "S1 = 400 / S2 = 200 steps, 2,200 SGD steps, batch 64), its "
        "standard-training twin and the ablations, 3 seeds"),
    Table(
        name="repr_mnist5k",
        title="RePr against standard training on real MNIST images "
        "(mnist5k)",
        config="experiments/configs/repr_mnist5k.py", seeds=(0, 1, 2, 3, 4),
        arms=(("standard training", (("repr.cycles", 0),)),
              ("RePr (orthogonality ranking, orthogonal re-init)", ())),
        build=functools.partial(flags_table, compare=((
            "RePr (orthogonality ranking, orthogonal re-init)",
            "standard training"),)),
        description="repr_mnist5k.py as shipped (vanilla CNN, 3 cycles of "
        "S1 = 550 / S2 = 275 steps, 3,025 SGD steps, batch 64) and its "
        "standard-training twin at equal steps, 5 seeds"),
    Table(
        name="benn_digits",
        title="BENN on digits: bagging and boosting, ensemble size k",
        config="experiments/configs/benn_digits.py", seeds=(0, 1, 2),
        arms=(("bagging", ()),
              ("boost_d", (("benn.ensemble", "boost_d"),))),
        build=benn_table,
        description="benn_digits.py as shipped (K = 5 semi-binary NIN "
        "members, 600 Adam steps of batch 64 each) with bagging and with "
        "boost_d, 3 seeds"),
    Table(
        name="gradcount_shapes",
        title="Gradient-count sparsity against L1 and magnitude pruning at "
        "matched sparsity (UNet-tiny, shapes)",
        config="experiments/configs/gradcount_shapes.py", seeds=(0, 1, 2),
        overrides=(("gradcount.scratch", False),),
        arms=(("dense reference", GRADCOUNT_DENSE),
              *(a for rho in GRADCOUNT_RHOS for a in _gc_arms(rho))),
        build=gradcount_table,
        description="gradcount_shapes.py as shipped (UNet-tiny on the "
        "built-in shapes, 1,500 Adam steps: 300 dense, 900 joint, 300 "
        "masked fine-tune) at rho = 0.2, 0.35, 0.5, its L1 and magnitude "
        "controls matched to each run's sparsity, and the dense "
        "reference; no scratch baselines"),
    Table(
        name="fbs_digits",
        title="FBS on digits: test accuracy and MACs against the density d",
        config="experiments/configs/fbs_digits.py", seeds=(0, 1, 2),
        arms=tuple((str(d), (("model_kwargs.density", d),))
                   for d in (1.0, 0.75, 0.5, 0.25)),
        build=fbs_table,
        description="fbs_digits.py as shipped (FBS CNN 32, 32, pool, 64, "
        "64, the last three convs gated; 1,500 steps, SGD momentum 0.9) at "
        "d = 1, 0.75, 0.5, 0.25, 3 seeds"),
    Table(
        name="ablation_digits",
        title="The optimizer x STE ablation of a binary MLP on digits "
        "(Alizadeh et al. 2019)",
        config="experiments/configs/ablation_digits.py", seeds=(0, 1, 2),
        build=ablation_table, sweep=True,
        description="ablation_digits.py's sweep as shipped: 26 "
        "configurations of a 3 x 256 binary MLP (1,000 steps, constant LR "
        "3e-3 for every optimizer), 3 seeds, 78 runs"),
    Table(
        name="fpgm_digits",
        title="FPGM against the norm criterion on digits",
        config="experiments/configs/fpgm_digits.py", seeds=(0, 1, 2),
        build=fpgm_table, sweep=True,
        description="fpgm_digits.py's sweep as shipped: BatchNorm VGG (32, "
        "32, pool, 64, 64), 2,000 steps, FPGM and the L2 norm at rates 0.4 "
        "and 0.7 (paper variant) and 0.7 (released CIFAR variant), 3 "
        "seeds, 18 runs"),
    Table(
        name="fpgm_scratch_digits",
        title="FPGM on digits against its scratch baselines",
        config="experiments/configs/fpgm_digits.py", seeds=(0, 1, 2),
        arms=(("FPGM, rate 0.4 (paper variant)", ()),),
        build=scratch_table,
        description="fpgm_digits.py as shipped (BatchNorm VGG 32, 32, pool, "
        "64, 64; FPGM at rate 0.4, soft pruning after every epoch, 2,000 "
        "steps) with its Scratch-E and Scratch-B baselines (the pruned "
        "architecture from a fresh init), 3 seeds"),
    Table(
        name="mainsub_digits",
        title="Main/subsidiary pruning of a binary NIN on digits, against "
        "greedy and random selection",
        config="experiments/configs/mainsub_digits.py", seeds=(0, 1, 2),
        overrides=(("mainsub.scratch", False),),
        arms=(("budget (default; Adam 1e-3)", ()),
              ("budget, SGD 0.1 on the gates",
               (("mainsub.sub_optimizer", "sgd"), ("mainsub.sub_lr", 0.1)))),
        build=mainsub_table,
        description="mainsub_digits.py as shipped (the budget recipe: 25 % "
        "of each binary layer's filters) and with SGD on the gates, 3 "
        "seeds, no scratch baselines"),
    Table(
        name="mainsub_released",
        title="Main/subsidiary pruning on digits with the released code's "
        "recipe",
        config="experiments/configs/mainsub_digits.py:released",
        seeds=(0, 1, 2), overrides=(("mainsub.scratch", False),),
        arms=(("released", ()),),
        build=mainsub_table,
        description="mainsub_digits.py:released (gates U(-1e-4, 1e-4), Adam "
        "1e-3, alpha = 1e-8 times the kept-filter count), 3 seeds, no "
        "scratch baselines"),
    Table(
        name="mainsub_released_variants",
        title="Main/subsidiary on digits: the released recipe with other "
        "gate settings (seed 0)",
        config="experiments/configs/mainsub_digits.py:released", seeds=(0,),
        overrides=(("mainsub.scratch", False),),
        arms=(("SGD + count penalty", (
            ("mainsub.sub_optimizer", "sgd"), ("mainsub.sub_lr", 0.1),
            ("mainsub.gate_init", 0.5), ("mainsub.alpha", 0.1))),
              ("Adam, gates at 0.05", (("mainsub.gate_init", 0.05),))),
        build=mainsub_table,
        description="mainsub_digits.py:released with the gates at 0.5 under "
        "SGD 0.1 and alpha = 0.1 (a gate is removed when its summed STE "
        "gradient says removing the filter costs nothing, to first order), "
        "and with the gates at 0.05 under Adam (half of Adam's reach lr x "
        "steps); seed 0 only"),
    Table(
        name="slimming_digits",
        title="Network Slimming on digits and its scratch baselines",
        config="experiments/configs/slimming_digits.py", seeds=(0, 1, 2),
        arms=(("Network Slimming, 50% of channels, s = 1e-4", ()),
              ("Network Slimming, 70% of channels, s = 1e-4",
               (("filterprune.prune_fraction", 0.7),))),
        build=scratch_table,
        description="slimming_digits.py as shipped (BatchNorm VGG 32, 32, "
        "pool, 64, 64; 2,000 steps with the L1 penalty, the smallest 50% "
        "of the BatchNorm scales pruned, 1,000 fine-tune steps; then "
        "Scratch-E and Scratch-B) and at 70% pruned, 3 seeds"),
)}


def get(name: str) -> Table:
  """The registered table `name`; ResultsError naming the known ones."""
  if name not in TABLES:
    raise ResultsError(f"unknown table {name!r}; known tables: "
                       f"{', '.join(TABLES)}")
  return TABLES[name]


# ------------------------------------------------------------- machine --
def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo; else the platform's)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
  """This machine: CPU model, core count, OS, Python and the versions of
  jax, jaxlib, flax, optax; the date (UTC)."""
  versions = {}
  for pkg in VERSIONED:
    try:
      versions[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      versions[pkg] = "not installed"
  return {"cpu": cpu_model(), "cores": os.cpu_count(),
          "system": f"{platform.system()} {platform.release()}",
          "python": platform.python_version(), "versions": versions,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%d %H:%M UTC")}


def format_machine(m: dict) -> str:
  v = ", ".join(f"{k} {x}" for k, x in m["versions"].items())
  return (f"{m['cpu']}, {m['cores']} cores, {m['system']}, Python "
          f"{m['python']}; {v}")


# ---------------------------------------------------------------- runs --
def _arm(table: Table, label: str) -> tuple:
  return dict(table.arms)[label]


def seed_sweep(table: Table, seed: int, arm: str = "",
               runs_dir: str | None = None) -> sweep_lib.Sweep:
  """The one-point sweep of `table`'s `arm` at `seed` (validated lazily);
  a `RunOf` value becomes that arm's run directory at `seed` under
  `runs_dir` (relative to the repository root when inside it)."""
  path, _, arg = table.config.partition(":")
  path = os.path.join(ROOT, path)
  module = sweep_lib.load_module(path)
  base = module.get_config(arg) if arg else module.get_config()
  grid = {}
  for f, v in (*table.overrides, *_arm(table, arm)):
    if isinstance(v, RunOf):
      labels = [a for a, _ in table.arms]
      if v.arm not in labels[:labels.index(arm)]:
        raise ResultsError(f"table {table.name}: arm {arm!r} refers to "
                           f"{v.arm!r}, which is not an earlier arm")
      if runs_dir is None:
        raise ResultsError(f"table {table.name}: arm {arm!r} needs the runs "
                           "directory")
      ref = seed_sweep(table, seed, v.arm, runs_dir)
      v = sweep_lib.run_dir(seed_dir(runs_dir, seed, v.arm),
                            ref.points[0]).replace(ROOT + os.sep, "")
    grid[f] = [v]
  return sweep_lib.expand(path + (f":{arg}" if arg else ""), base, [grid],
                          [seed])


def _slug(label: str) -> str:
  """A folder name for an arm's label."""
  return "_".join("".join(c if c.isalnum() else " " for c in label).split())


def seed_dir(runs_dir: str, seed: int, arm: str = "") -> str:
  if arm:
    return os.path.join(runs_dir, _slug(arm), f"seed_{seed}")
  return os.path.join(runs_dir, f"seed_{seed}")


def point_label(p: sweep_lib.Point) -> str:
  """A sweep point's arm: its overrides as `field=value,...` ("base" for
  none), without the seed."""
  return ",".join(f"{f}={sweep_lib.format_value(v)}"
                  for f, v in p.overrides) or "base"


def table_sweep(table: Table, *, check_build: bool = False
                ) -> sweep_lib.Sweep:
  """A sweep table's sweep (its file's grids and seeds); ResultsError when
  the table's seeds are not the file's or it sets arms / overrides."""
  if table.overrides or table.arms != (("", ()),):
    raise ResultsError(f"table {table.name}: a sweep table takes its runs "
                       f"from {table.config}'s get_sweep(), not from arms "
                       "or overrides")
  s = sweep_lib.load(os.path.join(ROOT, table.config),
                     check_build=check_build)
  if list(s.seeds) != list(table.seeds):
    raise ResultsError(f"table {table.name}: seeds {list(table.seeds)} are "
                       f"not {table.config}'s get_sweep() seeds {s.seeds}")
  return s


def _jobs(table: Table, seeds: Sequence[int]) -> list:
  """(arm, seed) of every run, arm by arm (a sweep table: its points, in
  the sweep's order)."""
  if table.sweep:
    return [(point_label(p), p.seed) for p in table_sweep(table).points]
  return [(arm, seed) for arm, _ in table.arms for seed in seeds]


def sweep_command(table: Table, runs_dir: str) -> str:
  """The `launch.sweep` command of a sweep table."""
  rel = lambda a: a.replace(ROOT + os.sep, "")
  return shlex.join(["python", "-m", "launch.sweep",
                     f"--config={table.config}", f"--workdir={rel(runs_dir)}",
                     "--parallel=1"])


MACHINES = "machines.json"
"""A sweep table's RUNS/machines.json: {point name: machine()} of every
run the results command ran (written when it finished)."""


def _run_sweep(table: Table, runs_dir: str, *,
               echo: Callable[[str], None]) -> int:
  """Runs a sweep table's unfinished points; returns the failed count and
  records the machine of each run that finished now."""
  s = table_sweep(table, check_build=True)
  todo = [p for p in s.points
          if sweep_lib.read_summary(runs_dir, p) is None]
  echo(f"{table.name}: {len(s.points)} runs, {len(todo)} to run: "
       f"{sweep_command(table, runs_dir)}")
  failed = sweep_lib.run(s, runs_dir, echo=lambda line: None
                         if "\n" in line else echo(f"  {line}"))
  done = [p.name for p in todo
          if sweep_lib.read_summary(runs_dir, p) is not None]
  if done:
    path = os.path.join(runs_dir, MACHINES)
    record = _read_json(path) if os.path.exists(path) else {}
    here = machine()
    record.update({name: here for name in done})
    _write_json(path, record)
  return failed


def command(table: Table, seed: int, runs_dir: str, arm: str = "") -> str:
  """The exact `launch.train` command of one run (paths relative to the
  repository root when they are inside it)."""
  s = seed_sweep(table, seed, arm, runs_dir)
  cmd = sweep_lib.command(s, s.points[0], seed_dir(runs_dir, seed, arm))
  rel = lambda a: a.replace(ROOT + os.sep, "")
  return shlex.join(["python", *(rel(a) for a in cmd[1:])])


def run_seeds(table: Table, seeds: Sequence[int], runs_dir: str, *,
              echo: Callable[[str], None] = print) -> int:
  """Runs every unfinished run (a one-point sweep each; a sweep table: its
  sweep); returns the number of failed runs. Writes `machine.json` (a
  sweep table: `MACHINES`) where something ran."""
  if table.sweep:
    return _run_sweep(table, runs_dir, echo=echo)
  failed = 0
  validated = set()
  jobs = _jobs(table, seeds)
  for i, (arm, seed) in enumerate(jobs, 1):
    s = seed_sweep(table, seed, arm, runs_dir)
    d = seed_dir(runs_dir, seed, arm)
    p = s.points[0]
    what = f"[{i}/{len(jobs)}] {table.name}{' ' + arm if arm else ''} seed "
    if sweep_lib.read_summary(d, p) is not None:
      echo(f"{what}{seed}: finished earlier ({sweep_lib.run_dir(d, p)})")
      continue
    if arm not in validated:  # one build check per arm (seeds share it)
      sweep_lib.validate(s)
      validated.add(arm)
    echo(f"{what}{seed}: running {command(table, seed, runs_dir, arm)}")
    failed += sweep_lib.run(
        s, d, echo=lambda line, i=i: None if "\n" in line else echo(
            f"[{i}/{len(jobs)}]   {line}"))
    if sweep_lib.read_summary(d, p) is not None:
      _write_json(os.path.join(d, "machine.json"), machine())
  return failed


def finished_runs(table: Table, seeds: Sequence[int],
                  runs_dir: str) -> list:
  """The finished runs (`Run`), arm by arm, in seed order (a sweep table:
  in the sweep's order)."""
  out = []
  if table.sweep:
    tries = sweep_lib.attempts(runs_dir)
    for p in table_sweep(table).points:
      summary = sweep_lib.read_summary(runs_dir, p)
      if summary is not None:
        secs = sum(a["seconds"] for a in tries if a["name"] == p.name)
        out.append(Run(p.seed, sweep_lib.run_dir(runs_dir, p), summary,
                       point_label(p), secs, tuple(p.overrides),
                       dict(p.values)))
    return out
  for arm, seed in _jobs(table, seeds):
    s = seed_sweep(table, seed, arm, runs_dir)
    d = seed_dir(runs_dir, seed, arm)
    summary = sweep_lib.read_summary(d, s.points[0])
    if summary is not None:
      secs = sum(a["seconds"] for a in sweep_lib.attempts(d))
      out.append(Run(seed, sweep_lib.run_dir(d, s.points[0]), summary, arm,
                     secs, tuple(_arm(table, arm))))
  return out


def _machines(table: Table, seeds: Sequence[int], runs_dir: str) -> list:
  """(machine record, [seeds]) per distinct machine the seeds ran on."""
  out = []
  if table.sweep:
    path = os.path.join(runs_dir, MACHINES)
    record = _read_json(path) if os.path.exists(path) else {}
    found = [(record.get(p.name), p.seed) for p in table_sweep(table).points]
  else:
    found = []
    for arm, seed in _jobs(table, seeds):
      path = os.path.join(seed_dir(runs_dir, seed, arm), "machine.json")
      found.append((_read_json(path) if os.path.exists(path) else None,
                    seed))
  for m, seed in found:
    if m is None:
      continue
    key = format_machine(m)
    for rec, ss in out:
      if format_machine(rec) == key:
        if seed not in ss:
          ss.append(seed)
        rec["date"] = max(rec["date"], m["date"])
        break
    else:
      out.append((m, [seed]))
  return out


def _wall_seconds(table: Table, seeds: Sequence[int], runs_dir: str) -> float:
  if table.sweep:
    return sum(a["seconds"] for a in sweep_lib.attempts(runs_dir))
  total = 0.0
  for arm, seed in _jobs(table, seeds):
    total += sum(a["seconds"] for a in sweep_lib.attempts(
        seed_dir(runs_dir, seed, arm)))
  return total


# ------------------------------------------------------------- outputs --
def markdown_table(built: Built) -> str:
  lines = ["| " + " | ".join(built.header) + " |",
           "|" + "|".join("---" for _ in built.header) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in built.rows]
  return "\n".join(lines) + "\n"


def table_of(md: str) -> str:
  """The table of a results file (or of a README block): its first run of
  lines starting with '|'."""
  lines, started = [], False
  for line in md.splitlines():
    if line.startswith("|"):
      lines.append(line.rstrip())
      started = True
    elif started:
      break
  return "\n".join(lines) + ("\n" if lines else "")


def render(table: Table, built: Built, seeds: Sequence[int],
           runs_dir: str) -> str:
  """NAME.md: title, table, notes, seeds, commands, machine."""
  machines = _machines(table, seeds, runs_dir)
  wall = _wall_seconds(table, seeds, runs_dir)
  runs_rel = runs_dir.replace(ROOT + os.sep, "")
  more = ("" if tuple(seeds) == tuple(table.seeds)
          else f" --seeds={len(seeds)}")
  lines = [f"# {table.title}", "", table.description + ".", "",
           markdown_table(built).rstrip("\n"), "", built.notes, "",
           "## How it was made", "",
           f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)}). Written by",
           "", f"    python -m launch.results --table={table.name}{more}", "",
           f"which runs (skipping finished runs, resuming killed ones; "
           f"workdirs under `{runs_rel}`):", ""]
  if table.sweep:
    lines.append(f"    {sweep_command(table, runs_dir)}")
  else:
    lines += [f"    {command(table, s, runs_dir, arm)}"
              for arm, s in _jobs(table, seeds)]
  lines += ["", "## Machine", ""]
  if not machines:
    lines.append("Unknown (no run recorded its machine).")
  for m, ss in machines:
    lines.append(f"- seeds {', '.join(map(str, ss))}: {format_machine(m)}; "
                 f"last run finished {m['date']}")
  lines += ["", f"Wall time of the runs: {wall / 60:.1f} min "
            "(sum over the runs' attempts, on a machine shared with other "
            "jobs). CPU figures vary slightly between processors (XLA's CPU "
            "code differs): reproducible on one machine, not across "
            "machines.", ""]
  return "\n".join(lines)


def write_csv(built: Built, path: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(built.csv_header)
    for row in built.csv_rows:
      w.writerow(["" if x is None else x for x in row])
  os.replace(tmp, path)


def _write_text(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def _write_json(path: str, obj) -> None:
  _write_text(path, json.dumps(obj, indent=1) + "\n")


def make(table: Table, *, seeds: Sequence[int] | None = None,
         runs_dir: str | None = None, out_dir: str = RESULTS_DIR,
         echo: Callable[[str], None] = print) -> dict:
  """Runs what is missing, then writes NAME.md/.csv(/.png) in `out_dir`.

  Returns {"failed": failed runs, "paths": [written files], "table": the
  markdown table}. Raises ResultsError when no seed finished.
  """
  seeds = list(table.seeds if seeds is None else seeds)
  runs_dir = runs_dir or os.path.join(out_dir, "runs", table.name)
  failed = run_seeds(table, seeds, runs_dir, echo=echo)
  runs = finished_runs(table, seeds, runs_dir)
  if len(runs) < len(_jobs(table, seeds)):
    done = {(r.arm, r.seed) for r in runs}
    missing = [j for j in _jobs(table, seeds) if j not in done]
    raise ResultsError(f"table {table.name}: run(s) {missing} did not "
                       f"finish (logs under {runs_dir}); nothing written")
  built = table.build(runs)
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, table.name)
  _write_text(base + ".md", render(table, built, seeds, runs_dir))
  write_csv(built, base + ".csv")
  paths = [base + ".md", base + ".csv"]
  if table.plot is not None:
    table.plot(runs, base + ".png")
    paths.append(base + ".png")
  return {"failed": failed, "paths": paths, "table": markdown_table(built)}


# -------------------------------------------------------------- README --
def _markers(name: str) -> tuple[str, str]:
  return (f"<!-- results/{name}.md -->", f"<!-- end results/{name}.md -->")


def readme_blocks(text: str) -> dict:
  """{NAME: the block's text} of every marked README block."""
  out = {}
  lines = text.splitlines()
  for i, line in enumerate(lines):
    s = line.strip()
    if s.startswith("<!-- results/") and s.endswith(".md -->"):
      name = s[len("<!-- results/"):-len(".md -->")]
      end = _markers(name)[1]
      j = next((k for k in range(i + 1, len(lines))
                if lines[k].strip() == end), None)
      if j is None:
        raise ResultsError(f"README: {s} has no {end}")
      out[name] = "\n".join(lines[i + 1:j]) + "\n"
  return out


def update_readme(name: str, table: str, readme: str = README) -> bool:
  """Replaces the README block of `name` by `table`; False when the README
  has no such block (nothing written)."""
  with open(readme, encoding="utf-8") as f:
    text = f.read()
  start, end = _markers(name)
  if start not in text or end not in text:
    return False
  head, rest = text.split(start, 1)
  _, tail = rest.split(end, 1)
  new = head + start + "\n" + table + end + tail
  if new != text:
    _write_text(readme, new)
  return True


def choose_seeds(table: Table, n: int | None) -> list:
  """The table's seeds (n None), its first n, or its seeds and the next
  integers up to n."""
  if n is None:
    return list(table.seeds)
  if table.sweep and n != len(table.seeds):
    raise ResultsError(f"table {table.name} runs {table.config}'s seeds "
                       f"{list(table.seeds)}; --seeds cannot change them "
                       "(edit its get_sweep())")
  if n < 1:
    raise ResultsError(f"--seeds must be >= 1, got {n}")
  extra = range(max(table.seeds) + 1, max(table.seeds) + 1 + max(
      0, n - len(table.seeds)))
  return list(table.seeds[:n]) + list(extra)


def main(table_name: str, *, seeds: int | None = None,
         runs_dir: str | None = None, out_dir: str = RESULTS_DIR,
         readme: str | None = None,
         echo: Callable[[str], None] = print) -> int:
  """What `launch.results` does; returns its exit code (1: a run failed)."""
  table = get(table_name)
  out = make(table, seeds=choose_seeds(table, seeds), runs_dir=runs_dir,
             out_dir=out_dir, echo=echo)
  echo(out["table"].rstrip("\n"))
  for p in out["paths"]:
    echo(f"wrote {p}")
  if readme is not None:
    if update_readme(table.name, out["table"], readme):
      echo(f"updated the results/{table.name}.md block of {readme}")
    else:
      echo(f"{readme} has no results/{table.name}.md block; add the "
           f"markers {' ... '.join(_markers(table.name))}")
  return 1 if out["failed"] else 0

