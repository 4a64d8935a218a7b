"""The gradient-count driver: composite schedule of checkpointed events.

`run(config, workdir)` is what `launch.train` calls for a config with a
`gradcount` section (the method is the project's reading of Khan et al.
2022, whose body is not available: see `sparsity/_gradcount.py` and
METHODS.md 3.1). One `engine.train_phase` over [0, num_steps) on a
`engine.Engine` whose optimizer is

    optax.chain(sparsity.count_gradients(eps), sparsity.masked(inner))

and whose events (`sparsity.composite_schedule`) are applied by
`event_fn` between jitted steps; every event step is a checkpoint, so a
killed run resumes from the last event or checkpoint bit-identically (the
counts live in the optimizer state, the mask in the TrainState):

    [0, warmup)                  dense warm-up
    warmup                       counts reset
    every `window` steps         the window's activity a = count / window
      (the joint phase, until      gradcount: count-weighted shrinkage,
       warmup + joint)              pruning of inactive weights (budget),
                                    and every `redundancy_every` steps
                                    removal of redundant filters;
                                  l1: uniform shrinkage (same lam), and at
                                    the end global magnitude pruning to
                                    `target_sparsity`;
                                  magnitude: gradual global magnitude
                                    pruning (cubic) to `target_sparsity`
    (warmup + joint, num_steps]  masked fine-tune (mask frozen)

With `gradcount.scratch`, the final mask is then trained from a fresh
init as Scratch-E and Scratch-B (`experiments.scratch`, Liu et al. 2019),
in `WORKDIR/scratch_e/` and `WORKDIR/scratch_b/`; summary.json adds
`baselines` and `final.macs_fraction` (removed filters, dead input
channels and pruned weights counted, `structured.structured_macs`).

`l1` and `magnitude` are the controls at the same final sparsity: set
`gradcount.target_sparsity`, or `gradcount.match_workdir` to a finished
gradcount run whose kernel remaining fraction they then match.

The mask covers the kernels and, for the layers whose filters may be
removed (convs that are not depthwise and not a logits layer, minus
`filter_exclude` globs), their bias and following BatchNorm scale/shift, so
a removed filter's channel is exactly 0. Its structure is fixed at init, so
no event retraces the step.

Workdir: `config.json`, `metrics.jsonl`, `checkpoints/`, `summary.json`
(segmentation runs: `final` with dice, mean_iou, remaining_fraction,
filters_remaining_fraction, memory_bytes, and `layer_report`), plus
`events.jsonl` (one line per event: step, kept weights and filters).
"""
from __future__ import annotations

import fnmatch
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import config_check
from experiments import engine as engine_lib
from experiments import metrics as metrics_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import runs
from experiments import scratch
from experiments import segmentation
from experiments import shrink
from experiments import structured
from experiments import train
import sparsity

METHODS = ("gradcount", "l1", "magnitude")
REDUNDANCY = ("max_cosine", "orthogonality")


# ----------------------------------------------------------- building ----
def removable_layers(layers: list, exclude=()) -> list[str]:
  """Conv layers whose filters may be removed: not depthwise (grouped), not
  a logits layer (`segmentation.output_layers`), not matching a glob of
  `exclude`."""
  outputs = set(segmentation.output_layers(layers))
  return [e["name"] for e in layers
          if e["op"] == "conv" and "kernel" in e["params"]
          and int(e.get("feature_group_count", 1)) == 1
          and e["name"] not in outputs
          and not any(fnmatch.fnmatchcase(e["name"], p) for p in exclude)]


def _is_kernel(name: str) -> bool:
  return name.endswith("/kernel")


def make_tx(config):
  """chain(count_gradients(eps), masked(optimizer of `config`))."""
  inner = optimizers.make_optimizer(
      config, binary_include=models_lib.is_binary_kernel)
  return optax.chain(sparsity.count_gradients(float(config.gradcount.eps)),
                     sparsity.masked(inner))


class Setup:
  """Engine, layer list, removable layers and their channel groups."""

  def __init__(self, config):
    gc = config.gradcount
    base = engine_lib.build(config)
    self.layers = models_lib.layer_list(base.model, base.dataset.input_shape)
    self.removable = removable_layers(self.layers,
                                      tuple(gc.get("filter_exclude", ())))
    groups = sparsity.channel_groups(self.layers)
    self.groups = {n: groups.get(n, []) for n in self.removable}
    tx = make_tx(config)

    def init_state(rng):
      state = base.init_state(rng)
      ones = {n: jnp.ones((_kernel(state.params, n).shape[-1],), jnp.bool_)
              for n in self.removable}
      mask = sparsity.expand_filter_masks(state.params, ones, self.groups,
                                          mask=state.mask)
      return state.replace(opt_state=tx.init(state.params), mask=mask)

    self.engine = engine_lib.Engine(config, engine_lib.Run(
        base.dataset, base.model, tx, init_state))


def _kernel(params, layer: str):
  node = params
  for k in layer.split("/"):
    node = node[k]
  return node["kernel"]


def pruned_macs(setup: Setup, state) -> dict:
  """`structured.structured_macs` of the final mask: removed filters, the
  input channels they leave dead, and the kept weights of every kernel."""
  mask = jax.device_get(state.mask)
  params = jax.device_get(state.params)
  alive = sparsity.filters_of(mask, params)
  kernels = {}
  for e in setup.layers:
    if e["op"] in ("conv", "dense") and "kernel" in e["params"]:
      m = _kernel(mask, e["name"])
      if m is not None:
        kernels[e["name"]] = np.asarray(m)
  return structured.structured_macs(
      setup.layers, {n: np.asarray(alive[n]) for n in setup.removable},
      input_shape=setup.engine.dataset.input_shape, kernel_masks=kernels)


def _score_fn(kind: str):
  if kind == "orthogonality":
    return lambda kernel, kept: sparsity.orthogonality_scores(kernel)
  return lambda kernel, kept: sparsity.max_cosine_scores(kernel, kept)


_filters_of = jax.jit(sparsity.filters_of)  # one compile, not one per op


def kernel_counts(mask, params, layers: list[str]) -> dict:
  """Kept/total kernel weights and kept/total filters of `layers`."""
  kept = total = 0
  leaves = [(n, m) for n, m in sparsity.masked_leaves(mask) if _is_kernel(n)]
  for _, m in leaves:
    kept += int(np.sum(np.asarray(m)))
    total += int(np.size(m))
  alive = jax.device_get(_filters_of(mask, params))
  f_kept = sum(int(np.sum(np.asarray(alive[n]))) for n in layers)
  f_total = sum(int(np.size(alive[n])) for n in layers)
  return {"weights_kept": kept, "weights": total, "filters_kept": f_kept,
          "filters": f_total}


# ------------------------------------------------------------- events ----
def make_event_fn(config, setup: Setup, target: float, workdir: str):
  """`event_fn(state, Event) -> state` of the configured method."""
  gc = config.gradcount
  method = gc.method
  warmup, joint = int(gc.warmup_steps), int(gc.joint_steps)
  score_fn = jax.jit(_score_fn(gc.redundancy))
  include = _is_kernel
  # The tree-wide event maths, compiled once per run (op by op, every leaf
  # and op would compile on its own).
  lam, rho, budget = float(gc.lam), float(gc.rho), float(gc.prune_budget)

  @jax.jit
  def gradcount_update(params, mask, opt):
    act = sparsity.activity(sparsity.find_count_state(opt))
    params = sparsity.count_weighted_shrink(params, act, mask, lam)
    mask = sparsity.prune_inactive(params, mask, act, rho, budget)
    return params, mask

  l1_update = jax.jit(lambda params, mask: sparsity.shrink(params, mask, lam,
                                                           include))
  finish = jax.jit(lambda params, mask, opt, reset: (
      sparsity.apply_mask(params, mask),
      jax.lax.cond(reset, sparsity.reset_counts, lambda o: o, opt)))

  def log(step: int, mask, params, what: str) -> None:
    if not runs.is_main():
      return
    metrics_lib.write_event(
        os.path.join(workdir, "events.jsonl"),
        {"step": step, "event": what,
         **kernel_counts(mask, params, setup.removable)})

  def event_fn(state, ev):
    step = int(state.step)
    params, mask, opt = state.params, state.mask, state.opt_state
    what = []
    if ev.update:
      if method == "gradcount":
        params, mask = gradcount_update(params, mask, opt)
        what.append("shrink+prune")
        if ev.redundancy and setup.removable:
          alive = sparsity.filters_of(mask, params)
          kernels = {n: _kernel(params, n) for n in setup.removable}
          new = sparsity.redundant_filters(
              kernels, {n: alive[n] for n in setup.removable}, score_fn,
              float(gc.s_max), min_keep=int(gc.min_keep),
              budget=float(gc.filter_budget))
          mask = sparsity.filter_mask_update(params, mask, new, setup.groups)
          what.append("redundancy")
      elif method == "l1":
        params = l1_update(params, mask)
        what.append("shrink")
        if ev.last:
          mask = sparsity.prune_global_to(params, mask, target, include)
          what.append("prune")
      else:  # magnitude
        s = float(sparsity.polynomial_sparsity(
            step, final=target, begin=warmup, end=warmup + joint))
        mask = sparsity.prune_global_to(params, mask, s, include)
        what.append(f"prune:{s:.4f}")
    if ev.reset:
      what.append("reset")
    params, opt = finish(params, mask, opt, ev.reset)
    log(step, jax.device_get(mask), jax.device_get(params), ",".join(what))
    return state.replace(params=params, mask=mask, opt_state=opt)

  return event_fn


# -------------------------------------------------------------- target ----
def control_target(config) -> float:
  """The final kernel sparsity of the l1 / magnitude controls (0 for
  gradcount): `target_sparsity`, or 1 - the remaining fraction of the
  finished run in `match_workdir`."""
  gc = config.gradcount
  if gc.method == "gradcount":
    return 0.0
  if gc.get("match_workdir", ""):
    path = os.path.join(os.path.expanduser(gc.match_workdir), "summary.json")
    if not os.path.exists(path):
      raise config_check.ConfigError(
          f"config.gradcount.match_workdir: no finished run there ({path} "
          "does not exist)")
    with open(path) as f:
      return 1.0 - float(json.load(f)["final"]["remaining_fraction"])
  return float(gc.target_sparsity)


# ------------------------------------------------------------- section --
def defaults() -> ml_collections.ConfigDict:
  """The `gradcount` fields with their defaults."""
  gc = ml_collections.ConfigDict()
  gc.method = "gradcount"     # METHODS: gradcount | l1 | magnitude (controls)
  gc.warmup_steps = 300       # dense warm-up
  gc.joint_steps = 900        # counting / shrink / prune / redundancy
  gc.window = 50              # steps per counting window (one event each)
  gc.redundancy_every = 150   # redundant-filter removal (multiple of window)
  gc.eps = 0.5                # significant: |g| > eps * RMS(g) of the layer
  gc.lam = 0.01               # shrinkage per event: lam * (1 - activity)
  gc.rho = 0.35               # inactive: activity < rho
  gc.prune_budget = 0.15      # at most this fraction of a layer per event
  gc.redundancy = "max_cosine"  # REDUNDANCY: max_cosine | orthogonality
  gc.s_max = 0.6              # drop a filter whose score exceeds this
  gc.min_keep = 4             # filters kept per layer at least
  gc.filter_budget = 0.25     # at most this fraction of a layer per event
  gc.filter_exclude = ()      # globs of conv layers never filter-pruned
  gc.target_sparsity = 0.0    # l1 / magnitude: final kernel sparsity ...
  gc.match_workdir = ""       # ... or that of this finished gradcount run
  gc.scratch = True           # Scratch-E / Scratch-B of the final mask
  gc.scratch_b_max_factor = 2.0  # cap on Scratch-B's step factor (0: none)
  return gc


def validate(config) -> None:
  """The `gradcount` section; ``ConfigError`` naming the first bad
  field."""
  require, choice = config_check.require, config_check.choice
  gc = config.gradcount
  choice(gc.method, METHODS, "gradcount.method")
  choice(gc.redundancy, REDUNDANCY, "gradcount.redundancy")
  for field in ("joint_steps", "window", "redundancy_every", "min_keep"):
    config_check.positive_int(config, f"gradcount.{field}")
  config_check.nonnegative_int(config, "gradcount.warmup_steps")
  w = gc.warmup_steps
  require(w + gc.joint_steps <= config.num_steps, "gradcount.joint_steps",
          f"warmup_steps + joint_steps = {w + gc.joint_steps} exceeds "
          f"num_steps={config.num_steps}")
  require(gc.redundancy_every % gc.window == 0, "gradcount.redundancy_every",
          f"must be a multiple of window={gc.window}, got "
          f"{gc.redundancy_every!r}")
  require(gc.eps > 0, "gradcount.eps", f"must be > 0, got {gc.eps!r}")
  require(gc.lam >= 0, "gradcount.lam", f"must be >= 0, got {gc.lam!r}")
  for field in ("rho", "prune_budget", "filter_budget"):
    require(0.0 <= gc[field] <= 1.0, f"gradcount.{field}",
            f"must be in [0, 1], got {gc[field]!r}")
  require(0.0 < gc.s_max <= 1.0, "gradcount.s_max",
          f"must be in (0, 1], got {gc.s_max!r}")
  require(0.0 <= gc.target_sparsity < 1.0, "gradcount.target_sparsity",
          f"must be in [0, 1), got {gc.target_sparsity!r}")
  if gc.method != "gradcount":
    require(gc.target_sparsity > 0 or bool(gc.get("match_workdir", "")),
            "gradcount.target_sparsity",
            f"the {gc.method} control needs target_sparsity > 0 or "
            "gradcount.match_workdir (a finished gradcount run)")


# ------------------------------------------------------------- result ----
DEPLOY_OPTIONS = ()


def deployable(config, workdir: str):
  """The network the summary reports: the newest checkpoint of the run's
  one phase (``RUN/checkpoints``, step num_steps), with its final mask
  (pruned weights and removed filters exactly 0)."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  summary = drivers.finished_summary(workdir)
  _, restored = Setup(config).engine.restore(workdir)
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}")
  return drivers.Deployable(config, restored[0], {
      "result": f"the {config.gradcount.method}-pruned network (final mask)",
      "test_accuracy": summary["final"]["test_accuracy"]})


# --------------------------------------------------------------- main ----
def run(config, workdir: str) -> dict:
  """Trains a gradcount / l1 / magnitude run in `workdir`; the summary."""
  # Everything that can refuse the run does so before anything is written.
  summary = runs.open_run(config, workdir, format_fn=train.format_result,
                          create_now=False)
  if summary is not None:
    return summary
  target = control_target(config)
  runs.create(config, workdir)
  gc = config.gradcount
  setup = Setup(config)
  engine = setup.engine
  events = sparsity.composite_schedule(
      int(gc.warmup_steps), int(gc.joint_steps), int(gc.window),
      int(gc.redundancy_every))
  if runs.is_main():
    print(f"gradcount driver: method {gc.method}, target sparsity "
          f"{target:.4f}, {len(events)} events, filter-removable layers: "
          f"{len(setup.removable)}", flush=True)
  event_fn = make_event_fn(config, setup, target, workdir)
  state = engine_lib.train_phase(
      engine, workdir, lambda: engine.init(jax.random.PRNGKey(config.seed)),
      end_step=config.num_steps, data_seed=config.seed,
      events={step: functools.partial(event_fn, ev=ev)
              for step, ev in events.items()},
      checkpoint_start=False, label=f"gradcount[{gc.method}]")
  test = engine_lib.evaluate_test(engine, workdir, state)
  summary = train.base_summary(config, engine.dataset, state, test)
  if engine.task == "segmentation":
    summary.update(train.segmentation_summary(engine, state, test))
  else:
    counts = kernel_counts(jax.device_get(state.mask),
                           jax.device_get(state.params), setup.removable)
    summary["final"]["remaining_fraction"] = (
        counts["weights_kept"] / max(counts["weights"], 1))
    summary["final"]["filters_remaining_fraction"] = (
        counts["filters_kept"] / max(counts["filters"], 1))
  summary["gradcount"] = {"method": gc.method, "target_sparsity": target,
                          "removable_layers": setup.removable,
                          "shrunk": shrink.state_shrunk_size(
                              setup.layers, state,
                              input_shape=engine.dataset.input_shape)}
  macs = pruned_macs(setup, state)
  summary["final"]["macs_fraction"] = macs["macs_fraction"]
  if gc.get("scratch", False):
    summary["baselines"] = scratch.run_baselines(
        engine, workdir, mask=state.mask, steps=int(config.num_steps),
        macs_fraction=macs["macs_fraction"], make_tx=make_tx,
        max_factor=float(gc.get("scratch_b_max_factor", 0.0)),
        tx_e=engine.run.tx)
  runs.write_summary(workdir, summary)
  if runs.is_main():
    print(train.format_result(summary), flush=True)
    if "layer_report" in summary:
      print(segmentation.format_layer_report(summary["layer_report"]),
            flush=True)
  return summary
