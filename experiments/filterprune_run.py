"""Filter-pruning driver: FPGM, Network Slimming, and the scratch baselines.

`run(config, workdir)` is what `experiments.drivers.run` calls for a config
with a `filterprune` section. Every stage is a checkpointed phase
(`engine.train_phase`) on one `engine.Engine`, so a killed run resumes in the
phase it was in:

    WORKDIR/train/       steps 0 .. T = num_steps
                         fpgm: soft filter pruning (He et al. 2018 SFP;
                         He et al. 2019 FPGM, Algorithm 1): after every
                         `prune_every` steps (default one epoch) the
                         selection is recomputed from the current weights
                         (`sparsity.fpgm_filter_masks`); the selected
                         filters' kernels (and conv biases) are zeroed,
                         with their optimizer moments, and then trained
                         like every other weight until the next selection;
                         their BatchNorm scale and shift are never masked
                         (the released code's `layer_inter 3` skips them),
                         so a filter that the next selection does not
                         choose again has grown back.
                         `soft_variant="released_cifar"` is the released
                         CIFAR script instead (`pruning_cifar10.py`): a
                         first selection before training (step 0), and the
                         selected kernels get no gradient until the next
                         selection (`do_grad_mask`: held at 0).
                         At T the last selection is removed hard: kernel,
                         bias and BatchNorm scale/shift, together with any
                         filter whose kernel is all 0 (a filter counts as
                         kept only if it is alive). summary.json "final"
                         also gives `test_accuracy_before_removal`: the
                         last selection's kernels zeroed but BatchNorm
                         intact, what the released script reports.
                         `train/events.jsonl` (and summary.json
                         "filterprune") records each selection: step,
                         selected, newly_selected, revived (zeroed at the
                         previous selection, not selected at this one).
                         slimming: training with `l1 * sign(gamma)` added to
                         every BatchNorm scale's gradient
                         (`sparsity.bn_scale_l1`).
    WORKDIR/finetune/    slimming only: the globally smallest |gamma|
                         channels (`prune_fraction` of them) pruned with their
                         filters (`sparsity.slimming_filter_masks`), then
                         `finetune_steps` steps with a fresh optimizer (the
                         run's schedule stretched to the fine-tuning length,
                         or a constant `finetune_lr`), no L1.
    WORKDIR/scratch_e/   Liu et al. 2019, "Rethinking the Value of Network
    WORKDIR/scratch_b/   Pruning": the pruned architecture (the final filter
                         mask, fixed) trained from a fresh initialization
                         (key derived from `seed`) for T steps (Scratch-E)
                         and for T * dense MACs / pruned MACs steps
                         (Scratch-B, the same compute), the schedule
                         stretched to the length.
    WORKDIR/summary.json "final" (test accuracy, remaining_fraction,
                         macs_fraction), "structured" (MACs and filters per
                         layer), "baselines" {"scratch_e", "scratch_b"},
                         "slimming" (accuracy before pruning and before
                         fine-tuning).

A hard-masked filter (FPGM's final selection, slimming's pruned channels)
is the removed filter: its output channel is exactly 0 after its BatchNorm
(scale and shift masked too), so the masked network computes what the
physically smaller one computes; MACs are counted for the smaller one
(`experiments.structured.structured_macs`).

Convention (documented departure from the released FPGM code): between
selections the released script zeroes the selected filters' gradients but
keeps PyTorch SGD's momentum buffers, so a selected filter drifts away
from 0 within the epoch by its stale momentum; here `sparsity.masked` also
zeroes the moments, so a selected filter is exactly 0 until it is released,
and starts its regrowth with fresh moments.
"""
from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np
import optax

from experiments import config_check
from experiments import data as data_lib
from experiments import engine as engine_lib
from experiments import metrics as metrics_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import runs
from experiments import scratch
from experiments import shrink
from experiments import structured
from experiments import train
import sparsity

METHODS = ("fpgm", "slimming")


class Driver:
  """One filter-pruning run: the engine, the pruned layers, the phases."""

  def __init__(self, config, workdir: str):
    self.config, self.workdir = config, workdir
    self.fp = config.filterprune
    base = engine_lib.build(config)
    self.input_shape = base.dataset.input_shape
    self.layers = models_lib.layer_list(base.model, self.input_shape)
    self.groups = sparsity.channel_groups(self.layers)
    convs = [e["name"] for e in self.layers if e["op"] == "conv"]
    chosen = [n for n in convs if not tuple(self.fp.layers) or any(
        config_check.layer_matches(p, n) for p in self.fp.layers)]
    self.pruned = [n for n in chosen if not any(
        config_check.layer_matches(p, n) for p in tuple(self.fp.exclude))]
    if self.fp.method == "slimming":
      self.pruned = [n for n in self.pruned if self._bn_of(n) is not None]
    self.steps_per_epoch = data_lib.steps_per_epoch(
        base.dataset.splits["train"], config.batch_size)
    self.tx = self._tx(config, l1=self._l1())
    tx, pruned, groups = self.tx, self.pruned, self.groups

    def full_mask(params):
      """The run's fixed mask structure, everything kept: kernels, conv
      biases and the following BatchNorm scale/shift of pruned layers."""
      keep = {n: np.ones((_kernel(params, n).shape[-1],), bool)
              for n in pruned}
      return sparsity.expand_filter_masks(params, keep, groups,
                                          sparsity.create_mask(params))

    def init_state(rng) -> engine_lib.TrainState:
      s = base.init_state(rng)
      return s.replace(opt_state=tx.init(s.params), mask=full_mask(s.params))

    self.full_mask = full_mask

    self.engine = engine_lib.Engine(
        config, engine_lib.Run(base.dataset, base.model, self.tx, init_state))
    self._txs: dict = {}

  # -- pieces -----------------------------------------------------------------
  def _l1(self) -> float:
    return float(self.fp.l1) if self.fp.method == "slimming" else 0.0

  def _tx(self, config, *, l1: float, constant_lr: float | None = None):
    """masked(chain(bn_scale_l1, optimizer)) for slimming (l1 may be 0, so
    every phase has one optimizer-state structure), masked(optimizer)
    otherwise."""
    inner = optimizers.make_optimizer(
        config, constant_lr=constant_lr,
        binary_include=models_lib.is_binary_kernel)
    if self.fp.method == "slimming":
      inner = optax.chain(sparsity.bn_scale_l1(l1), inner)
    return sparsity.masked(inner)

  def _bn_of(self, conv: str) -> str | None:
    for bn in self.groups.get(conv, ()):
      e = next(e for e in self.layers if e["name"] == bn)
      if "scale" in e["params"]:
        return bn
    return None

  def phase(self, name: str, start, end_step: int, label: str, tx=None,
            events=None) -> engine_lib.TrainState:
    return engine_lib.train_phase(
        self.engine, os.path.join(self.workdir, name), start,
        end_step=end_step, data_seed=self.config.seed, tx=tx or self.tx,
        events=events, label=label)

  def test(self, state) -> dict:
    with jax.set_mesh(self.engine.mesh):
      return self.engine.evaluate(state.params, state.batch_stats, "test")

  def with_filters(self, state, keep: dict, opt_state=None, soft=False):
    """`state` with filter masks `keep`. The whole mask is rebuilt from the
    all-kept mask, so a filter masked before and kept now is unmasked.
    `soft`: only the kernels (and conv biases) of dropped filters are
    masked, their BatchNorm scale and shift stay trainable, so the filter
    can regrow once released (SFP / FPGM); otherwise the BatchNorm scale
    and shift are masked too (the filter is removed)."""
    params = jax.device_get(state.params)
    mask = sparsity.expand_filter_masks(
        params, keep, {} if soft else self.groups, self.full_mask(params))
    params = sparsity.apply_mask(params, mask)
    opt = jax.device_get(state.opt_state) if opt_state is None else opt_state
    opt = sparsity.mask_opt_state(opt, mask)
    return state.replace(params=params, mask=mask, opt_state=opt)

  def kept_filters(self, state) -> dict:
    """Filters that are unmasked and alive (some kernel weight non-zero)."""
    params = jax.device_get(state.params)
    unmasked = sparsity.filters_of(jax.device_get(state.mask), params)
    return {n: np.asarray(unmasked[n]) & _alive(_kernel(params, n))
            for n in self.pruned}

  # -- FPGM -------------------------------------------------------------------
  def fpgm_rates(self) -> dict:
    rates = {}
    overrides = dict(self.fp.layer_rates or {})
    for n in self.pruned:
      r = float(self.fp.rate)
      for pattern, value in overrides.items():
        if config_check.layer_matches(pattern, n):
          r = float(value)
      rates[n] = r
    return rates

  def fpgm_event(self, state, final: bool):
    """One selection: soft before T (kernels and their moments zeroed,
    BatchNorm free; the kernels stay masked until the next selection only
    with `soft_variant="released_cifar"`), hard at T (`final`), where an all-zero filter is
    removed as well."""
    params = jax.device_get(state.params)
    kernels = {n: _kernel(params, n) for n in self.pruned}
    keep = sparsity.fpgm_filter_masks(
        kernels, self.fpgm_rates(), float(self.fp.rate_norm),
        self.fp.criterion)
    if final:
      # What the released script reports (kernels zeroed, BatchNorm intact,
      # so a removed channel still outputs its BatchNorm constant), next to
      # the hard removal that the physically smaller network computes.
      soft = self.engine.place(self.with_filters(state, keep, soft=True))
      self.log_selection(int(state.step), keep, final, {
          "test_accuracy_before_removal": self.test(soft)["accuracy"]})
      keep = {n: np.asarray(keep[n]) & _alive(kernels[n]) for n in keep}
      return self.engine.place(self.with_filters(state, keep))
    self.log_selection(int(state.step), keep, final)
    state = self.with_filters(state, keep, soft=True)
    if not self.released_cifar():
      state = state.replace(mask=self.full_mask(params))
    return self.engine.place(state)

  def log_selection(self, step: int, keep: dict, final: bool,
                    extra: dict | None = None) -> None:
    """One line of train/events.jsonl: which filters the selection zeroes,
    how many of them the previous selection did not (newly selected), and
    how many that the previous selection zeroed it leaves free (revived)."""
    if not runs.is_main():
      return
    path = self.events_path()
    earlier = [e for e in metrics_lib.read_events(path) if e["step"] < step]
    prev = earlier[-1]["layers"] if earlier else {}
    row = {"step": step, "final": final, "selected": 0, "newly_selected": 0,
           "revived": 0, **(extra or {}), "layers": {}}
    for n in self.pruned:
      sel = np.flatnonzero(~np.asarray(keep[n])).tolist()
      was = set(prev[n]["zeroed"]) if n in prev else set()
      counts = {"selected": len(sel),
                "newly_selected": len(set(sel) - was),
                "revived": len(was - set(sel))}
      row["layers"][n] = {"zeroed": sel, **counts}
      for k, v in counts.items():
        row[k] += v
    metrics_lib.write_event(path, row)

  def events_path(self) -> str:
    return os.path.join(self.workdir, "train", "events.jsonl")

  def released_cifar(self) -> bool:
    return self.fp.get("soft_variant", "paper") == "released_cifar"

  def prune_every(self) -> int:
    return int(self.fp.prune_every) or self.steps_per_epoch

  # -- slimming ---------------------------------------------------------------
  def slimming_keep(self, state) -> dict:
    params = jax.device_get(state.params)
    scales = {n: np.asarray(params[self._bn_of(n)]["scale"])
              for n in self.pruned}
    return sparsity.slimming_filter_masks(scales,
                                          float(self.fp.prune_fraction))

  # -- the run ----------------------------------------------------------------
  def run(self) -> dict:
    t = int(self.config.num_steps)
    fp = self.fp
    extra: dict = {}
    if fp.method == "fpgm":
      every = self.prune_every()
      first = 0 if self.released_cifar() else every
      events = {s: functools.partial(self.fpgm_event, final=False)
                for s in range(first, t, every)}
      events[t] = functools.partial(self.fpgm_event, final=True)
      state = self.phase("train", lambda: self.engine.init(
          jax.random.PRNGKey(self.config.seed)), t,
                         f"FPGM ({fp.criterion}): soft pruning every "
                         f"{every} steps", events=events)
      final = state
    else:
      state = self.phase("train", lambda: self.engine.init(
          jax.random.PRNGKey(self.config.seed)), t,
                         f"Network slimming: training with L1 {fp.l1} on "
                         "BatchNorm scales")
      keep = self.slimming_keep(state)
      f = int(fp.finetune_steps)
      ft_cfg = scratch.scaled_config(self.config, f / t, f)
      ft_tx = self._txs.setdefault("finetune", self._tx(
          ft_cfg, l1=0.0, constant_lr=float(fp.finetune_lr) or None))

      def pruned_start():
        s = jax.device_get(state)
        s = s.replace(opt_state=ft_tx.init(s.params))
        return self.engine.place(self.with_filters(s, keep, s.opt_state))

      pruned = self.engine.place(pruned_start())
      extra["slimming"] = {
          "unpruned_test_accuracy": self.test(state)["accuracy"],
          "pruned_test_accuracy_before_finetune":
              self.test(pruned)["accuracy"],
          "finetune_steps": f}
      final = self.phase("finetune", pruned_start, t + f,
                         f"Network slimming: fine-tuning {f} steps after "
                         f"pruning {fp.prune_fraction:.0%} of the channels",
                         tx=ft_tx)
    test = self.test(final)
    keep = self.kept_filters(final)
    macs = structured.structured_macs(self.layers, keep,
                                      input_shape=self.input_shape)
    summary = train.base_summary(self.config, self.engine.dataset, final, test)
    summary["final"]["macs_fraction"] = macs["macs_fraction"]
    summary["structured"] = {
        "method": fp.method, "pruned_layers": self.pruned,
        "dense_macs": macs["dense_macs"], "macs": macs["macs"],
        "layers": macs["layers"],
        "filters_kept": int(sum(np.sum(k) for k in keep.values())),
        "filters": int(sum(np.size(k) for k in keep.values())),
        "shrunk": shrink.state_shrunk_size(self.layers, final,
                                           input_shape=self.input_shape)}
    if fp.method == "fpgm":
      summary["structured"].update(criterion=fp.criterion,
                                   rates=self.fpgm_rates(),
                                   rate_norm=float(fp.rate_norm),
                                   prune_every=self.prune_every(),
                                   soft_variant=fp.get("soft_variant",
                                                       "paper"))
      events = metrics_lib.read_events(self.events_path())
      summary["filterprune"] = [
          {k: e[k] for k in ("step", "selected", "newly_selected", "revived")}
          for e in events]
      summary["final"]["revived_filters"] = sum(e["revived"] for e in events)
      if events and "test_accuracy_before_removal" in events[-1]:
        summary["final"]["test_accuracy_before_removal"] = events[-1][
            "test_accuracy_before_removal"]
    summary.update(extra)
    if fp.scratch:
      summary["baselines"] = scratch.run_baselines(
          self.engine, self.workdir, mask=final.mask, steps=t,
          macs_fraction=macs["macs_fraction"],
          make_tx=lambda cfg: self._tx(cfg, l1=0.0),
          max_factor=float(fp.scratch_b_max_factor),
          tx_e=self.tx if fp.method == "fpgm" else None)
    return summary


def load_state(config, workdir: str, phase: str = "train"):
  """The newest checkpointed TrainState of a phase ("train", "finetune",
  "scratch_e", "scratch_b") of a filterprune run."""
  driver = Driver(config, workdir)
  _, restored = driver.engine.restore(os.path.join(workdir, phase))
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/{phase}")
  return restored[0]


# ------------------------------------------------------------- section --
SOFT_VARIANTS = ("paper", "released_cifar")


def defaults() -> ml_collections.ConfigDict:
  """The `filterprune` fields with their defaults (FPGM and Network
  Slimming, with the scratch baselines)."""
  fp = ml_collections.ConfigDict()
  fp.method = "fpgm"            # METHODS: fpgm | slimming
  fp.layers = ()                # conv layers pruned (names, globs); () = all
  fp.exclude = ()               # never pruned
  # FPGM
  fp.rate = 0.4                 # rate_dist: floor(C * rate) filters by GM
  fp.layer_rates = ml_collections.ConfigDict()  # name/glob -> rate
  fp.rate_norm = 1.0            # kept by the norm step (1 = no norm step)
  fp.criterion = "geometric_median"  # sparsity.FPGM_CRITERIA:
                                # geometric_median | l2 | l1
  fp.prune_every = 0            # steps between re-selections; 0 = 1 epoch
  fp.soft_variant = "paper"     # paper: FPGM Algorithm 1 (train, then
                                # zero; zeroed filters train and may regrow)
                                # released_cifar: pruning_cifar10.py (also a
                                # selection at step 0; zeroed kernels get no
                                # gradient until the next selection)
  # Network Slimming
  fp.l1 = 1e-4                  # s: L1 strength on BatchNorm scales
  fp.prune_fraction = 0.5       # global fraction of BN channels pruned
  fp.finetune_steps = 1000
  fp.finetune_lr = 0.0          # 0: the run's schedule, stretched
  # Liu et al. 2019 baselines
  fp.scratch = True             # train Scratch-E and Scratch-B
  fp.scratch_b_max_factor = 2.0  # cap on Scratch-B's step factor (0: none)
  return fp


def validate(config) -> None:
  """The `filterprune` section; ``ConfigError`` naming the first bad
  field."""
  require, choice = config_check.require, config_check.choice
  fp = config.filterprune
  choice(fp.method, METHODS, "filterprune.method")
  for field in ("layers", "exclude"):
    v = fp[field]
    require(isinstance(v, (tuple, list)) and all(isinstance(p, str)
                                                 for p in v),
            f"filterprune.{field}", f"must be a tuple of layer names or "
            f"globs, got {v!r}")
  if fp.method == "fpgm":
    require(0.0 <= fp.rate < 1.0, "filterprune.rate",
            f"must be in [0, 1), got {fp.rate!r}")
    for name, r in dict(fp.layer_rates or {}).items():
      require(0.0 <= r < 1.0, f"filterprune.layer_rates.{name}",
              f"must be in [0, 1), got {r!r}")
    require(0.0 < fp.rate_norm <= 1.0, "filterprune.rate_norm",
            f"must be in (0, 1], got {fp.rate_norm!r}")
    choice(fp.criterion, sparsity.FPGM_CRITERIA, "filterprune.criterion")
    require(isinstance(fp.prune_every, int) and fp.prune_every >= 0,
            "filterprune.prune_every",
            f"must be an integer >= 0 (0 = one epoch), got "
            f"{fp.prune_every!r}")
    choice(fp.get("soft_variant", "paper"), SOFT_VARIANTS,
           "filterprune.soft_variant")
  else:
    require(fp.get("soft_variant", "paper") == "paper",
            "filterprune.soft_variant",
            "applies to FPGM's soft pruning only; slimming would ignore it")
    require(fp.l1 >= 0, "filterprune.l1", f"must be >= 0, got {fp.l1!r}")
    require(0.0 <= fp.prune_fraction < 1.0, "filterprune.prune_fraction",
            f"must be in [0, 1), got {fp.prune_fraction!r}")
    require(isinstance(fp.finetune_steps, int)
            and fp.finetune_steps > 0, "filterprune.finetune_steps",
            f"must be a positive integer, got {fp.finetune_steps!r}")
    require(fp.finetune_lr >= 0, "filterprune.finetune_lr",
            f"must be >= 0 (0 = the run's schedule), got "
            f"{fp.finetune_lr!r}")
  require(fp.scratch_b_max_factor >= 0, "filterprune.scratch_b_max_factor",
          f"must be >= 0 (0 = no cap), got {fp.scratch_b_max_factor!r}")


DEPLOY_OPTIONS = ()


def deployable(config, workdir: str):
  """The pruned network the summary reports: FPGM's ``RUN/train`` at T
  (checkpointed after the final event: the last selection and every
  all-zero filter removed, kernel, bias and BatchNorm scale/shift all 0),
  slimming's ``RUN/finetune`` (pruned, then fine-tuned)."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  summary = drivers.finished_summary(workdir)
  phase = "train" if config.filterprune.method == "fpgm" else "finetune"
  state = load_state(config, workdir, phase)
  return drivers.Deployable(config, state, {
      "result": f"the hard-pruned {config.filterprune.method} network "
                f"(RUN/{phase})",
      "test_accuracy": summary["final"]["test_accuracy"]})


def _alive(kernel) -> np.ndarray:
  """(C_out,) bool: the filter has a non-zero kernel weight."""
  k = np.asarray(kernel)
  return np.any(k.reshape(-1, k.shape[-1]) != 0, axis=0)


def _kernel(params, name: str):
  node = params
  for k in name.split("/"):
    node = node[k]
  return node["kernel"]


def format_result(summary: dict) -> str:
  """Per-layer filters and MACs, then the method and baseline rows."""
  s = summary["structured"]
  w = max(len("layer"), *(len(r["name"]) for r in s["layers"]))
  lines = [f"{'layer':<{w}}  filters kept  MACs (pruned / dense)"]
  for r in s["layers"]:
    lines.append(f"{r['name']:<{w}}  {r['filters_kept']:>5} / "
                 f"{r['filters']:<5} {r['macs']:>12,} / {r['dense_macs']:,}")
  f = summary["final"]
  lines.append(f"MACs {s['macs']:,} of {s['dense_macs']:,} "
               f"({f['macs_fraction']:.3f}); filters {s['filters_kept']} of "
               f"{s['filters']}")
  rows = []
  if "slimming" in summary:
    sl = summary["slimming"]
    rows += [("unpruned (with L1)", sl["unpruned_test_accuracy"]),
             ("pruned, before fine-tuning",
              sl["pruned_test_accuracy_before_finetune"])]
  rows.append((f"{s['method']} (pruned)", f["test_accuracy"]))
  b = summary.get("baselines", {})
  if b:
    rows += [(f"Scratch-E ({b['scratch_e']['steps']} steps)",
              b["scratch_e"]["test_accuracy"]),
             (f"Scratch-B ({b['scratch_b']['steps']} steps)",
              b["scratch_b"]["test_accuracy"])]
  w = max(len(r[0]) for r in rows)
  lines.append(f"{'':<{w}}  test accuracy")
  lines += [f"{name:<{w}}  {acc:.4f}" for name, acc in rows]
  return "\n".join(lines)


def run(config, workdir: str) -> dict:
  """Runs (or resumes) the filter-pruning run in `workdir`.

  Raises `config_check.ConfigError` for a bad config or a workdir of
  another config (nothing is written then).
  """
  summary = runs.open_run(config, workdir, format_fn=format_result,
                          create_now=False)
  if summary is not None:
    return summary
  driver = Driver(config, workdir)
  if not driver.pruned:
    what = ("conv layer followed by a BatchNorm with a scale"
            if config.filterprune.method == "slimming" else "conv layer")
    raise config_check.ConfigError(
        f"config.filterprune.layers: {config.model} has no {what} to prune "
        "(check filterprune.layers / filterprune.exclude)")
  runs.create(config, workdir)
  summary = driver.run()
  runs.write_summary(workdir, summary)
  if runs.is_main():
    print(format_result(summary), flush=True)
  return summary
