"""The RePr driver: cycles of full training, a sub-network and re-init.

`run(config, workdir)` is what `experiments.drivers.run` calls for a config
with a `repr` section. With S1 = `repr.s1_steps`, S2 = `repr.s2_steps`,
N = `repr.cycles` and T = `num_steps`, cycle c (t_c = c * (S1 + S2)) is two
checkpointed phases (`engine.train_phase`) on one `engine.Engine`:

    WORKDIR/cycle_CC/full/     steps t_c .. t_c + S1, the full network
    WORKDIR/cycle_CC/sparse/   steps .. t_c + S1 + S2, the dropped filters
                               (the global top `repr.drop_fraction` by
                               `repr.ranking`, first conv excluded) held at 0
                               by the filter mask
    WORKDIR/cycle_CC/result.json  dropped filters per layer, re-init counts,
                               validation accuracy around the cycle
    WORKDIR/final/             steps N * (S1 + S2) .. T, the full network
    WORKDIR/summary.json       "final" (test accuracy ...) and "cycles"

The full phase of cycle c > 0 (and `final/`) starts from the re-initialised
network: the dropped filters of cycle c - 1 get new values orthogonal to
their pre-drop values (the end of `cycle_{c-1}/full`) and to the kept
filters (the end of `cycle_{c-1}/sparse`), `sparsity.repr_reinit`, and their
optimizer moments are reset. Every phase start is a pure function of
earlier checkpoints (drop and re-init keys are derived from `seed` and the
cycle), so a killed run resumes in the phase it was in. The optimizer,
its schedule (read at the global step) and the data order (`seed`) are
those of standard training: `--config.repr.cycles=0` is the standard-training
twin with the same number of steps.
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from experiments import config_check
from experiments import engine as engine_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import runs
from experiments import train
import sparsity


class Driver:
  """One RePr run: the engine, the conv layers and the cycle loop."""

  def __init__(self, config, workdir: str):
    self.config, self.workdir = config, workdir
    self.rc = config.repr
    base = engine_lib.build(config)
    layers = models_lib.layer_list(base.model, base.dataset.input_shape)
    self.groups = sparsity.channel_groups(layers)
    self.convs = [e["name"] for e in layers if e["op"] == "conv"]
    exclude = tuple(self.rc.get("exclude", ()))
    self.ranked = [n for n in (self.convs[1:] if self.rc.exclude_first
                               else self.convs)
                   if not any(config_check.layer_matches(p, n)
                              for p in exclude)]
    self.tx = sparsity.masked(optimizers.make_optimizer(
        config, binary_include=models_lib.is_binary_kernel))
    tx, groups, convs = self.tx, self.groups, self.convs

    def init_state(rng) -> engine_lib.TrainState:
      s = base.init_state(rng)
      return s.replace(opt_state=tx.init(s.params),
                       mask=_full_mask(s.params, convs, groups))

    self.engine = engine_lib.Engine(
        config, engine_lib.Run(base.dataset, base.model, self.tx, init_state))
    self._reinit_cache: dict = {}

  # -- schedule -------------------------------------------------------------
  def t(self, cycle: int) -> int:
    return cycle * (int(self.rc.s1_steps) + int(self.rc.s2_steps))

  def cycle_dir(self, cycle: int) -> str:
    return os.path.join(self.workdir, f"cycle_{cycle:02d}")

  def key(self, tag: int, cycle: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(
        jax.random.PRNGKey(self.config.seed), tag), cycle)

  def phase(self, phase_dir: str, start, end_step: int, label: str):
    return engine_lib.train_phase(
        self.engine, phase_dir, start, end_step=end_step,
        data_seed=self.config.seed, tx=self.tx, label=label)

  def final_of(self, phase_dir: str) -> engine_lib.TrainState:
    _, restored = self.engine.restore(phase_dir)
    if restored is None:
      raise FileNotFoundError(f"no checkpoint in {phase_dir}")
    return restored[0]

  def evaluate(self, state) -> float:
    with jax.set_mesh(self.engine.mesh):
      return self.engine.evaluate(state.params, state.batch_stats,
                                  "validation")["accuracy"]

  # -- event functions (pure functions of checkpoints) ----------------------
  def dropped_state(self, full: engine_lib.TrainState):
    """The start of the sub-network phase: drop, mask, clear moments."""
    params = jax.device_get(full.params)
    scores = sparsity.repr_scores(params, self.ranked, self.rc.ranking)
    selection = sparsity.repr_select(
        scores, float(self.rc.drop_fraction),
        key=self.key(1, self.cycle_of(full)),
        random=self.rc.ranking == "random")
    params, _ = sparsity.repr_drop(params, selection, self.groups)
    mask = sparsity.repr_mask(params, selection, self.groups,
                              jax.device_get(full.mask))
    opt_state = sparsity.mask_opt_state(jax.device_get(full.opt_state), mask)
    return full.replace(params=params, mask=mask, opt_state=opt_state)

  def cycle_of(self, state) -> int:
    period = int(self.rc.s1_steps) + int(self.rc.s2_steps)
    return (int(state.step) - int(self.rc.s1_steps)) // period

  def selection_of(self, state) -> dict:
    """Dropped filters of the ranked layers, read from a sub-network mask."""
    alive = sparsity.filters_of(jax.device_get(state.mask),
                                jax.device_get(state.params))
    return {name: ~np.asarray(alive[name]) for name in self.ranked}

  def reinit(self, cycle: int):
    """(state, info): the start of the full phase after `cycle`."""
    if cycle not in self._reinit_cache:
      full = self.final_of(os.path.join(self.cycle_dir(cycle), "full"))
      sub = self.final_of(os.path.join(self.cycle_dir(cycle), "sparse"))
      selection = self.selection_of(sub)
      _, saved = sparsity.repr_drop(jax.device_get(full.params), selection)
      params, info = sparsity.repr_reinit(
          self.key(2, cycle), jax.device_get(sub.params), selection, saved,
          self.groups, method=self.rc.reinit)
      opt_state = sparsity.repr_reset_moments(
          jax.device_get(sub.opt_state), params, selection, self.groups)
      mask = _full_mask(params, self.convs, self.groups)
      state = sub.replace(params=params, opt_state=opt_state, mask=mask)
      self._reinit_cache = {cycle: (state, info)}
    return self._reinit_cache[cycle]

  def start(self, cycle: int):
    """The start of the full phase of `cycle` (N: the final phase)."""
    if cycle == 0:
      return self.engine.init(jax.random.PRNGKey(self.config.seed))
    return self.reinit(cycle - 1)[0]

  # -- the loop ---------------------------------------------------------------
  def run_cycle(self, c: int) -> dict:
    d = self.cycle_dir(c)
    done = runs.read_result(d)
    if done is not None:
      return done
    s1, s2, n = int(self.rc.s1_steps), int(self.rc.s2_steps), self.rc.cycles
    full = self.phase(os.path.join(d, "full"), lambda: self.start(c),
                      self.t(c) + s1, f"RePr cycle {c + 1}/{n}: full network")
    sub = self.phase(os.path.join(d, "sparse"),
                     lambda: self.dropped_state(full), self.t(c) + s1 + s2,
                     f"RePr cycle {c + 1}/{n}: sub-network")
    selection = self.selection_of(sub)
    reinit_state, info = self.reinit(c)
    sizes = {name: int(np.size(sel)) for name, sel in selection.items()}
    dropped = {name: int(np.sum(sel)) for name, sel in selection.items()}
    out = {
        "cycle": c,
        "drop_step": self.t(c) + s1,
        "reinit_step": self.t(c) + s1 + s2,
        "dropped": dropped,
        "filters": sizes,
        "dropped_total": int(sum(dropped.values())),
        "reinit_null_space": {k: v["null_space"] for k, v in info.items()},
        "reinit_random": {k: v["random"] for k, v in info.items()},
        "val_accuracy": {
            "before_drop": self.evaluate(full),
            "after_drop": self.evaluate(self.engine.place(
                self.dropped_state(full))),
            "end_of_sub_network": self.evaluate(sub),
            "after_reinit": self.evaluate(self.engine.place(reinit_state)),
        },
    }
    runs.write_result(d, out)
    return out

  def run(self) -> dict:
    cycles = [self.run_cycle(c) for c in range(int(self.rc.cycles))]
    n = int(self.rc.cycles)
    state = self.phase(os.path.join(self.workdir, "final"),
                       lambda: self.start(n), int(self.config.num_steps),
                       "RePr: full network to the end" if n else
                       "Standard training (repr.cycles = 0)")
    with jax.set_mesh(self.engine.mesh):
      test = self.engine.evaluate(state.params, state.batch_stats, "test")
    summary = train.base_summary(self.config, self.engine.dataset, state, test)
    summary["cycles"] = cycles
    summary["repr"] = {"s1_steps": int(self.rc.s1_steps),
                       "s2_steps": int(self.rc.s2_steps),
                       "cycles": n,
                       "drop_fraction": float(self.rc.drop_fraction),
                       "ranking": self.rc.ranking, "reinit": self.rc.reinit,
                       "ranked_layers": self.ranked}
    summary["dropped_per_layer"] = {
        name: [c["dropped"][name] for c in cycles] for name in self.ranked}
    return summary


def _full_mask(params, convs, groups):
  """The run's mask with every filter kept (its structure never changes):
  the default kernel mask plus the conv biases and their BatchNorm
  scale/shift."""
  keep = {name: np.zeros((np.shape(_kernel_of(params, name))[-1],), bool)
          for name in convs}
  return sparsity.repr_mask(params, keep, groups,
                            sparsity.create_mask(params))


def _kernel_of(params, name: str):
  node = params
  for k in name.split("/"):
    node = node[k]
  return node["kernel"]


def format_cycles(summary: dict) -> str:
  """Dropped filters per layer and cycle, then the final test accuracy."""
  layers = summary["repr"]["ranked_layers"]
  lines = []
  if summary["cycles"]:
    w = max(len("layer"), *(len(n) for n in layers))
    head = "  ".join(f"cycle {c['cycle'] + 1:>2}" for c in summary["cycles"])
    lines.append(f"{'layer':<{w}}  filters  {head}")
    for name in layers:
      size = summary["cycles"][0]["filters"][name]
      cells = "  ".join(f"{c['dropped'][name]:>8}" for c in summary["cycles"])
      lines.append(f"{name:<{w}}  {size:>7}  {cells}")
  f = summary["final"]
  lines.append(f"test accuracy {f['test_accuracy']:.4f}   test loss "
               f"{f['test_loss']:.4f}   step {f['step']}")
  return "\n".join(lines)


# ------------------------------------------------------------- section --
def defaults() -> ml_collections.ConfigDict:
  """The `repr` fields with their defaults (every RePr config)."""
  rc = ml_collections.ConfigDict()
  rc.s1_steps = 20              # S1: full-network steps per cycle
  rc.s2_steps = 10              # S2: sub-network steps per cycle
  rc.cycles = 3                 # N (0 = standard training, same steps)
  rc.drop_fraction = 0.3        # p: global fraction of ranked filters
  rc.ranking = "orthogonality"  # sparsity.REPR_RANKINGS: orthogonality |
                                # magnitude | random
  rc.reinit = "orthogonal"      # sparsity.REPR_REINITS: orthogonal (QR null
                                # space) | random
  rc.exclude_first = True       # never rank the first conv layer
  rc.exclude = ()               # more layers never ranked (names, globs)
  return rc


def validate(config) -> None:
  """The `repr` section; ``ConfigError`` naming the first bad field."""
  require, choice = config_check.require, config_check.choice
  rc = config.repr
  for field in ("s1_steps", "s2_steps"):
    config_check.positive_int(config, f"repr.{field}")
  config_check.nonnegative_int(config, "repr.cycles")
  require(rc.cycles * (rc.s1_steps + rc.s2_steps) <= config.num_steps,
          "repr.cycles", f"{rc.cycles} cycles of s1_steps + s2_steps = "
          f"{rc.s1_steps + rc.s2_steps} steps exceed num_steps="
          f"{config.num_steps}")
  require(0.0 < rc.drop_fraction < 1.0, "repr.drop_fraction",
          f"must be in (0, 1), got {rc.drop_fraction!r}")
  choice(rc.ranking, sparsity.REPR_RANKINGS, "repr.ranking")
  choice(rc.reinit, sparsity.REPR_REINITS, "repr.reinit")
  require(isinstance(rc.exclude_first, bool), "repr.exclude_first",
          f"must be True or False, got {rc.exclude_first!r}")
  exclude = rc.get("exclude", ())
  require(isinstance(exclude, (tuple, list)) and all(
      isinstance(p, str) and p for p in exclude), "repr.exclude",
          f"must be a tuple of layer names, prefixes or globs, got "
          f"{exclude!r}")


DEPLOY_OPTIONS = ()


def deployable(config, workdir: str):
  """RePr's result: the final phase (``RUN/final``, every filter back),
  what the summary's test accuracy was measured on."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  summary = drivers.finished_summary(workdir)
  state = Driver(config, workdir).final_of(os.path.join(workdir, "final"))
  return drivers.Deployable(config, state, {
      "result": "the final phase (RUN/final)",
      "test_accuracy": summary["final"]["test_accuracy"]})


def run(config, workdir: str) -> dict:
  """Runs (or resumes) the RePr run in `workdir`; returns the summary.

  Raises `config_check.ConfigError` for a bad config or a workdir of
  another config (nothing is written then).
  """
  summary = runs.open_run(config, workdir, format_fn=format_cycles,
                          create_now=False)
  if summary is not None:
    return summary
  driver = Driver(config, workdir)
  if int(config.repr.cycles) > 0 and not driver.ranked:
    raise config_check.ConfigError(
        f"config.model: {config.model} has no conv layer for RePr to rank "
        f"(conv layers: {driver.convs}; the first is excluded unless "
        "repr.exclude_first=False, and repr.exclude removes more)")
  runs.create(config, workdir)
  summary = driver.run()
  runs.write_summary(workdir, summary)
  if runs.is_main():
    print(format_cycles(summary), flush=True)
  return summary
