"""The BENN driver: K binary members, bagging or boosting, as phases.

`run(config, workdir)` is what `launch.train` calls for a config with a
`benn` section (`config.benn`: `members` K, `ensemble` bagging | boost_a |
boost_b | boost_c | boost_d, `mode` independent | sequential, `parallel`
vmap | loop, `shrinkage`, `c_scale`, `soft_vote` scores | probabilities).
Every member trains `num_steps` steps with the run's optimizer and a
schedule that restarts at 0 (the official code resets the LR per member).

    WORKDIR/config.json
    WORKDIR/stacked/          bagging + independent + vmap: the K members
                              as ONE stacked TrainState (leading axis K),
                              checkpoints/, metrics.jsonl, scores_test.npy
                              (K, N, C), result.json when done
    WORKDIR/member_NN/        otherwise one phase per member (engine.
                              train_phase): checkpoints/, metrics.jsonl,
                              scores_test.npy (N, C), boost.json (boosting:
                              eps, alpha, the next weights' file), result.json
    WORKDIR/summary.json, benn.md, benn.png

Independent bagging trains all members together: `jax.vmap` of the
trainer's own step over the stacked state and a stacked batch (member k's
batch comes from its bootstrap sample); with at least K devices the
vmapped step runs under `jax.shard_map`, one member per device. That step
runs in the engine's own loop (``engine.train_phase`` on a stacked
engine: the same non-finite check, logging and checkpoint cadence as a
member's phase, no evaluation). Sequential
members start from the previous member's weights and BatchNorm statistics
(fresh optimizer state); independent ones from their own initialisation
(key `fold_in(PRNGKey(seed), k)`). Boosting is sequential by nature (member
k's data depends on member k-1's errors): one phase per member, on N
indices resampled with the boosting weights (one draw per member; the
official `WeightedRandomSampler` redraws every epoch), weights updated with
`binary.boost_weights` from the member's errors on the whole training set.

A member is done when its `result.json` exists; its start is a pure
function of earlier members' checkpoints and files, so a killed run resumes
in the member (or the stacked phase) it was in, from its newest checkpoint.

Summary (`summary.json`): `single.test_accuracy` (the first member alone),
`ensemble` = accuracy of the first k members for k = 1..K by hard and soft
vote (`binary.ensemble_curve`, member weights alpha for boosting, 1 for
bagging), `members` (each member's test accuracy, alpha, eps).
"""
from __future__ import annotations

import copy
import dataclasses
import os

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np

import binary
from experiments import checkpointing
from experiments import config_check
from experiments import data as data_lib
from experiments import engine as engine_lib
from experiments import runs


class IndexedSource:
  """A view of a source at given indices (a bootstrap or boosting sample).

  In-memory sources are gathered once (`.arrays`, the batching fast path);
  record sources read through.
  """

  def __init__(self, source, indices):
    self._source = source
    self._indices = np.asarray(indices, np.int64)
    arrays = getattr(source, "arrays", None)
    if arrays is not None:
      self.arrays = {k: v[self._indices] for k, v in arrays.items()}

  def __len__(self) -> int:
    return int(self._indices.shape[0])

  def __getitem__(self, index: int):
    return self._source[int(self._indices[index])]


def _save_npy(path: str, array) -> None:
  """Atomically saves `array` (process 0 only)."""
  runs.write_with(path, lambda tmp: np.save(tmp, np.asarray(array)),
                  suffix=".tmp.npy")


def member_seed(seed: int, member: int, tag: int) -> int:
  """A derived seed (data order of member k: tag 1)."""
  return int(np.random.default_rng([int(seed), int(member), int(tag)])
             .integers(0, 2**31 - 1))


class Driver:
  """One BENN run: the engine, the members' data and the member loop."""

  def __init__(self, config, workdir: str):
    self.config, self.workdir = config, workdir
    self.bc = config.benn
    self.k = int(self.bc.members)
    self.engine = engine_lib.Engine(config)
    self.model = self.engine.model
    self.train_src = self.engine.dataset.splits["train"]
    self.n = len(self.train_src)
    self.boost = self.bc.ensemble.startswith("boost")
    self.variant = self.bc.ensemble[-1] if self.boost else None
    self._score = jax.jit(lambda p, bs, x: self.model.apply(
        {"params": p, "batch_stats": bs} if bs else {"params": p}, x,
        train=False))

  # -- layout ---------------------------------------------------------------
  def stacked(self) -> bool:
    return (not self.boost and self.bc.mode == "independent"
            and self.bc.parallel == "vmap")

  def member_dir(self, k: int) -> str:
    return os.path.join(self.workdir, f"member_{k:02d}")

  # -- members' data ----------------------------------------------------------
  def weights(self, k: int) -> np.ndarray:
    """Boosting weights member k trains with (uniform for k = 0)."""
    if k == 0:
      return np.full(self.n, 1.0 / self.n)
    return np.load(os.path.join(self.member_dir(k - 1), "weights_next.npy"))

  def indices(self, k: int) -> np.ndarray:
    if self.boost:
      return binary.resample_indices(self.config.seed, k, self.weights(k))
    return binary.bootstrap_indices(self.config.seed, k, self.n)

  def source(self, k: int) -> IndexedSource:
    return IndexedSource(self.train_src, self.indices(k))

  def member_engine(self, k: int) -> engine_lib.Engine:
    """The engine with member k's sample as its train split (compiled steps
    shared)."""
    eng = copy.copy(self.engine)
    ds = self.engine.dataset
    eng.dataset = dataclasses.replace(
        ds, splits={**ds.splits, "train": self.source(k)})
    return eng

  # -- scores ---------------------------------------------------------------
  def scores(self, params, batch_stats, split: str, stacked=False):
    """Network outputs on a whole split: (N, C), or (K, N, C) stacked."""
    fn = self._score
    if stacked:
      if not hasattr(self, "_vscore"):
        self._vscore = jax.jit(jax.vmap(
            lambda p, bs, x: self.model.apply(
                {"params": p, "batch_stats": bs} if bs else {"params": p},
                x, train=False), in_axes=(0, 0, None)))
      fn = self._vscore
      # On one device: XLA's partitioner rejects the vmapped (grouped) convs
      # of member-sharded params.
      params, batch_stats = jax.device_get((params, batch_stats))
    out = []
    for batch in data_lib.eval_batches(
        self.engine.dataset.splits[split],
        batch_size=self.engine.eval_bs):  # capped at the largest split
      s = np.asarray(fn(params, batch_stats, batch["image"]))
      valid = batch["weight"] > 0
      out.append(s[:, valid] if stacked else s[valid])
    return np.concatenate(out, axis=1 if stacked else 0)

  def labels(self, split: str) -> np.ndarray:
    src = self.engine.dataset.splits[split]
    arrays = getattr(src, "arrays", None)
    if arrays is not None:
      return np.asarray(arrays["label"])
    return np.asarray([src[i]["label"] for i in range(len(src))])

  # -- one member per phase ---------------------------------------------------
  def start(self, k: int):
    eng = self.engine
    if not hasattr(self, "_init"):
      self._init = jax.jit(eng.run.init_state)
    fresh = self._init(jax.random.fold_in(jax.random.PRNGKey(
        self.config.seed), k))
    if self.bc.mode == "sequential" and k > 0:
      _, restored = eng.restore(self.member_dir(k - 1))
      prev = restored[0]
      return fresh.replace(params=prev.params, batch_stats=prev.batch_stats,
                           opt_state=eng.run.tx.init(prev.params))
    return fresh

  def run_member(self, k: int) -> dict:
    d = self.member_dir(k)
    done = runs.read_result(d)
    if done is not None:
      return done
    eng = self.member_engine(k)
    state = engine_lib.train_phase(
        eng, d, lambda: self.start(k), end_step=self.config.num_steps,
        data_seed=member_seed(self.config.seed, k, 1),
        eval_splits=("validation",),
        label=f"BENN member {k + 1}/{self.k} ({self.bc.ensemble}, "
              f"{self.bc.mode})")
    test = self.scores(state.params, state.batch_stats, "test")
    out = {"member": k,
           "test_accuracy": float(np.mean(test.argmax(-1) ==
                                          self.labels("test"))),
           "end_step": int(state.step)}
    if runs.is_main():
      os.makedirs(d, exist_ok=True)
    _save_npy(os.path.join(d, "scores_test.npy"), test.astype(np.float32))
    if self.boost:
      train_scores = self.scores(state.params, state.batch_stats, "train")
      miss = (train_scores.argmax(-1) != self.labels("train")).astype(float)
      w, alpha, eps = binary.boost_weights(
          self.weights(k), miss, self.variant,
          num_classes=self.engine.dataset.num_classes,
          shrinkage=float(self.bc.shrinkage),
          c_scale=float(self.bc.c_scale) or None)
      _save_npy(os.path.join(d, "weights_next.npy"), w)
      out.update(alpha=alpha, eps=eps, train_error=float(miss.mean()))
    else:
      out.update(alpha=1.0)
    runs.write_result(d, out)
    return out

  # -- the stacked phase (independent bagging) --------------------------------
  def stacked_setup(self):
    """The compiled pieces of the stacked phase (independent bagging).

    The k members train as one program: the engine's train step under
    ``jax.vmap`` over a leading member axis, sharded one member per device
    with ``jax.shard_map`` when there are at least k devices, on one device
    otherwise. Also what ``bench/benn_vmap.py`` times.

    Returns:
      ``(jstep, jinit, keys, abstract, shardings, sharding)``: the jitted
      stacked step ``(states, batches) -> (states, metrics)`` (donates the
      states), the jitted stacked init of the member keys, the k member
      keys (``fold_in(PRNGKey(seed), i)``), the abstract stacked
      ``TrainState``, its shardings, and the member-axis sharding.
    """
    eng, k = self.engine, self.k
    step = jax.vmap(engine_lib.make_train_step(self.model, eng.run.tx,
                                               eng.loss))
    devices = jax.devices()
    if len(devices) >= k:
      mesh = Mesh(np.asarray(devices[:k]), ("member",))
      step = jax.shard_map(step, mesh=mesh, in_specs=(P("member"),
                                                      P("member")),
                           out_specs=(P("member"), P("member")))
      sharding = NamedSharding(mesh, P("member"))
    else:
      sharding = jax.sharding.SingleDeviceSharding(devices[0])
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(
        self.config.seed), i) for i in range(k)])
    init = jax.vmap(eng.run.init_state)
    abstract = jax.eval_shape(init, keys)
    shardings = jax.tree.map(lambda _: sharding, abstract)
    jstep = jax.jit(step, donate_argnums=0,
                    in_shardings=(shardings, sharding),
                    out_shardings=(shardings, sharding))
    return (jstep, jax.jit(init, out_shardings=shardings), keys, abstract,
            shardings, sharding)

  def run_stacked(self) -> list[dict]:
    d = os.path.join(self.workdir, "stacked")
    done = runs.read_result(d)
    if done is not None:
      return done["members"]
    eng = _StackedEngine(self)
    state = engine_lib.train_phase(
        eng, d, eng.init, end_step=self.config.num_steps, data_seed=0,
        eval_splits=(), label="BENN stacked")
    step = engine_lib.step_of(state)
    test = self.scores(state.params, state.batch_stats, "test", stacked=True)
    labels = self.labels("test")
    members = [{"member": i, "alpha": 1.0, "end_step": step,
                "test_accuracy": float(np.mean(test[i].argmax(-1) == labels))}
               for i in range(self.k)]
    _save_npy(os.path.join(d, "scores_test.npy"), test.astype(np.float32))
    runs.write_result(d, {"members": members})
    return members

  # -- the loop ---------------------------------------------------------------
  def run(self) -> dict:
    if self.stacked():
      members = self.run_stacked()
      scores = np.load(os.path.join(self.workdir, "stacked",
                                    "scores_test.npy"))
    else:
      members = [self.run_member(k) for k in range(self.k)]
      scores = np.stack([np.load(os.path.join(self.member_dir(k),
                                              "scores_test.npy"))
                         for k in range(self.k)])
    return self.summary(members, scores)

  def summary(self, members: list, scores: np.ndarray) -> dict:
    if self.bc.soft_vote == "probabilities":
      scores = np.asarray(jax.nn.softmax(jnp.asarray(scores), axis=-1))
    alphas = [m["alpha"] for m in members]
    curve = binary.ensemble_curve(scores, self.labels("test"), alphas)
    last = curve[-1]
    return {
        "dataset": self.config.dataset,
        "model": self.config.model,
        "benn": {"ensemble": self.bc.ensemble, "mode": self.bc.mode,
                 "members": self.k,
                 "parallel": (("shard_map" if len(jax.devices()) >= self.k
                               else "vmap") if self.stacked() else "loop"),
                 "soft_vote": self.bc.soft_vote},
        "single": {"test_accuracy": members[0]["test_accuracy"]},
        "ensemble": curve,
        "members": members,
        "final": {"test_accuracy": last["soft_vote_accuracy"],
                  "hard_vote_accuracy": last["hard_vote_accuracy"],
                  "members": self.k,
                  "step": int(members[-1]["end_step"])},
        "num_classes": self.engine.dataset.num_classes,
        "devices": jax.device_count(),
    }


class _StackedEngine:
  """The K independent bagging members as one engine of
  ``engine.train_phase``: the vmapped step over the stacked TrainState
  (leading axis K, `shard_map` over the members with K devices) and the
  stacked batch (member k's from its bootstrap sample and its data seed).
  No evaluation and no per-log-step plug-ins: a row is the members' mean
  loss and accuracy."""

  train_metrics = ()

  def __init__(self, driver: Driver):
    self.config, k = driver.config, driver.k
    (self._step, self._init, self._keys, self.abstract, self.shardings,
     sharding) = driver.stacked_setup()
    self._sharded = isinstance(sharding, NamedSharding)
    self.mesh = (sharding.mesh if self._sharded
                 else Mesh(np.asarray(jax.devices()[:1]), ("member",)))
    self._k = k
    self._sources = [driver.source(i) for i in range(k)]
    self._seeds = [member_seed(self.config.seed, i, 1) for i in range(k)]

  def init(self):
    return self._init(self._keys)

  def place(self, state):
    return state  # `init`'s fresh output, placed on the members' devices

  def restore(self, workdir: str):
    mngr = checkpointing.manager(workdir, keep=self.config.keep_checkpoints)
    return mngr, checkpointing.restore_latest(
        mngr, checkpointing.abstract_like(self.abstract, self.shardings))

  def train_step(self, tx=None):
    del tx  # unused: the run's optimizer, vmapped
    return self._step

  def train_batch(self, step: int, data_seed: int):
    del data_seed  # unused: each member has its own
    batches = [data_lib.train_batch(src, step,
                                    batch_size=self.config.batch_size, seed=s)
               for src, s in zip(self._sources, self._seeds)]
    return {key: np.stack([b[key] for b in batches]) for key in batches[0]}

  def checkpoint_meta(self, step: int, phase: str, label: str,
                      data_seed: int) -> dict:
    del phase, label, data_seed  # unused
    return {"data_position": step, "phase": "stacked"}

  def header(self, label: str, state, step: int, end_step: int) -> str:
    del label, state  # unused
    where = f", shard_map over {self._k} devices" if self._sharded else ""
    return (f"BENN: {self._k} bagging members trained together (vmap"
            f"{where}), steps {step}..{end_step}")


# ------------------------------------------------------------- section --
MODES = ("independent", "sequential")
PARALLEL = ("vmap", "loop")
SOFT_VOTES = ("scores", "probabilities")


def defaults() -> ml_collections.ConfigDict:
  """The `benn` fields with their defaults."""
  bc = ml_collections.ConfigDict()
  bc.members = 5
  bc.ensemble = "bagging"    # binary.ENSEMBLES: bagging | boost_a .. boost_d
  bc.mode = "independent"    # independent | sequential (warm start)
  bc.parallel = "vmap"       # vmap (stacked members) | loop
  bc.shrinkage = 0.1         # boost_d's factor on alpha
  bc.c_scale = 0.0           # boost_c's constant; 0 = N / 10
  bc.soft_vote = "scores"    # scores (official) | probabilities
  return bc


def validate(config) -> None:
  """The `benn` section; ``ConfigError`` naming the first bad field."""
  require, choice = config_check.require, config_check.choice
  b = config.benn
  require(isinstance(b.members, int) and not isinstance(b.members, bool)
          and b.members >= 1, "benn.members",
          f"must be an integer >= 1, got {b.members!r}")
  choice(b.ensemble, binary.ENSEMBLES, "benn.ensemble")
  choice(b.mode, MODES, "benn.mode")
  choice(b.parallel, PARALLEL, "benn.parallel")
  choice(b.soft_vote, SOFT_VOTES, "benn.soft_vote")
  require(b.shrinkage > 0, "benn.shrinkage",
          f"must be > 0, got {b.shrinkage!r}")
  require(b.c_scale >= 0, "benn.c_scale",
          f"must be >= 0 (0 = N / 10), got {b.c_scale!r}")


# -------------------------------------------------------------- result ----
DEPLOY_OPTIONS = ("member",)


def _member_state(driver: Driver, k: int, cache: dict):
  """Member k's final TrainState: its own phase, or row k of the stacked
  state (restored once, on one device, into `cache`)."""
  if not driver.stacked():
    _, restored = driver.engine.restore(driver.member_dir(k))
    if restored is None:
      raise FileNotFoundError(f"no checkpoint in {driver.member_dir(k)}")
    return restored[0]
  if "stacked" in cache:
    return jax.tree.map(lambda x: x[k], cache["stacked"])
  d = os.path.join(driver.workdir, "stacked")
  keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(
      driver.config.seed), i) for i in range(driver.k)])
  abstract = jax.eval_shape(jax.vmap(driver.engine.run.init_state), keys)
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored = checkpointing.restore_latest(
      checkpointing.manager(d), checkpointing.abstract_like(
          abstract, jax.tree.map(lambda _: one, abstract)))
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {d}")
  cache["stacked"] = jax.tree.map(np.asarray, restored[0])
  return jax.tree.map(lambda x: x[k], cache["stacked"])


def deployable(config, workdir: str, member: int | None = None):
  """Member `member` (its own test accuracy), or without it the ensemble
  (``drivers.Ensemble``: every member, the summary's alphas, the soft
  vote over `benn.soft_vote` outputs; the summary's test accuracy)."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  summary = drivers.finished_summary(workdir)
  driver = Driver(config, workdir)
  rows, cache = summary["members"], {}
  if member is not None and not 0 <= member < len(rows):
    raise ValueError(f"no member {member} in {workdir} (members: 0.."
                     f"{len(rows) - 1})")

  def one(k: int):
    return drivers.Deployable(config, _member_state(driver, k, cache), {
        "result": f"BENN member {k}", "member": k,
        "test_accuracy": rows[k]["test_accuracy"]})

  if member is not None:
    return one(member)
  return drivers.Ensemble(
      members=[one(k) for k in range(len(rows))],
      alphas=[float(r["alpha"]) for r in rows], vote="soft",
      scores=summary["benn"]["soft_vote"], info={
          "result": f"the BENN ensemble ({len(rows)} members, "
                    f"{summary['benn']['ensemble']}, soft vote)",
          "test_accuracy": summary["final"]["test_accuracy"]})


# ------------------------------------------------------------- reports ----
def format_table(summary: dict, markdown: bool = False) -> str:
  """Accuracy vs ensemble size (and each member's own accuracy)."""
  b = summary["benn"]
  head = (f"BENN {b['ensemble']} ({b['mode']}, {b['members']} members): "
          f"single {summary['single']['test_accuracy']:.4f}")
  rows = [("size", "hard vote", "soft vote", "member acc", "alpha")]
  for c, m in zip(summary["ensemble"], summary["members"]):
    rows.append((str(c["size"]), f"{c['hard_vote_accuracy']:.4f}",
                 f"{c['soft_vote_accuracy']:.4f}",
                 f"{m['test_accuracy']:.4f}", f"{m['alpha']:.4f}"))
  if markdown:
    lines = [f"**{head}**", "", "| " + " | ".join(rows[0]) + " |",
             "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"
  return "\n".join([head] + ["  ".join(f"{x:>10}" for x in r)
                             for r in rows])


def plot(summary: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  sizes = [c["size"] for c in summary["ensemble"]]
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for key, label in (("soft_vote_accuracy", "soft vote"),
                     ("hard_vote_accuracy", "hard vote")):
    ax.plot(sizes, [100 * c[key] for c in summary["ensemble"]], "o-",
            label=label)
  ax.axhline(100 * summary["single"]["test_accuracy"], color="gray",
             ls="--", label="single member")
  ax.set_xlabel("ensemble size")
  ax.set_ylabel("test accuracy (%)")
  b = summary["benn"]
  ax.set_title(f"BENN {b['ensemble']} ({b['mode']})")
  ax.legend()
  fig.tight_layout()
  runs.write_with(path, fig.savefig, suffix=".tmp.png")
  plt.close(fig)


def run(config, workdir: str) -> dict:
  """Runs (or resumes) the BENN run in `workdir`; returns the summary.

  Raises `config_check.ConfigError` for a bad config or a workdir of
  another config (nothing is written then).
  """
  summary = runs.open_run(config, workdir)
  if summary is None:
    summary = Driver(config, workdir).run()
    runs.write_text(os.path.join(workdir, "benn.md"),
                    format_table(summary, markdown=True))
    if runs.is_main():
      plot(summary, os.path.join(workdir, "benn.png"))
    runs.write_summary(workdir, summary)  # last: marks the run finished
  if runs.is_main():
    print(format_table(summary), flush=True)
  return summary


__all__ = ["IndexedSource", "format_table", "member_seed", "plot", "run"]
