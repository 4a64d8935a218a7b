"""The engine: train state, steps, `Engine` and the phase loop `train_phase`.

Sections, top to bottom: the train state, steps (loss, train and eval step
builders), build (dataset, model, optimizer of a config), metric plug-ins
(`Metric`: what a log step or an evaluation reports beyond the loss), the
`Engine` (mesh, shardings, compiled steps, evaluation, restore), events and
`train_phase` (the loop: restore first, then init), the final test
evaluation. Every driver (``experiments.drivers``; the plain run is
``experiments.train.run``) trains its phases with these; this module
imports no driver and not ``experiments.train``.

The loop has no method branch. What a method does between steps is an
*event*: ``events`` maps a step s to a function of the state, applied after
s updates (`Event`; a phase boundary, checkpointed, unless it says
otherwise). What it reports is a *metric plug-in*: the Engine's
``eval_metrics`` contribute sums to the jitted eval step and scalars on the
host (accuracy and loss, segmentation IoU/Dice, FBS executed MACs), its
``train_metrics`` entries of each log step's row (remaining fraction, flip
ratio). A driver picks them; `default_eval_metrics` picks them from the
model and the dataset.

Data parallelism: one `Mesh` over every device of every host, the batch
sharded on its 'data' axis and the train state replicated; XLA inserts the
gradient all-reduce. The same code runs on 1 CPU, N forced CPU devices, a
GPU box or several processes under `jax.distributed`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax

from experiments import checkpointing
from experiments import config_check
from experiments import data as data_lib
from experiments import fbs as fbs_lib
from experiments import metrics as metrics_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import pruning
from experiments import segmentation
from experiments import signals
import binary
import sparsity


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite."""


@flax.struct.dataclass
class TrainState:
  """Everything a bit-identical resume needs, as one pytree."""
  step: jax.Array          # int32 scalar: number of updates applied
  params: Any              # latent weights (pruned entries exactly 0)
  batch_stats: Any         # BatchNorm running statistics ({} if none)
  opt_state: Any           # sparsity.masked(inner) state
  mask: Any                # bool per prunable leaf, None elsewhere
  rng: jax.Array           # raw uint32[2] key; per step fold_in(rng, step)


def step_of(state) -> int:
  """The step of a state as a Python int (of a stacked state, e.g. BENN's
  K members with a leading axis, its first member's: they step together)."""
  return int(np.asarray(state.step).reshape(-1)[0])


# ------------------------------------------------------------------ steps --
LOSSES = ("cross_entropy", "squared_hinge")


def _losses(logits, labels, kind: str):
  """Per-example losses: softmax cross-entropy or BinaryConnect's squared
  hinge (per example the mean over classes, so the batch mean is the
  paper's loss)."""
  if kind == "squared_hinge":
    t = 2.0 * jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype) - 1
    return jnp.mean(jnp.square(jnp.maximum(0.0, 1.0 - t * logits)), axis=-1)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def loss_fn(model, params, batch_stats, batch, train: bool,
            loss: str = "cross_entropy", rng=None, collect: tuple = ()):
  """Per-example losses and (logits, new batch_stats); with `collect` (eval
  only, e.g. ("fbs_gates",)) also the sown collections. In training, the
  per-example penalties a model sows in "losses" (e.g. FBS: lambda *
  ||g||_1) are added to the loss."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  rngs = None
  if train and rng is not None:
    k_drop, k_quant = jax.random.split(rng)
    rngs = {"dropout": k_drop, "quantize": k_quant}
  sown = {}
  if train and batch_stats:
    logits, new_vars = model.apply(variables, batch["image"], train=True,
                                   mutable=["batch_stats", "losses"],
                                   rngs=rngs)
    batch_stats = new_vars["batch_stats"]
    sown = new_vars.get("losses", {})
  elif collect:
    logits, sown = model.apply(variables, batch["image"], train=train,
                               mutable=list(collect), rngs=rngs)
  else:
    logits = model.apply(variables, batch["image"], train=train, rngs=rngs)
  losses = _losses(logits, batch["label"], loss)
  if losses.ndim > 1:  # segmentation: per example, the mean over pixels
    losses = losses.reshape(losses.shape[0], -1).mean(-1)
  if collect:
    return losses, (logits, batch_stats, sown)
  for extra in jax.tree.leaves(sown):  # e.g. FBS: lambda * ||g||_1, (N,)
    losses = losses + extra
  return losses, (logits, batch_stats)


def make_train_step(model, tx, loss: str = "cross_entropy"):
  """(state, batch) -> (state, metrics): one masked optimizer update.

  The step's randomness (dropout, stochastic binarization) is
  ``fold_in(state.rng, state.step)``, so a resumed run draws the same keys.
  """

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def mean_loss(params):
      losses, aux = loss_fn(model, params, state.batch_stats, batch, True,
                            loss, rng)
      return losses.mean(), aux

    (l, (logits, batch_stats)), grads = jax.value_and_grad(
        mean_loss, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                   mask=state.mask)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    return new_state, {"loss": l, "accuracy": accuracy}

  return train_step


class EvalOut(NamedTuple):
  """One eval batch's forward pass, what a `Metric` accumulates from."""
  losses: jax.Array   # (N,) per-example loss
  logits: jax.Array   # (N, ..., C)
  sown: dict          # the collections the metrics asked for (`collect`)


def make_eval_step(model, loss: str = "cross_entropy",
                   metrics: Sequence["Metric"] = ()):
  """(params, batch_stats, batch) -> one pytree of sums per metric.

  One forward pass (returning the collections the metrics `collect`), then
  each metric's `accumulate(batch, EvalOut)`: everything stays in the
  jitted step, the host only adds the sums of the batches.
  """
  collect = tuple(sorted({c for m in metrics for c in m.collect}))

  def eval_step(params, batch_stats, batch):
    if collect:
      losses, (logits, _, sown) = loss_fn(model, params, batch_stats, batch,
                                          False, loss, collect=collect)
    else:
      losses, (logits, _) = loss_fn(model, params, batch_stats, batch,
                                    False, loss)
      sown = {}
    out = EvalOut(losses, logits, sown)
    return tuple(m.accumulate(batch, out) for m in metrics)

  return eval_step


def to_global(local_batch: dict, sharding) -> dict:
  """This process's rows as one global batch sharded on 'data'.

  With a single process the NumPy arrays go straight to the jitted step,
  whose `in_shardings` place them (the fastest path: no extra dispatch);
  with several, each process contributes its rows of a global array.
  """
  if jax.process_count() == 1:
    return local_batch
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


# ------------------------------------------------------------------ build --
class Run(NamedTuple):
  dataset: Any          # experiments.data.Dataset
  model: Any            # flax.linen.Module
  tx: Any               # sparsity.masked(inner), plain inner if dense
  init_state: Callable  # rng -> TrainState


def _wrap(config, inner):
  """The masked optimizer (the mask-ignoring plain one for dense runs), in
  the form `optimizers.mask_moments` allows for the chain `inner` is:
  ``"on_entry"`` (each moment computed once) for the zero-preserving
  chains `make_optimizer` builds, ``"per_step"`` otherwise."""
  if pruning.method_of(config) == "none" and "lottery" not in config:
    return optax.with_extra_args_support(inner)  # nothing is ever pruned
  return sparsity.masked(inner,
                         mask_moments=optimizers.mask_moments(config))


def make_tx(config, *, step_offset: int = 0,
            constant_lr: float | None = None):
  """The run's optimizer; the schedule can start at `step_offset` (lottery
  LR rewinding) or be a constant `constant_lr` (lottery fine-tuning)."""
  return _wrap(config, optimizers.make_optimizer(
      config, step_offset=step_offset, constant_lr=constant_lr,
      binary_include=models_lib.is_binary_kernel))


def build(config) -> Run:
  """Dataset, model, optimizer and state initialiser of a config."""
  kwargs = dict(config.get("dataset_kwargs") or {})
  try:
    ds = data_lib.get_dataset(config.dataset,
                              data_dir=config.data_dir or None,
                              seed=config.seed, **kwargs)
  except (TypeError, ValueError) as e:
    raise config_check.ConfigError(
        f"config.dataset_kwargs {kwargs}: {e}") from e
  config_check.validate_data(config, ds)  # before anything is written
  model_kwargs = config.model_kwargs.to_dict()
  if "binarize" in config:
    model_kwargs["binarize"] = bool(config.binarize)
  try:
    model = models_lib.get_model(config.model, ds.num_classes,
                                 **model_kwargs)
  except (TypeError, ValueError) as e:
    raise config_check.model_error(config, e) from e
  tx = make_tx(config)

  def init_state(rng) -> TrainState:
    init_rng, state_rng = jax.random.split(rng)
    dummy = jnp.zeros((1, *ds.input_shape), jnp.float32)
    try:  # bad model settings (a negative width, a wrong type) fail here
      variables = model.init(init_rng, dummy, train=False)
    except (TypeError, ValueError) as e:
      raise config_check.model_error(config, e) from e
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params),
                      mask=sparsity.create_mask(params), rng=state_rng)

  return Run(ds, model, tx, init_state)


def load_state(config, workdir: str) -> TrainState:
  """The newest checkpointed TrainState of a run (on the default device).

  For a lottery run, `workdir` is a level's directory (`RUN/level_NN`).
  A reader: an unreadable newest checkpoint raises
  ``checkpointing.UnreadableCheckpoint`` (nothing is moved).
  """
  run = build(config)
  abstract = jax.eval_shape(run.init_state, jax.random.PRNGKey(config.seed))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored = checkpointing.restore_latest(
      checkpointing.manager(workdir),
      checkpointing.abstract_like(abstract,
                                  jax.tree.map(lambda _: sharding, abstract)),
      set_aside=False)
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}")
  return restored[0]


# --------------------------------------------------------------- metrics --
class Metric:
  """A metric plug-in: what an evaluation or a log step reports.

  Evaluation (`Engine.evaluate`): `collect` names the Flax collections the
  eval forward pass must return (sown values); `accumulate(batch, out)`
  runs *inside* the jitted eval step and returns the batch's sums (a pytree
  of arrays; the engine adds them over the batches of a split, padding rows
  weigh ``batch["weight"] = 0``); `finalize(sums)` turns a split's totals
  into the logged scalars, on the host.

  Training (`train_phase`): `init(state)` at the phase's first step,
  `event(state)` after each event (the state changed between steps) and
  `log(state)`, the entries of each log step's row (on the host, at a log
  step only, so the hot loop never waits for it).

  A plug-in implements one half; the other is this class's no-op.
  """
  collect: tuple = ()

  def accumulate(self, batch, out: EvalOut):
    del batch, out  # unused
    return ()

  def finalize(self, sums) -> dict:
    del sums  # unused
    return {}

  def init(self, state) -> None:
    del state  # unused

  def event(self, state) -> None:
    del state  # unused

  def log(self, state) -> dict:
    del state  # unused
    return {}


class LossAccuracy(Metric):
  """``accuracy`` and mean ``loss`` over a split. Per-pixel labels
  (segmentation): each example's accuracy is its pixel accuracy."""

  def accumulate(self, batch, out: EvalOut):
    w = batch["weight"]
    correct = (jnp.argmax(out.logits, -1) == batch["label"]).astype(
        jnp.float32)
    correct = correct.reshape(correct.shape[0], -1).mean(-1)
    return {"loss": jnp.sum(out.losses * w), "correct": jnp.sum(correct * w),
            "count": jnp.sum(w)}

  def finalize(self, sums) -> dict:
    count = max(float(sums["count"]), 1.0)
    return {"accuracy": float(sums["correct"]) / count,
            "loss": float(sums["loss"]) / count}


class IouDice(Metric):
  """Segmentation: ``mean_iou`` and ``dice`` from the (C, C) confusion
  matrix of all pixels (`segmentation.confusion_matrix`, summed in the
  jitted step)."""

  def __init__(self, num_classes: int):
    self.num_classes = int(num_classes)

  def accumulate(self, batch, out: EvalOut):
    return segmentation.confusion_matrix(out.logits, batch["label"],
                                         self.num_classes, batch["weight"])

  def finalize(self, sums) -> dict:
    return {"mean_iou": segmentation.mean_iou(sums),
            "dice": segmentation.mean_dice(sums)}


class ExecutedMacs(Metric):
  """FBS: ``macs_fraction``, ``macs_overhead_fraction`` and ``macs/<layer>``
  (mean executed MACs per example, ``fbs.macs_metrics``) from the gates the
  model sows in "fbs_gates"; the per-layer MACs of each example
  (``fbs.executed_macs``) are summed in the jitted step."""
  collect = ("fbs_gates",)

  def __init__(self, plan: list):
    self.plan = plan  # fbs.mac_plan

  @classmethod
  def of(cls, model, dataset) -> "ExecutedMacs":
    shape = dataset.input_shape
    return cls(fbs_lib.mac_plan(models_lib.layer_list(model, shape), shape))

  def accumulate(self, batch, out: EvalOut):
    w = batch["weight"]
    macs = fbs_lib.executed_macs(self.plan, fbs_lib.gates_of(
        out.sown.get("fbs_gates", {})))
    return {"macs": {k: jnp.sum(v * w) for k, v in macs.items()},
            "count": jnp.sum(w)}

  def finalize(self, sums) -> dict:
    count = max(float(sums["count"]), 1.0)
    return fbs_lib.macs_metrics(self.plan, {
        k: float(v) / count for k, v in sums["macs"].items()})


class RemainingFraction(Metric):
  """``remaining_fraction`` of the mask (`sparsity.remaining_fraction`),
  computed at the phase start and after each event (only events change the
  mask), so a log step costs nothing."""

  def init(self, state) -> None:
    self._value = float(sparsity.remaining_fraction(state.mask))

  def event(self, state) -> None:
    self.init(state)

  def log(self, state) -> dict:
    del state  # unused: the mask changes at events only
    return {"remaining_fraction": self._value}


class FlipRatio(Metric):
  """Flip ratio per binary layer since the previous log step.

  Keeps a copy of the binary kernels (chosen by `models.is_binary_kernel`)
  from `init` and each log step; `log(state)` returns {"flip_ratio": mean
  over layers, "flip_ratio/<layer>": ...} (`binary.flip_ratio`) and takes
  the new copy. Nothing for models without binary layers. After a resume
  the first ratio covers the steps since the restored checkpoint.
  """

  def init(self, state) -> None:
    params = state.params
    self._names = [sparsity.leaf_name(p) for p, leaf in
                   jax.tree_util.tree_flatten_with_path(params)[0]
                   if models_lib.is_binary_kernel(
                       tuple(sparsity.leaf_name(p).split("/")), leaf)]
    if not self._names:
      return
    names = self._names
    self._ratio = jax.jit(lambda a, b: binary.flip_ratio(a, b, names))
    self._copy = jax.jit(lambda p: jax.tree.map(jnp.copy, p))
    self._prev = self._copy(params)

  def log(self, state) -> dict:
    if not self._names:
      return {}
    ratios = jax.device_get(self._ratio(self._prev, state.params))
    self._prev = self._copy(state.params)
    out = {f"flip_ratio/{k.removesuffix('/kernel')}": float(v)
           for k, v in ratios.items()}
    out["flip_ratio"] = float(np.mean(list(out.values())))
    return out


def default_eval_metrics(model, dataset) -> tuple:
  """The evaluation plug-ins a model and a dataset call for: accuracy and
  loss always, IoU/Dice for a segmentation dataset, the executed MACs for a
  model with FBS gates."""
  out = [LossAccuracy()]
  if getattr(dataset, "task", "classification") == "segmentation":
    out.append(IouDice(dataset.num_classes))
  if models_lib.uses_fbs(model):
    out.append(ExecutedMacs.of(model, dataset))
  return tuple(out)


def default_train_metrics() -> tuple:
  """The per-log-step plug-ins of every phase: remaining fraction, flip
  ratio (the latter only reports for binary layers)."""
  return (RemainingFraction(), FlipRatio())


# ----------------------------------------------------------------- engine --
class Engine:
  """What every phase of a run shares: mesh, shardings, compiled steps.

  Drivers (the plain run, lottery levels and their branches) train phases
  with :func:`train_phase` on one Engine, so a level compiles its step once
  and a new mask never retraces. `eval_metrics` (default:
  `default_eval_metrics`) are compiled into the eval step; `train_metrics`
  (default: `default_train_metrics`) are every phase's log-step plug-ins.
  """

  def __init__(self, config, run: Run | None = None, *,
               eval_metrics: Sequence[Metric] | None = None,
               train_metrics: Sequence[Metric] | None = None):
    self.config = config
    self.run = run or build(config)
    self.model, self.dataset = self.run.model, self.run.dataset
    self.loss = config.get("loss", "cross_entropy")
    self.mesh = Mesh(np.asarray(jax.devices()), ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    self.data_sharding = NamedSharding(self.mesh, P("data"))
    self.abstract = jax.eval_shape(self.run.init_state,
                                   jax.random.PRNGKey(config.seed))
    self.shardings = jax.tree.map(lambda _: self.replicated, self.abstract)
    # Evaluation pads each batch to eval_bs rows; more rows than the
    # largest split holds would only cost memory (robustness case 8).
    largest = max(len(s) for s in self.dataset.splits.values())
    self.eval_bs = -(-min(config.eval_batch_size, largest)
                     // jax.device_count()) * jax.device_count()
    self._train_steps: dict = {}
    self.task = getattr(self.dataset, "task", "classification")
    self.eval_metrics = tuple(
        default_eval_metrics(self.model, self.dataset)
        if eval_metrics is None else eval_metrics)
    self.train_metrics = tuple(default_train_metrics() if train_metrics is None
                               else train_metrics)
    self._eval_step = jax.jit(
        make_eval_step(self.model, self.loss, self.eval_metrics),
        in_shardings=(self.shardings.params, self.shardings.batch_stats,
                      self.data_sharding),
        out_shardings=self.replicated)

  def init(self, rng) -> TrainState:
    return jax.jit(self.run.init_state, out_shardings=self.shardings)(rng)

  def place(self, state: TrainState) -> TrainState:
    """A fresh copy of `state` (e.g. built by an event function, or kept by
    a driver) replicated on the mesh; the train step may donate it."""
    state = jax.tree.map(lambda x: np.asarray(x) if isinstance(
        x, (bool, int, float, np.ndarray)) else x, state)
    return jax.jit(lambda s: jax.tree.map(jnp.copy, s),
                   out_shardings=self.shardings)(state)

  def train_step(self, tx=None):
    """The jitted, state-donating step of optimizer `tx` (default: the
    run's); compiled once per optimizer."""
    tx = tx or self.run.tx
    key = id(tx)
    if key not in self._train_steps:
      self._train_steps[key] = (tx, jax.jit(
          make_train_step(self.model, tx, self.loss), donate_argnums=0,
          in_shardings=(self.shardings, self.data_sharding),
          out_shardings=(self.shardings, self.replicated)))
    return self._train_steps[key][1]

  def train_batch(self, step: int, data_seed: int):
    """The global batch of `step` (`data.train_batch` of the train split:
    the data position is the step), as the train step takes it."""
    return to_global(data_lib.train_batch(
        self.dataset.splits["train"], step,
        batch_size=self.config.batch_size, seed=data_seed,
        process_index=jax.process_index(),
        process_count=jax.process_count()), self.data_sharding)

  def evaluate(self, params, batch_stats, split: str) -> dict:
    """The eval metrics over a whole split (padding rows weigh 0): each
    plug-in's `finalize` of its summed `accumulate`, in order."""
    totals = None
    for batch in data_lib.eval_batches(
        self.dataset.splits[split], batch_size=self.eval_bs,
        process_index=jax.process_index(),
        process_count=jax.process_count()):
      batch = to_global(batch, self.data_sharding)
      out = self._eval_step(params, batch_stats, batch)
      totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    out = {}
    for metric, sums in zip(self.eval_metrics, totals):
      out.update(metric.finalize(sums))
    return out

  def restore(self, workdir: str, keep: int | None = None):
    """(manager, (state, meta) or None) for the phase in `workdir`."""
    mngr = checkpointing.manager(
        workdir, keep=keep or self.config.keep_checkpoints)
    restored = checkpointing.restore_latest(
        mngr, checkpointing.abstract_like(self.abstract, self.shardings))
    return mngr, restored

  def checkpoint_meta(self, step: int, phase: str, label: str,
                      data_seed: int) -> dict:
    """The meta saved with the checkpoint of `step` (the data position is
    the step)."""
    return {"data_position": step, "phase": phase, "label": label,
            "data_seed": int(data_seed)}

  def header(self, label: str, state, step: int, end_step: int) -> str:
    """The line a phase prints when it starts."""
    remaining = float(sparsity.remaining_fraction(state.mask))
    return (f"{label or 'Training'}: {self.config.model} on "
            f"{self.config.dataset}, steps {step}..{end_step}, remaining "
            f"{remaining:.4f}, {jax.device_count()} device(s), "
            f"{jax.process_count()} process(es)")


# ----------------------------------------------------------------- events --
class Event(NamedTuple):
  """What happens after step s of a phase, between jitted steps.

  `fn(state) -> state` is an event transform of the whole state (a new
  mask, re-masked params, reset optimizer counts ...); it may also act
  outside (e.g. save the lottery rewind state) and return the state as it
  is. With `checkpoint` (the default) step s is a phase boundary: it is
  checkpointed, and checkpoints up to the last such step are saved as
  phase "prune".
  """
  fn: Callable[[Any], Any]
  checkpoint: bool = True


def mask_event(mask_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
  """The event of a function `state -> new mask` (a pruning event): the new
  mask, and the params re-masked with it.

  Example (prune the weights with |w| <= 1):
    >>> import jax.numpy as jnp
    >>> from experiments import engine
    >>> state = engine.TrainState(
    ...     step=jnp.int32(3), params={"k": jnp.array([[0.5, -2.0]])},
    ...     batch_stats={}, opt_state=(), mask={"k": jnp.ones((1, 2), bool)},
    ...     rng=jnp.zeros(2, jnp.uint32))
    >>> prune = engine.mask_event(
    ...     lambda s: {"k": jnp.abs(s.params["k"]) > 1})
    >>> events = {3: prune}  # a phase boundary after 3 updates
    >>> events[3](state).params["k"].tolist()
    [[0.0, -2.0]]
  """

  def event(state):
    mask = mask_fn(state)
    return state.replace(mask=mask,
                         params=sparsity.apply_mask(state.params, mask))

  return event


def _events(events: Mapping | None) -> dict:
  """{step: Event}; a bare function is an `Event` (a phase boundary)."""
  return {int(s): e if isinstance(e, Event) else Event(e)
          for s, e in (events or {}).items()}


# ------------------------------------------------------------------- loop --
def train_phase(engine: Engine, workdir: str, start: Callable[[], Any],
                *, end_step: int, data_seed: int, tx=None,
                events: Mapping[int, Event | Callable] | None = None,
                metrics: Sequence[Metric] | None = None,
                eval_splits: tuple = ("validation",), label: str = "",
                checkpoint_start: bool = True):
  """Trains one phase in `workdir` up to `end_step`; resumes if it can.

  Restore first: the newest checkpoint in `workdir/checkpoints`, else
  `start()` (a state at its start step), which is checkpointed at once (a
  phase boundary). Batches are ``engine.train_batch(step, data_seed)``, so
  the data position is the step. `events` maps a step s to an `Event` (or
  a bare function, an `Event` that is a phase boundary): applied after s
  updates (or to the start state at its step), before the checkpoint of
  s, so a checkpoint always holds the post-event state.
  Every `log_every` steps (and at each checkpoint and the end) the pending
  losses are checked finite and a row is logged: ``train_loss``,
  ``steps_per_sec``, ``train_accuracy`` and the entries of `metrics`
  (default ``engine.train_metrics``). `eval_splits` are evaluated every
  `eval_every` steps and at the end (``engine.evaluate``) and logged as
  ``<split>_<key>`` (``val`` for validation).
  `checkpoint_start=False` skips the start checkpoint when `start()` is
  cheap and deterministic (a plain run's init) and no boundary event
  happens at it.
  """
  config = engine.config
  is_main = jax.process_index() == 0
  events = _events(events)
  boundaries = [s for s, e in events.items() if e.checkpoint]
  last_boundary = max(boundaries) if boundaries else None
  metrics = engine.train_metrics if metrics is None else tuple(metrics)
  if is_main:
    os.makedirs(workdir, exist_ok=True)
  mngr, restored = engine.restore(workdir)
  train_step = engine.train_step(tx)

  def checkpoint(state, step: int) -> None:
    phase = ("prune" if last_boundary is not None and step <= last_boundary
             else "train")
    checkpointing.save(mngr, step, state,
                       engine.checkpoint_meta(step, phase, label, data_seed))

  if restored is not None:
    state, meta = restored
    if step_of(state) >= end_step:
      return state
    if is_main:
      print(f"Resuming {workdir} from step {step_of(state)} (data position "
            f"{meta['data_position']}, phase {meta['phase']})", flush=True)
  else:
    state = engine.place(start())
    event = events.get(step_of(state))
    if event is not None:
      state = event.fn(state)
    if (event is not None and event.checkpoint) or checkpoint_start:
      checkpoint(state, step_of(state))

  step = step_of(state)
  writer = metrics_lib.MetricWriter(workdir, resume_step=step)
  progress = metrics_lib.Progress(step, end_step)
  pending: list = []         # device scalars since the last log step
  last_logged = step
  for metric in metrics:
    metric.init(state)
  if is_main:
    print(engine.header(label, state, step, end_step), flush=True)

  def flush_metrics(step: int) -> None:
    """Checks the pending losses are finite and logs their mean."""
    nonlocal pending, last_logged
    if not pending:
      return
    vals = jax.device_get(pending)
    losses = np.asarray([v["loss"] for v in vals])
    bad = np.flatnonzero(~np.isfinite(losses).reshape(len(vals), -1).all(-1))
    if bad.size:
      first = last_logged + int(bad[0]) + 1
      raise NonFiniteLossError(
          f"non-finite training loss at step {first} (steps "
          f"{last_logged + 1}..{step} since the last good log); the last "
          f"good checkpoint is step {mngr.latest_step()}")
    rate, eta = progress.update(step)
    row = {"train_loss": float(losses.mean()), "steps_per_sec": rate,
           "train_accuracy": float(np.mean([v["accuracy"] for v in vals]))}
    for metric in metrics:
      row.update(metric.log(state))
    writer.write(step, row)
    if is_main:
      print(progress.line(step, row["train_loss"], rate, eta), flush=True)
    pending, last_logged = [], step

  def evaluate(step: int) -> None:
    row = {}
    for split in eval_splits:
      out = engine.evaluate(state.params, state.batch_stats, split)
      short = "val" if split == "validation" else split
      for key, value in out.items():  # accuracy, loss (, mean_iou, dice)
        row[f"{short}_{key}"] = value
    writer.write(step, row)

  # The loop. An event at step s happens after s updates, before the
  # checkpoint of step s, so a checkpoint always holds the post-event state.
  with jax.set_mesh(engine.mesh):
    while step < end_step:
      state, m = train_step(state, engine.train_batch(step, data_seed))
      pending.append(m)
      step += 1
      event = events.get(step)
      if event is not None:
        state = event.fn(state)
        for metric in metrics:
          metric.event(state)
      if step % config.log_every == 0 or step == end_step:
        flush_metrics(step)
      if eval_splits and (step % config.eval_every == 0 or step == end_step):
        evaluate(step)
      if (step % config.checkpoint_every == 0 or step == end_step
          or (event is not None and event.checkpoint)):  # a phase boundary
        flush_metrics(step)
        checkpoint(state, step)
      elif signals.requested() is not None:  # preempted: keep this step
        checkpoint(state, step)
      if signals.requested() is not None and step < end_step:
        writer.close()
        raise signals.Preempted(step, signals.requested())
  writer.close()
  return state


# ------------------------------------------------------------ final test --
def evaluate_test(engine: Engine, workdir: str, state: TrainState) -> dict:
  """The test split's metrics of `state`, also logged as the final
  ``test_*`` row of ``workdir/metrics.jsonl`` (what every driver's summary
  reports)."""
  with jax.set_mesh(engine.mesh):
    test = engine.evaluate(state.params, state.batch_stats, "test")
  writer = metrics_lib.MetricWriter(workdir, resume_step=int(state.step))
  writer.write(int(state.step), {f"test_{k}": v for k, v in test.items()})
  writer.close()
  return test
