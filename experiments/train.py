"""The trainer: `train_and_evaluate(config, workdir)`, one readable file.

Sections, top to bottom: workdir, mesh, input, model and optimizer, steps,
checkpoint (restore first, then init), the loop with pruning events, evals,
summary. A run is addressed by its workdir: calling this again with the same
config resumes from the newest checkpoint, and after a finished run returns
the stored summary at once.

Data parallelism: one `Mesh` over every device of every host, the batch
sharded on its 'data' axis and the train state replicated; XLA inserts the
gradient all-reduce. The same code runs on 1 CPU, N forced CPU devices, a
GPU box or several processes under `jax.distributed`.
"""
from __future__ import annotations

import json
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
from experiments import metrics as metrics_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import pruning
import sparsity


class WorkdirError(config_check.ConfigError):
  """The workdir holds another config's run."""


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


def _config_json(config) -> dict:
  return json.loads(config.to_json())


# ---------------------------------------------------------------- workdir --
def _check_workdir(config, workdir: str) -> None:
  """Refuses a workdir that holds a run of a different config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f)
  new = _config_json(config)
  if stored != new:
    diff = sorted(k for k in set(stored) | set(new)
                  if stored.get(k) != new.get(k))
    raise WorkdirError(
        f"workdir {workdir} holds a run of another config (differs in: "
        f"{', '.join(diff)}); use a new --workdir")


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


# ------------------------------------------------------------------ steps --
def _loss_fn(model, params, batch_stats, batch, train: bool):
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  if train and batch_stats:
    logits, new_vars = model.apply(variables, batch["image"], train=True,
                                   mutable=["batch_stats"])
    batch_stats = new_vars["batch_stats"]
  else:
    logits = model.apply(variables, batch["image"], train=train)
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["label"])
  return losses, (logits, batch_stats)


def make_train_step(model, tx):
  """(state, batch) -> (state, metrics): one masked optimizer update."""

  def train_step(state: TrainState, batch):
    def loss(params):
      losses, aux = _loss_fn(model, params, state.batch_stats, batch, True)
      return losses.mean(), aux

    (l, (logits, batch_stats)), grads = jax.value_and_grad(
        loss, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                   mask=state.mask)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    return new_state, {"loss": l, "accuracy": accuracy}

  return train_step


def make_eval_step(model):
  """(params, batch_stats, batch) -> sums of loss, correct and weight."""

  def eval_step(params, batch_stats, batch):
    losses, (logits, _) = _loss_fn(model, params, batch_stats, batch, False)
    w = batch["weight"]
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"loss": jnp.sum(losses * w), "correct": jnp.sum(correct * w),
            "count": jnp.sum(w)}

  return eval_step


def evaluate(eval_step, state, source, batch_size, data_sharding) -> dict:
  """Accuracy and mean loss over a whole split (padding rows weigh 0)."""
  totals = None
  for batch in data_lib.eval_batches(
      source, batch_size=batch_size, process_index=jax.process_index(),
      process_count=jax.process_count()):
    batch = _to_global(batch, data_sharding)
    out = eval_step(state.params, state.batch_stats, batch)
    totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
  totals = jax.device_get(totals)
  count = max(float(totals["count"]), 1.0)
  return {"accuracy": float(totals["correct"]) / count,
          "loss": float(totals["loss"]) / count}


def _to_global(local_batch: dict, sharding) -> dict:
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
def _summary(config, ds, state, test: dict) -> dict:
  rows = sparsity.summarize(state.mask)
  return {
      "dataset": config.dataset,
      "model": config.model,
      "final": {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
                "remaining_fraction": float(
                    sparsity.remaining_fraction(state.mask)),
                "step": int(state.step)},
      "layers": rows,
      "num_classes": ds.num_classes,
      "devices": jax.device_count(),
      "processes": jax.process_count(),
  }


def format_result(summary: dict) -> str:
  """The end-of-run table: test metrics, then remaining weights per layer."""
  f = summary["final"]
  lines = [f"test accuracy {f['test_accuracy']:.4f}   test loss "
           f"{f['test_loss']:.4f}   step {f['step']}",
           sparsity.format_summary_table(summary["layers"])]
  return "\n".join(lines)


# ------------------------------------------------------------------ build --
class Run(NamedTuple):
  dataset: Any          # experiments.data.Dataset
  model: Any            # flax.linen.Module
  tx: Any               # sparsity.masked(inner), plain inner if dense
  init_state: Callable  # rng -> TrainState


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
  model = models_lib.get_model(config.model, ds.num_classes,
                               **config.model_kwargs.to_dict())
  inner = optimizers.make_optimizer(config)
  if config.pruning.method == "none":  # nothing is ever pruned: skip the
    tx = optax.with_extra_args_support(inner)  # masking work (mask ignored)
  else:
    tx = sparsity.masked(inner)

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
  """The newest checkpointed TrainState of a run (on the default device)."""
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


# ------------------------------------------------------------------- main --
def train_and_evaluate(config, workdir: str) -> dict:
  """Trains, prunes and evaluates `config`; returns the summary dict.

  Writes `<workdir>/config.json`, `metrics.jsonl`, `checkpoints/` and
  `summary.json`. Raises `config_check.ConfigError` (bad config or a workdir
  of another run; nothing is written) and `NonFiniteLossError` (the newest
  good checkpoint is kept).
  """
  config_check.validate(config, device_count=jax.device_count())
  _check_workdir(config, workdir)
  is_main = jax.process_index() == 0
  summary_path = os.path.join(workdir, "summary.json")

  # Mesh: batch on 'data', state replicated.
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))

  run = build(config)
  ds, model, tx = run.dataset, run.model, run.tx
  train_src = ds.splits["train"]
  eval_bs = -(-config.eval_batch_size // jax.device_count()) * (
      jax.device_count())
  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(run.init_state, rng)
  shardings = jax.tree.map(lambda _: replicated, abstract)

  # Checkpoint: restore first, otherwise initialise.
  if is_main:
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(os.path.join(workdir, "config.json")):
      _write_json(os.path.join(workdir, "config.json"), _config_json(config))
  mngr = checkpointing.manager(workdir, keep=config.keep_checkpoints)
  restored = checkpointing.restore_latest(
      mngr, checkpointing.abstract_like(abstract, shardings))
  if restored is not None:
    state, meta = restored
    if int(state.step) >= config.num_steps and os.path.exists(summary_path):
      with open(summary_path) as f:
        summary = json.load(f)
      if is_main:
        print(f"Run in {workdir} already finished; stored result:")
        print(format_result(summary), flush=True)
      return summary
    if is_main:
      print(f"Resuming {workdir} from step {int(state.step)} (data position "
            f"{meta['data_position']}, phase {meta['phase']})", flush=True)
  else:
    state = jax.jit(run.init_state, out_shardings=shardings)(rng)

  train_step = jax.jit(make_train_step(model, tx), donate_argnums=0,
                       in_shardings=(shardings, data_sharding),
                       out_shardings=(shardings, replicated))
  eval_step = jax.jit(make_eval_step(model),
                      in_shardings=(shardings.params, shardings.batch_stats,
                                    data_sharding),
                      out_shardings=replicated)
  prune_at = pruning.prune_events(config.pruning)

  def checkpoint(step: int) -> None:
    phase = ("prune" if prune_at and step <= max(prune_at) else "train")
    checkpointing.save(mngr, step, state, {"data_position": step,
                                           "phase": phase})

  writer = metrics_lib.MetricWriter(workdir, resume_step=int(state.step))
  step = int(state.step)
  progress = metrics_lib.Progress(step, config.num_steps)
  pending: list = []         # device scalars since the last log step
  last_logged = step
  remaining = float(sparsity.remaining_fraction(state.mask))  # per mask
  if is_main:
    print(f"Training {config.model} on {config.dataset}: steps {step}.."
          f"{config.num_steps}, {jax.device_count()} device(s), "
          f"{jax.process_count()} process(es)", flush=True)

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
           "remaining_fraction": remaining}
    writer.write(step, row)
    if is_main:
      print(progress.line(step, row["train_loss"], rate, eta), flush=True)
    pending, last_logged = [], step

  def prune_event(step: int) -> None:
    """Event transform between jitted steps: new mask, re-masked params."""
    nonlocal state, remaining
    mask = pruning.apply_pruning(state.params, state.mask, config.pruning,
                                 prune_at[step])
    state = state.replace(mask=mask,
                          params=sparsity.apply_mask(state.params, mask))
    remaining = float(sparsity.remaining_fraction(mask))

  # The loop. A pruning event at step s happens after s updates, before the
  # checkpoint of step s, so a checkpoint always holds the post-event state.
  with jax.set_mesh(mesh):
    if step == 0 and 0 in prune_at:
      prune_event(0)
      checkpoint(0)
    while step < config.num_steps:
      batch = data_lib.train_batch(
          train_src, step, batch_size=config.batch_size, seed=config.seed,
          process_index=jax.process_index(),
          process_count=jax.process_count())
      state, m = train_step(state, _to_global(batch, data_sharding))
      pending.append(m)
      step += 1
      if step in prune_at:
        prune_event(step)
      if step % config.log_every == 0 or step == config.num_steps:
        flush_metrics(step)
      if step % config.eval_every == 0 and step < config.num_steps:
        val = evaluate(eval_step, state, ds.splits["validation"], eval_bs,
                       data_sharding)
        writer.write(step, {"val_accuracy": val["accuracy"],
                            "val_loss": val["loss"]})
      if (step % config.checkpoint_every == 0 or step == config.num_steps
          or step in prune_at):  # a pruning event is a phase boundary
        flush_metrics(step)
        checkpoint(step)

    test = evaluate(eval_step, state, ds.splits["test"], eval_bs,
                    data_sharding)
  writer.write(step, {"test_accuracy": test["accuracy"],
                      "test_loss": test["loss"]})
  writer.close()
  summary = _summary(config, ds, state, test)
  if is_main:
    _write_json(summary_path, summary)
    print(format_result(summary), flush=True)
  return summary
