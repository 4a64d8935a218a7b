"""Orbax checkpoints of the whole train state plus JSON run metadata.

A checkpoint holds everything needed for a bit-identical resume on CPU: the
`TrainState` (params, BatchNorm statistics, optimizer state, mask, rng,
step) and JSON metadata (data position = batches consumed, phase). Saves are
synchronous and atomic (orbax writes to a temporary directory and renames
it), so a kill during a write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, enable_async_checkpointing=False, create=True,
      cleanup_tmp_directories=True)
  root = os.path.join(os.path.abspath(os.path.expanduser(workdir)),
                      "checkpoints")  # orbax refuses relative paths
  return ocp.CheckpointManager(root, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True)
  mngr.wait_until_finished()


class UnreadableCheckpoint(ValueError):
  """The newest checkpoint of a finished result cannot be read."""


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, *,
                   set_aside: bool = True):
  """(state, meta) of the newest readable checkpoint, or None if none.

  `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings (from
  `jax.eval_shape`), so arrays come back already placed on the mesh.

  A checkpoint that cannot be restored (a truncated or deleted file, a
  missing item) is set aside, never deleted: process 0 moves it to
  ``<workdir>/checkpoints.set_aside/<step>`` with a one-line warning, and
  the next older one is tried. No state of the directory can block a
  re-run forever: with every checkpoint set aside the run starts afresh.

  ``set_aside=False`` (readers of a finished result: export, ``init_from``)
  moves nothing: an unreadable newest checkpoint raises
  :class:`UnreadableCheckpoint` (one line), since an older one is not the
  result the run reported.
  """
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          meta=ocp.args.JsonRestore()))
      if restored.meta is None or restored.state is None:
        raise ValueError("missing item")
      return restored.state, restored.meta
    except Exception as e:  # pylint: disable=broad-except
      if not set_aside:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise UnreadableCheckpoint(
            f"checkpoint {step} in {os.fspath(mngr.directory)} is unreadable "
            f"({type(e).__name__}: {reason})") from None
      _set_aside(mngr, step, e)
  return None


def _set_aside(mngr: ocp.CheckpointManager, step: int, error) -> None:
  root = os.fspath(mngr.directory)
  aside = os.path.join(os.path.dirname(root), "checkpoints.set_aside")
  reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
  if jax.process_index() == 0:
    os.makedirs(aside, exist_ok=True)
    target = os.path.join(aside, str(step))
    n = 1
    while os.path.exists(target):
      target = os.path.join(aside, f"{step}.{n}")
      n += 1
    os.replace(os.path.join(root, str(step)), target)
    print(f"warning: checkpoint {step} in {root} is unreadable "
          f"({type(error).__name__}: {reason}); moved to {target}, trying "
          "the previous one", flush=True)
  mngr.reload()


def abstract_like(state, shardings):
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      state, shardings)
