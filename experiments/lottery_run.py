"""The lottery-ticket driver: IMP levels, controls and instability as phases.

`run(config, workdir)` is what `launch.train` calls for a config with a
`lottery` section. A Python loop over jitted phases (`engine.train_phase`),
each a sub-workdir with its own checkpoints and metrics:

    WORKDIR/config.json            the trunk's config
    WORKDIR/init/checkpoints/0     theta_0 (kept for the whole run)
    WORKDIR/rewind/checkpoints/k   theta_k and its optimizer state (k > 0)
    WORKDIR/level_NN/              level N of the trunk: checkpoints/,
                                   metrics.jsonl, result.json
    WORKDIR/level_NN/controls/<name>_<s>/     a control branch, seed s
    WORKDIR/level_NN/instability/copy_{0,1}/  the two LMC copies
    WORKDIR/summary.json, lottery.md, lottery.png

Level 0 trains the dense net from theta_0 for `num_steps`; level L >= 1
prunes (`lottery.level_mask`), resets (`lottery.reset`, mode
`lottery.reset`) and trains from the reset step to `num_steps`. A level is
done when its `result.json` exists; a killed run resumes in the level (and
branch) it was in, from that phase's newest checkpoint, bit-identically on
CPU. Every decision (masks, seeds, resets) is a pure function of earlier
checkpoints, so nothing else needs saving.

Controls are branches of a level (same start step, schedule and data
order as the ticket): `random_reinit` (the ticket's mask on a fresh draw of
the initializer) and `random_prune` (random positions with the ticket's
per-layer counts on the reset weights). They run after each level with the
trunk, or later on a finished trunk with `lottery.trunk = "existing"`
(nothing of the trunk is retrained or rewritten).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from experiments import checkpointing
from experiments import config_check
from experiments import engine as engine_lib
from experiments import lottery_report
from experiments import runs
import lottery
import sparsity

CONTROLS = ("random_reinit", "random_prune")
# Fields that only choose branches: they may differ from the stored trunk
# config (controls and instability copies run later on a finished trunk).
BRANCH_FIELDS = ("controls", "control_seeds", "control_levels", "trunk",
                 "instability_levels", "instability_points")
_CONTROL_TAG = {name: i for i, name in enumerate(CONTROLS)}


def level_dir(workdir: str, level: int) -> str:
  return os.path.join(workdir, f"level_{level:02d}")


def _trunk_config(config_dict: dict) -> dict:
  out = json.loads(json.dumps(config_dict))
  for field in BRANCH_FIELDS:
    out.get("lottery", {}).pop(field, None)
  return out


# ------------------------------------------------------------ checks ----
def _check_workdir(config, workdir: str) -> None:
  """Refuses a workdir of another trunk; checks `trunk="existing"`."""
  path = os.path.join(workdir, "config.json")
  lcfg = config.lottery
  runs.check_workdir(config, workdir, compare=_trunk_config,
                     what="a lottery run")
  if lcfg.trunk == "existing":
    missing = [lv for lv in range(lcfg.levels + 1)
               if not os.path.exists(os.path.join(level_dir(workdir, lv),
                                                  "result.json"))]
    if not os.path.exists(path) or missing:
      what = (f"level {missing[0]} of 0..{lcfg.levels} has no result"
              if os.path.exists(path) else "it holds no lottery run")
      raise config_check.ConfigError(
          f"config.lottery.trunk: 'existing' needs a finished trunk in "
          f"{workdir}, but {what}")


# ------------------------------------------------------------- driver ----
class Driver:
  """One lottery run: the engine, the reset sources and the level loop."""

  def __init__(self, config, workdir: str):
    self.config, self.workdir = config, workdir
    self.lcfg = config.lottery
    self.engine = engine_lib.Engine(config)
    self._txs: dict = {}
    self._init_state = None
    self._rewind_state = None
    include = tuple(self.lcfg.global_include)
    self.prune_kwargs = (
        {"global_rate": float(self.lcfg.global_rate),
         "include": (lambda n: any(config_check.layer_matches(p, n)
                                   for p in include)) if include else None}
        if self.lcfg.scope == "global" else
        {"rates": dict(self.lcfg.rates)})

  # -- optimizers of the reset modes --------------------------------------
  def tx(self, mode: str):
    """The level optimizer: the run's (init, rewind), the schedule replayed
    from k (lr_rewind) or a constant small LR (finetune)."""
    if mode in ("init", "rewind") or self.lcfg.rewind_step == 0 and \
        mode == "lr_rewind":
      return self.engine.run.tx
    if mode not in self._txs:
      if mode == "lr_rewind":
        self._txs[mode] = engine_lib.make_tx(
            self.config, step_offset=int(self.lcfg.rewind_step))
      else:
        self._txs[mode] = engine_lib.make_tx(
            self.config, constant_lr=float(self.lcfg.finetune_lr))
    return self._txs[mode]

  # -- states kept for the whole run --------------------------------------
  def init_state(self) -> engine_lib.TrainState:
    """theta_0 (and its rng, batch stats): `init/` checkpoint, made once."""
    if self._init_state is None:
      mngr, restored = self.engine.restore(
          os.path.join(self.workdir, "init"), keep=1)
      if restored is None:
        state = self.engine.init(jax.random.PRNGKey(self.config.seed))
        checkpointing.save(mngr, 0, state, {"data_position": 0,
                                            "phase": "init"})
      else:
        state = restored[0]
      self._init_state = state
    return self._init_state

  def _rewind_mngr(self):
    return self.engine.restore(os.path.join(self.workdir, "rewind"), keep=1)

  def save_rewind(self, state):
    """Saves theta_k (once) and returns `state` unchanged (an event)."""
    mngr, restored = self._rewind_mngr()
    if restored is None:
      checkpointing.save(mngr, int(state.step), state,
                         {"data_position": int(state.step),
                          "phase": "rewind"})
    return state

  def rewind_state(self) -> engine_lib.TrainState:
    if self._rewind_state is None:
      _, restored = self._rewind_mngr()
      if restored is None:
        raise FileNotFoundError(
            f"the rewind state of {self.workdir} (step "
            f"{self.lcfg.rewind_step}) is missing: was level 0 trained "
            "with another rewind_step?")
      self._rewind_state = restored[0]
    return self._rewind_state

  def final_state(self, level: int) -> engine_lib.TrainState:
    _, restored = self.engine.restore(level_dir(self.workdir, level))
    if restored is None:
      raise FileNotFoundError(f"no checkpoint in {level_dir(self.workdir, level)}")
    return restored[0]

  # -- level starts ---------------------------------------------------------
  def data_seed(self, level: int) -> int:
    if self.lcfg.data_order == "fixed":
      return int(self.config.seed)
    return lottery.derive_seed(self.config.seed, 1, level)

  def mask_of(self, level: int):
    """The mask that level `level >= 1` trains with."""
    source = 0 if self.lcfg.oneshot else level - 1
    prev = self.final_state(source)
    return lottery.level_mask(level, jax.device_get(prev.params),
                              jax.device_get(prev.mask),
                              oneshot=bool(self.lcfg.oneshot),
                              **self.prune_kwargs)

  def start_state(self, level: int, mask=None,
                  params_from=None) -> engine_lib.TrainState:
    """The reset state of level `level` (optionally with another mask, or
    other weights to mask: the controls).

    With `params_from` (the random re-initialization control) the start is a
    fresh network: the fresh weights under the mask, a fresh optimizer state
    and the initial BatchNorm statistics, never the trunk's rewound moments
    or statistics (open_lth's `randomly_reinitialize` branch trains a new
    model with a new optimizer); only the schedule position (the reset
    mode's start step) is shared with the ticket."""
    mode, k = self.lcfg.reset, int(self.lcfg.rewind_step)
    init = self.init_state()
    if level == 0:
      return init
    mask = self.mask_of(level) if mask is None else mask
    final = self.final_state(0 if self.lcfg.oneshot else level - 1)
    rewind = self.rewind_state() if mode == "rewind" and k > 0 else None
    params, t0 = lottery.reset(
        mode, mask=mask, init_params=init.params, final_params=final.params,
        rewind_params=None if rewind is None else rewind.params,
        rewind_step=k)
    source = {"init": init, "rewind": rewind or init, "lr_rewind": final,
              "finetune": final}[mode]
    if mode == "finetune":
      t0 = k  # fine-tune for T - k steps at a constant LR
    tx = self.tx(mode)
    opt_state = lottery.reset_opt_state(
        mode, mask=mask,
        rewind_opt_state=None if rewind is None else rewind.opt_state)
    if params_from is not None:  # a fresh network
      params = sparsity.apply_mask(params_from, mask)
      source, opt_state = init, None
    if opt_state is None:
      opt_state = tx.init(params)
    return engine_lib.TrainState(step=jnp.asarray(t0, jnp.int32), params=params,
                            batch_stats=source.batch_stats,
                            opt_state=opt_state, mask=mask, rng=init.rng)

  # -- phases --------------------------------------------------------------
  def train(self, phase_dir: str, start, level: int, data_seed: int,
            label: str, eval_splits=("validation", "test")):
    events = {}
    k = int(self.lcfg.rewind_step)
    if level == 0 and k > 0 and phase_dir == level_dir(self.workdir, 0):
      # Saved on the way, not a phase boundary (no checkpoint at k).
      events[k] = engine_lib.Event(self.save_rewind, checkpoint=False)
    mode = self.lcfg.reset if level > 0 else "init"
    return engine_lib.train_phase(
        self.engine, phase_dir, start, end_step=self.config.num_steps,
        data_seed=data_seed, tx=self.tx(mode), eval_splits=eval_splits,
        events=events, label=label)

  def result(self, phase_dir: str, state, level: int, data_seed: int,
             **extra) -> dict:
    """Writes and returns `phase_dir/result.json` (the phase's figures)."""
    done = runs.read_result(phase_dir)
    if done is not None:
      return done
    with open(os.path.join(phase_dir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in rows if "val_loss" in r]
    last = evals[-1]
    with jax.set_mesh(self.engine.mesh):
      train_eval = self.engine.evaluate(state.params, state.batch_stats,
                                        "train")
    out = {"level": level,
           "remaining_fraction": float(
               sparsity.remaining_fraction(state.mask)),
           "test_accuracy": float(last["test_accuracy"]),
           "test_loss": float(last["test_loss"]),
           **lottery.early_stop(evals),
           "train_accuracy": train_eval["accuracy"],
           "end_step": int(state.step),
           "data_seed": int(data_seed),
           "layers": sparsity.summarize(state.mask),
           **extra}
    runs.write_result(phase_dir, out)
    return out

  def run_level(self, level: int) -> dict:
    d = level_dir(self.workdir, level)
    done = runs.read_result(d)
    if done is not None:
      return done
    seed = self.data_seed(level)
    label = (f"Level {level}/{self.lcfg.levels} (ticket, reset "
             f"{self.lcfg.reset if level else 'dense'})")
    state = self.train(d, lambda: self.start_state(level), level, seed,
                       label)
    return self.result(d, state, level, seed, kind="ticket",
                       reset=self.lcfg.reset,
                       start_step=self._start_step(level))

  def _start_step(self, level: int) -> int:
    if level == 0 or self.lcfg.reset == "init":
      return 0
    return int(self.lcfg.rewind_step)

  def run_control(self, level: int, name: str, s: int) -> dict:
    d = os.path.join(level_dir(self.workdir, level), "controls",
                     f"{name}_{s}")
    done = runs.read_result(d)
    if done is not None:
      return done
    key = jax.random.PRNGKey(lottery.derive_seed(
        self.config.seed, 2, level, _CONTROL_TAG[name], s))
    ticket_mask = jax.device_get(self.final_state(level).mask)

    def start():
      if name == "random_prune":
        return self.start_state(level, mask=lottery.random_prune(
            key, ticket_mask))
      model, shape = self.engine.model, self.engine.dataset.input_shape
      fresh = lottery.random_reinit(
          key, lambda k: model.init(k, jnp.zeros((1, *shape)),
                                    train=False)["params"],
          self.init_state().params, ticket_mask)
      return self.start_state(level, mask=ticket_mask, params_from=fresh)

    seed = self.data_seed(level)
    state = self.train(d, start, level, seed,
                       f"Level {level}/{self.lcfg.levels} control {name} "
                       f"seed {s}")
    return self.result(d, state, level, seed, kind=name, seed=s,
                       start_step=self._start_step(level))

  def run_instability(self, level: int) -> dict:
    d = os.path.join(level_dir(self.workdir, level), "instability")
    done = runs.read_result(d)
    if done is not None:
      return done
    ticket = self.final_state(level)
    finals, seeds = [], []
    for c in (0, 1):
      seed = lottery.derive_seed(self.config.seed, 3, level, c)
      seeds.append(seed)
      mask = None if level == 0 else jax.device_get(ticket.mask)
      finals.append(self.train(
          os.path.join(d, f"copy_{c}"),
          lambda: self.start_state(level, mask=mask), level, seed,
          f"Level {level}/{self.lcfg.levels} instability copy {c}",
          eval_splits=()))
    a, b = finals

    def error(point):
      params, stats = point
      with jax.set_mesh(self.engine.mesh):
        return 1.0 - self.engine.evaluate(params, stats, "test")["accuracy"]

    out = lottery.instability((a.params, a.batch_stats),
                              (b.params, b.batch_stats), error,
                              num_points=int(self.lcfg.instability_points))
    out.update(level=level, data_seeds=seeds)
    runs.write_result(d, out)
    return out

  # -- the loop ------------------------------------------------------------
  def control_levels(self) -> list[int]:
    levels = [int(x) for x in self.lcfg.control_levels] or list(
        range(1, self.lcfg.levels + 1))
    return [lv for lv in levels if 1 <= lv <= self.lcfg.levels]

  def run(self) -> dict:
    lcfg = self.lcfg
    controls = self.control_levels()
    for level in range(lcfg.levels + 1):
      self.run_level(level)
      if level in controls:
        for name in lcfg.controls:
          for s in range(lcfg.control_seeds):
            self.run_control(level, name, s)
      if level in [int(x) for x in lcfg.instability_levels]:
        self.run_instability(level)
    return self.summary()

  def summary(self) -> dict:
    levels = []
    for level in range(self.lcfg.levels + 1):
      r = runs.read_result(level_dir(self.workdir, level))
      inst = runs.read_result(os.path.join(level_dir(self.workdir, level),
                                           "instability"))
      if inst is not None:
        r["instability"] = inst["instability"]
      levels.append(r)
    controls = {}
    for name in CONTROLS:
      rows = []
      for level in range(1, self.lcfg.levels + 1):
        d = os.path.join(level_dir(self.workdir, level), "controls")
        seeds = []
        while (r := runs.read_result(
            os.path.join(d, f"{name}_{len(seeds)}"))) is not None:
          seeds.append(r)
        if seeds:
          rows.append(lottery_report.mean_over_seeds(seeds))
      if rows:
        controls[name] = rows
    last = levels[-1]
    return {
        "dataset": self.config.dataset,
        "model": self.config.model,
        "final": {"test_accuracy": last["test_accuracy"],
                  "test_loss": last["test_loss"],
                  "remaining_fraction": last["remaining_fraction"],
                  "step": last["end_step"]},
        "layers": last["layers"],
        "levels": levels,
        "controls": controls,
        "reset": self.lcfg.reset,
        "rewind_step": int(self.lcfg.rewind_step),
        "oneshot": bool(self.lcfg.oneshot),
        "num_classes": self.engine.dataset.num_classes,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
    }


def run(config, workdir: str) -> dict:
  """Runs (or resumes, or adds branches to) the lottery run in `workdir`.

  Raises `config_check.ConfigError` for a bad config, a workdir of another
  trunk, or `lottery.trunk = "existing"` without a finished trunk; nothing
  is written in those cases.
  """
  runs.validate(config)
  _check_workdir(config, workdir)
  run_ = build_driver(config, workdir)
  validate_layers(config, run_.engine.abstract.mask)
  runs.create(config, workdir)
  summary = run_.run()
  runs.write_summary(workdir, summary)
  if runs.is_main():
    lottery_report.write_reports(summary, workdir)
    print(lottery_report.format_table(summary), flush=True)
  return summary


# ------------------------------------------------------------- section --
SCOPES = ("layerwise", "global")
DATA_ORDERS = ("fixed", "per_level")
TRUNKS = ("train", "existing")


def defaults() -> ml_collections.ConfigDict:
  """The `lottery` fields with their defaults (every lottery config)."""
  lc = ml_collections.ConfigDict()
  lc.levels = 15                # pruning levels after the dense level 0
  lc.reset = "init"             # lottery.MODES: init | rewind | lr_rewind |
                                # finetune
  lc.rewind_step = 0            # k: rewind / lr_rewind / finetune length T-k
  lc.finetune_lr = 1e-3         # constant LR of `finetune` (Renda et al.)
  lc.scope = "layerwise"        # layerwise (rates) | global (global_rate)
  lc.rates = ml_collections.ConfigDict({"default": 0.2, "Dense_2": 0.1})
  lc.global_rate = 0.2
  lc.global_include = ()        # global: names, prefixes or globs; () = all
  lc.oneshot = False            # prune level 0's weights straight to level L
  lc.data_order = "fixed"       # fixed (open_lth) | per_level (seeded)
  lc.controls = CONTROLS        # random_reinit | random_prune
  lc.control_seeds = 2
  lc.control_levels = ()        # () = every level >= 1
  lc.trunk = "train"            # train | existing (controls on a done trunk)
  lc.instability_levels = ()    # levels with a linear-mode-connectivity test
  lc.instability_points = 30
  return lc


def validate(config) -> None:
  """The `lottery` section; ``ConfigError`` naming the first bad field."""
  require, choice = config_check.require, config_check.choice
  lc = config.lottery
  require(isinstance(lc.levels, int) and not isinstance(lc.levels, bool)
          and lc.levels >= 1, "lottery.levels",
          f"must be an integer >= 1, got {lc.levels!r}")
  choice(lc.reset, lottery.MODES, "lottery.reset")
  require(isinstance(lc.rewind_step, int) and
          0 <= lc.rewind_step < config.num_steps, "lottery.rewind_step",
          f"must be in [0, num_steps={config.num_steps}), got "
          f"{lc.rewind_step!r}")
  choice(lc.scope, SCOPES, "lottery.scope")
  if lc.scope == "layerwise":
    for name, r in dict(lc.rates).items():
      require(0.0 <= r < 1.0, f"lottery.rates.{name}",
              f"must be in [0, 1), got {r!r}")
  else:
    require(0.0 < lc.global_rate < 1.0, "lottery.global_rate",
            f"must be in (0, 1), got {lc.global_rate!r}")
  require(lc.finetune_lr > 0, "lottery.finetune_lr",
          f"must be > 0, got {lc.finetune_lr!r}")
  choice(lc.data_order, DATA_ORDERS, "lottery.data_order")
  for c in lc.controls:
    choice(c, CONTROLS, "lottery.controls")
  require(isinstance(lc.control_seeds, int) and lc.control_seeds >= 1,
          "lottery.control_seeds",
          f"must be an integer >= 1, got {lc.control_seeds!r}")
  for lv in lc.control_levels:
    require(1 <= int(lv) <= lc.levels, "lottery.control_levels",
            f"level {lv} is not in 1..{lc.levels}")
  for lv in lc.instability_levels:
    require(0 <= int(lv) <= lc.levels, "lottery.instability_levels",
            f"level {lv} is not in 0..{lc.levels}")
  require(lc.instability_points >= 2, "lottery.instability_points",
          f"must be >= 2, got {lc.instability_points!r}")
  choice(lc.trunk, TRUNKS, "lottery.trunk")


def validate_layers(config, mask) -> None:
  """Every rate (and global include) names a layer that exists."""
  require = config_check.require
  names = [n for n, *_ in sparsity.masked_leaves(mask)]

  def matches(key: str) -> bool:
    key = key.rstrip("/")
    return any(n == key or n.startswith(key + "/") for n in names)

  lc = config.lottery
  if lc.scope == "layerwise":
    for key in dict(lc.rates):
      if key != "default":
        require(matches(key), f"lottery.rates.{key}",
                f"no prunable layer is named {key!r} (layers: "
                f"{', '.join(names)})")
    if "default" not in dict(lc.rates):
      unmatched = [n for n in names if not any(
          n == k or n.startswith(k.rstrip("/") + "/") for k in dict(lc.rates))]
      require(not unmatched, "lottery.rates",
              f"no rate for {', '.join(unmatched)}; add a 'default'")
  for key in lc.global_include:
    require(any(config_check.layer_matches(key, n) for n in names),
            "lottery.global_include",
            f"no prunable layer is named {key!r} (layers: "
            f"{', '.join(names)})")


# --------------------------------------------------------------- result --
DEPLOY_OPTIONS = ("level",)


def deployable(config, workdir: str, level: int | None = None):
  """Level `level` of the trunk (its ticket, ``RUN/level_NN``), which must
  be finished (its ``result.json``); the rest of the run need not be.
  Without `level`: a ValueError listing the levels (one must be chosen)."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  levels = sorted(int(d[6:]) for d in os.listdir(workdir)
                  if d.startswith("level_") and d[6:].isdigit())
  if level is None:
    raise FileNotFoundError(f"{workdir} is a lottery run: pass --level=N "
                            f"(levels: {levels})")
  d = level_dir(workdir, level)
  if not os.path.isdir(d):
    raise FileNotFoundError(f"{d} does not exist (no level {level} "
                            f"in this run; levels: {levels or 'none'})")
  result = runs.read_result(d)
  if result is None:
    raise FileNotFoundError(f"{d} has no result.json: level {level} is "
                            "unfinished")
  return drivers.Deployable(config, engine_lib.load_state(config, d), {
      "result": f"level {level}", "level": level,
      "test_accuracy": result["test_accuracy"]})


def build_driver(config, workdir: str) -> Driver:
  return Driver(config, workdir)
