"""Orbax checkpoints of the whole train state plus JSON run metadata.

A checkpoint holds everything needed for a bit-identical resume on CPU: the
`TrainState` (params, BatchNorm statistics, optimizer state, mask, rng,
step) and JSON metadata (data position = batches consumed, phase). Saves are
synchronous and atomic (orbax writes to a temporary directory and renames
it), so a kill during a write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, enable_async_checkpointing=False, create=True,
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(f"{workdir}/checkpoints", options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True)
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
  """(state, meta) of the newest checkpoint, or None if there is none.

  `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings (from
  `jax.eval_shape`), so arrays come back already placed on the mesh.
  """
  step = mngr.latest_step()
  if step is None:
    return None
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state),
      meta=ocp.args.JsonRestore()))
  return restored.state, restored.meta


def abstract_like(state, shardings):
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      state, shardings)
