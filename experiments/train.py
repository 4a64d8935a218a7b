"""The trainer library and the plain run (`run(config, workdir)`).

Sections, top to bottom: the train state, steps (loss, train and eval step
builders), summary, build (dataset, model, optimizer), the `Engine`
(mesh, shardings, compiled steps, evaluation, restore), `train_phase` (the
loop with pruning events, restore first, then init), the final test
evaluation, and the plain run. The drivers (``experiments.drivers``) build
on these; the workdir protocol is ``experiments.runs``. A run is addressed
by its workdir: calling `run` again with the same config resumes from the
newest checkpoint, and after a finished run returns the stored summary at
once.

Data parallelism: one `Mesh` over every device of every host, the batch
sharded on its 'data' axis and the train state replicated; XLA inserts the
gradient all-reduce. The same code runs on 1 CPU, N forced CPU devices, a
GPU box or several processes under `jax.distributed`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

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
from experiments import runs
from experiments import segmentation
from experiments import signals
import binary
import sparsity


WorkdirError = runs.WorkdirError  # re-exported: the workdir protocol owns it


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
  only, e.g. ("fbs_gates",)) also the sown collections. In training, FBS
  models' per-example penalties sown in "losses" are added to the loss."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  rngs = None
  if train and rng is not None:
    k_drop, k_quant = jax.random.split(rng)
    rngs = {"dropout": k_drop, "quantize": k_quant}
  sown = {}
  if train and batch_stats:
    mutable = ["batch_stats"] + (["losses"] if models_lib.uses_fbs(model)
                                 else [])
    logits, new_vars = model.apply(variables, batch["image"], train=True,
                                   mutable=mutable, rngs=rngs)
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


def make_eval_step(model, loss: str = "cross_entropy",
                   num_classes: int | None = None, macs_plan=None):
  """(params, batch_stats, batch) -> sums of loss, correct and weight.

  Per-pixel labels (segmentation): "correct" is each example's pixel
  accuracy; with `num_classes` the sums also hold the (C, C) confusion
  matrix of all pixels (`segmentation.confusion_matrix`). With `macs_plan`
  (FBS models, `fbs.mac_plan`) the sums also hold "macs": per layer the
  executed MACs of the batch's examples, from the sown gates.
  """

  def eval_step(params, batch_stats, batch):
    if macs_plan is None:
      losses, (logits, _) = loss_fn(model, params, batch_stats, batch,
                                     False, loss)
    else:
      losses, (logits, _, sown) = loss_fn(
          model, params, batch_stats, batch, False, loss,
          collect=("fbs_gates",))
    w = batch["weight"]
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    correct = correct.reshape(correct.shape[0], -1).mean(-1)
    out = {"loss": jnp.sum(losses * w), "correct": jnp.sum(correct * w),
           "count": jnp.sum(w)}
    if num_classes is not None:
      out["confusion"] = segmentation.confusion_matrix(
          logits, batch["label"], num_classes, w)
    if macs_plan is not None:
      macs = fbs_lib.executed_macs(macs_plan, fbs_lib.gates_of(
          sown.get("fbs_gates", {})))
      out["macs"] = {k: jnp.sum(v * w) for k, v in macs.items()}
    return out

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


# --------------------------------------------------------------- summary --
def layer_rows(mask) -> list:
  return sparsity.summarize(mask)


def base_summary(config, ds, state, test: dict) -> dict:
  return {
      "dataset": config.dataset,
      "model": config.model,
      "final": {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
                "remaining_fraction": float(
                    sparsity.remaining_fraction(state.mask)),
                "step": int(state.step)},
      "layers": layer_rows(state.mask),
      "num_classes": ds.num_classes,
      "devices": jax.device_count(),
      "processes": jax.process_count(),
  }


def format_result(summary: dict) -> str:
  """The end-of-run table: test metrics, then remaining weights per layer."""
  f = summary["final"]
  lines = [f"test accuracy {f['test_accuracy']:.4f}   test loss "
           f"{f['test_loss']:.4f}   step {f['step']}",
           *([f"dice {f['dice']:.4f}   mean IoU {f['mean_iou']:.4f}   "
              f"filters remaining {f['filters_remaining_fraction']:.4f}   "
              f"memory {f['memory_bytes']} bytes"] if "dice" in f else []),
           sparsity.format_summary_table(summary["layers"])]
  for name, row in summary.get("baselines", {}).items():  # Scratch-E / B
    extra = f"   dice {row['dice']:.4f}" if "dice" in row else ""
    lines.append(f"{name}: test accuracy {row['test_accuracy']:.4f}{extra}"
                 f"   ({row['steps']} steps from a fresh init)")
  return "\n".join(lines)


# ------------------------------------------------------------------ build --
class Run(NamedTuple):
  dataset: Any          # experiments.data.Dataset
  model: Any            # flax.linen.Module
  tx: Any               # sparsity.masked(inner), plain inner if dense
  init_state: Callable  # rng -> TrainState


def _wrap(config, inner):
  """The masked optimizer (the mask-ignoring plain one for dense runs)."""
  if pruning.method_of(config) == "none" and "lottery" not in config:
    return optax.with_extra_args_support(inner)  # nothing is ever pruned
  return sparsity.masked(inner)


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
  model_kwargs = config.model_kwargs.to_dict()
  if "binarize" in config:
    model_kwargs["binarize"] = bool(config.binarize)
  model = models_lib.get_model(config.model, ds.num_classes, **model_kwargs)
  tx = make_tx(config)

  def init_state(rng) -> TrainState:
    init_rng, state_rng = jax.random.split(rng)
    dummy = jnp.zeros((1, *ds.input_shape), jnp.float32)
    variables = model.init(init_rng, dummy, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params),
                      mask=sparsity.create_mask(params), rng=state_rng)

  return Run(ds, model, tx, init_state)


def load_state(config, workdir: str) -> TrainState:
  """The newest checkpointed TrainState of a run (on the default device).

  For a lottery run, `workdir` is a level's directory (`RUN/level_NN`).
  """
  run = build(config)
  abstract = jax.eval_shape(run.init_state, jax.random.PRNGKey(config.seed))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored = checkpointing.restore_latest(
      checkpointing.manager(workdir),
      checkpointing.abstract_like(abstract,
                                  jax.tree.map(lambda _: sharding, abstract)))
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}")
  return restored[0]


# ----------------------------------------------------------------- engine --
class Engine:
  """What every phase of a run shares: mesh, shardings, compiled steps.

  Drivers (the plain run, lottery levels and their branches) train phases
  with :func:`train_phase` on one Engine, so a level compiles its step once
  and a new mask never retraces.
  """

  def __init__(self, config, run: Run | None = None):
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
    self.eval_bs = -(-config.eval_batch_size // jax.device_count()) * (
        jax.device_count())
    self._train_steps: dict = {}
    self.task = getattr(self.dataset, "task", "classification")
    self.macs_plan = (fbs_lib.mac_plan(models_lib.layer_list(
        self.model, self.dataset.input_shape), self.dataset.input_shape)
                      if models_lib.uses_fbs(self.model) else None)
    self._eval_step = jax.jit(
        make_eval_step(self.model, self.loss, self.dataset.num_classes
                       if self.task == "segmentation" else None,
                       self.macs_plan),
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

  def evaluate(self, params, batch_stats, split: str) -> dict:
    """Accuracy and mean loss over a whole split (padding rows weigh 0)."""
    totals = None
    for batch in data_lib.eval_batches(
        self.dataset.splits[split], batch_size=self.eval_bs,
        process_index=jax.process_index(),
        process_count=jax.process_count()):
      batch = to_global(batch, self.data_sharding)
      out = self._eval_step(params, batch_stats, batch)
      totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    count = max(float(totals["count"]), 1.0)
    out = {"accuracy": float(totals["correct"]) / count,
           "loss": float(totals["loss"]) / count}
    if "confusion" in totals:  # segmentation: pixel accuracy, IoU, Dice
      out["mean_iou"] = segmentation.mean_iou(totals["confusion"])
      out["dice"] = segmentation.mean_dice(totals["confusion"])
    if "macs" in totals:  # FBS: macs_fraction, macs/<layer> (per example)
      out.update(fbs_lib.macs_metrics(self.macs_plan, {
          k: float(v) / count for k, v in totals["macs"].items()}))
    return out

  def restore(self, workdir: str, keep: int | None = None):
    """(manager, (state, meta) or None) for the phase in `workdir`."""
    mngr = checkpointing.manager(
        workdir, keep=keep or self.config.keep_checkpoints)
    restored = checkpointing.restore_latest(
        mngr, checkpointing.abstract_like(self.abstract, self.shardings))
    return mngr, restored


def train_phase(engine: Engine, workdir: str, start: Callable[[], TrainState],
                *, end_step: int, data_seed: int, tx=None,
                prune_at: dict | None = None, prune_fn: Callable | None = None,
                event_fn: Callable | None = None,
                eval_splits: tuple = ("validation",),
                hooks: dict | None = None, label: str = "",
                checkpoint_start: bool = True) -> TrainState:
  """Trains one phase in `workdir` up to `end_step`; resumes if it can.

  Restore first: the newest checkpoint in `workdir/checkpoints`, else
  `start()` (a state at its start step), which is checkpointed at once (a
  phase boundary). Batches are `data.train_batch(source, step, seed=
  data_seed)`, so the data position is the step. `prune_at` maps a step to
  the argument of `prune_fn(state, arg) -> mask` (an event after that
  step's update; the params are re-masked and the step is checkpointed).
  `event_fn(state, arg) -> state` replaces `prune_fn` when an event changes
  more than the mask (params, optimizer state); it must re-mask the params.
  `eval_splits` are evaluated every `eval_every` steps and at the end and
  logged as `<split>_accuracy`, `<split>_loss` (val for validation), and
  for segmentation `<split>_mean_iou`, `<split>_dice`.
  `hooks[s](state)` runs after step s (e.g. saving the rewind state).
  `checkpoint_start=False` skips the start checkpoint when `start()` is
  cheap and deterministic (a plain run's init) and no event happens at it.
  """
  config = engine.config
  is_main = jax.process_index() == 0
  prune_at = prune_at or {}
  hooks = hooks or {}
  if is_main:
    os.makedirs(workdir, exist_ok=True)
  mngr, restored = engine.restore(workdir)
  train_step = engine.train_step(tx)
  train_src = engine.dataset.splits["train"]

  def checkpoint(state, step: int) -> None:
    phase = ("prune" if prune_at and step <= max(prune_at) else "train")
    checkpointing.save(mngr, step, state, {"data_position": step,
                                           "phase": phase, "label": label,
                                           "data_seed": int(data_seed)})

  if restored is not None:
    state, meta = restored
    if int(state.step) >= end_step:
      return state
    if is_main:
      print(f"Resuming {workdir} from step {int(state.step)} (data position "
            f"{meta['data_position']}, phase {meta['phase']})", flush=True)
  else:
    state = engine.place(start())
    if int(state.step) in prune_at:
      state = _prune(state, prune_fn, prune_at[int(state.step)], event_fn)
      checkpoint(state, int(state.step))
    elif checkpoint_start:
      checkpoint(state, int(state.step))

  step = int(state.step)
  writer = metrics_lib.MetricWriter(workdir, resume_step=step)
  progress = metrics_lib.Progress(step, end_step)
  pending: list = []         # device scalars since the last log step
  last_logged = step
  remaining = float(sparsity.remaining_fraction(state.mask))  # per mask
  flips = _FlipTracker(state.params)
  if is_main:
    print(f"{label or 'Training'}: {config.model} on {config.dataset}, steps "
          f"{step}..{end_step}, remaining {remaining:.4f}, "
          f"{jax.device_count()} device(s), {jax.process_count()} "
          "process(es)", flush=True)

  def flush_metrics(step: int) -> None:
    """Checks the pending losses are finite and logs their mean."""
    nonlocal pending, last_logged
    if not pending:
      return
    vals = jax.device_get(pending)
    losses = np.asarray([v["loss"] for v in vals])
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
      first = last_logged + int(bad[0]) + 1
      raise NonFiniteLossError(
          f"non-finite training loss at step {first} (steps "
          f"{last_logged + 1}..{step} since the last good log); the last "
          f"good checkpoint is step {mngr.latest_step()}")
    rate, eta = progress.update(step)
    row = {"train_loss": float(losses.mean()), "steps_per_sec": rate,
           "train_accuracy": float(np.mean([v["accuracy"] for v in vals])),
           "remaining_fraction": remaining, **flips.update(state.params)}
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

  # The loop. A pruning event at step s happens after s updates, before the
  # checkpoint of step s, so a checkpoint always holds the post-event state.
  with jax.set_mesh(engine.mesh):
    while step < end_step:
      batch = data_lib.train_batch(
          train_src, step, batch_size=config.batch_size, seed=data_seed,
          process_index=jax.process_index(),
          process_count=jax.process_count())
      state, m = train_step(state, to_global(batch, engine.data_sharding))
      pending.append(m)
      step += 1
      if step in prune_at:
        state = _prune(state, prune_fn, prune_at[step], event_fn)
        remaining = float(sparsity.remaining_fraction(state.mask))
      if step in hooks:
        hooks[step](state)
      if step % config.log_every == 0 or step == end_step:
        flush_metrics(step)
      if eval_splits and (step % config.eval_every == 0 or step == end_step):
        evaluate(step)
      if (step % config.checkpoint_every == 0 or step == end_step
          or step in prune_at):  # a pruning event is a phase boundary
        flush_metrics(step)
        checkpoint(state, step)
      elif signals.requested() is not None:  # preempted: keep this step
        checkpoint(state, step)
      if signals.requested() is not None and step < end_step:
        writer.close()
        raise signals.Preempted(step, signals.requested())
  writer.close()
  return state


class _FlipTracker:
  """Flip ratio per binary layer since the previous log step.

  Keeps a copy of the binary kernels (chosen by
  `models.is_binary_kernel`) at each log step; `update(params)` returns
  {"flip_ratio": mean over layers, "flip_ratio/<layer>": ...} and takes
  the new copy. Nothing for models without binary layers. After a resume
  the first ratio covers the steps since the restored checkpoint.
  """

  def __init__(self, params):
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

  def update(self, params) -> dict:
    if not self._names:
      return {}
    ratios = jax.device_get(self._ratio(self._prev, params))
    self._prev = self._copy(params)
    out = {f"flip_ratio/{k.removesuffix('/kernel')}": float(v)
           for k, v in ratios.items()}
    out["flip_ratio"] = float(np.mean(list(out.values())))
    return out


STE_WINDOW = 1.0
"""Half-width of the clipped STE's pass-through window (`ste_sign`'s
default `clip`, also `approx_sign`'s): the gradient reaches a latent weight
only where |w| <= 1. `ste_identity_sign` differs from `ste_sign` exactly
at the weights outside it."""


def latent_window_stats(params, window: float = STE_WINDOW) -> dict:
  """How far the latent binary weights left the STE window, at the end.

  Over the live (nonzero; a pruned weight is an exact 0) entries of every
  binary kernel (`models.is_binary_kernel`): `latent_outside_window`, the
  fraction with |w| > `window`, and `latent_abs_max`, the largest |w|.
  {} for a model without binary kernels. With weight clipping at H <= 1
  (`clip_weights`) the fraction is 0 by construction.
  """
  leaves = [np.abs(np.asarray(jax.device_get(leaf), np.float64)).ravel()
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
            if models_lib.is_binary_kernel(
                tuple(sparsity.leaf_name(path).split("/")), leaf)]
  if not leaves:
    return {}
  w = np.concatenate(leaves)
  w = w[w != 0]
  if not w.size:
    return {"latent_outside_window": 0.0, "latent_abs_max": 0.0}
  return {"latent_outside_window": float(np.mean(w > window)),
          "latent_abs_max": float(w.max())}


def _prune(state: TrainState, prune_fn, arg, event_fn=None) -> TrainState:
  """Event transform between jitted steps: new mask, re-masked params
  (or `event_fn(state, arg)`, which returns the whole new state)."""
  if event_fn is not None:
    return event_fn(state, arg)
  mask = prune_fn(state, arg)
  return state.replace(mask=mask,
                       params=sparsity.apply_mask(state.params, mask))


def segmentation_summary(engine: "Engine", state, test: dict) -> dict:
  """{"final": {..., dice, mean_iou, remaining_fraction (kernels),
  filters_remaining_fraction, memory_bytes}, "layer_report": rows}."""
  layers = models_lib.layer_list(engine.model, engine.dataset.input_shape)
  variables = jax.device_get({"params": state.params,
                              "batch_stats": state.batch_stats})
  rows = segmentation.layer_report(layers, variables,
                                   jax.device_get(state.mask))
  t = segmentation.totals(rows)
  final = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
           "step": int(state.step), "dice": test["dice"],
           "mean_iou": test["mean_iou"],
           "remaining_fraction": t["remaining_fraction"],
           "filters_remaining_fraction": t["filters_remaining_fraction"],
           "memory_bytes": t["memory_bytes"]}
  return {"final": final, "layer_report": rows}


def model_summary(engine: "Engine", state, with_mask: bool = True) -> list:
  """Per layer: params by bit width, memory (32-bit, packed), MACs by
  precision, remaining weights (`binary.model_summary`)."""
  layers = models_lib.layer_list(engine.model, engine.dataset.input_shape)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  mask = jax.device_get(state.mask) if with_mask else None
  return binary.model_summary(layers, variables, mask)


# ------------------------------------------------------------- result --
DEPLOY_OPTIONS = ()


def deployable(config, workdir: str):
  """The plain run's result: its newest checkpoint (``drivers.Deployable``;
  the protocol is in ``experiments/drivers.py``)."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  summary = drivers.finished_summary(workdir)
  return drivers.Deployable(config, load_state(config, workdir), {
      "result": "the newest checkpoint",
      "test_accuracy": summary["final"]["test_accuracy"]})


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


# ------------------------------------------------------------------- main --
def run(config, workdir: str) -> dict:
  """The plain run: trains, prunes (``config.pruning``) and evaluates.

  The driver of a config without a method section (``experiments.drivers``
  dispatches the others). Writes `<workdir>/config.json`, `metrics.jsonl`,
  `checkpoints/` and `summary.json` through ``experiments.runs``. Raises
  `config_check.ConfigError` (bad config or a workdir of another run;
  nothing is written) and `NonFiniteLossError` (the newest good checkpoint
  is kept).
  """
  summary = runs.open_run(config, workdir, format_fn=format_result)
  if summary is not None:  # summary.json is written last: the run is done
    return summary
  engine = Engine(config)
  first_summary = model_summary(engine, engine.abstract, with_mask=False)
  if runs.is_main():
    print(binary.format_model_summary(first_summary), flush=True)
  prune_at = pruning.prune_events(config.get("pruning"))
  state = train_phase(
      engine, workdir,
      lambda: engine.init(jax.random.PRNGKey(config.seed)),
      end_step=config.num_steps, data_seed=config.seed, prune_at=prune_at,
      prune_fn=lambda s, target: pruning.apply_pruning(
          s.params, s.mask, config.pruning, target),
      checkpoint_start=False)
  test = evaluate_test(engine, workdir, state)
  summary = base_summary(config, engine.dataset, state, test)
  if engine.task == "segmentation":
    summary.update(segmentation_summary(engine, state, test))
  summary["final"].update(latent_window_stats(state.params))  # binary only
  summary["model_summary"] = model_summary(engine, state)
  runs.write_summary(workdir, summary)
  if runs.is_main():
    print(format_result(summary), flush=True)
  return summary
