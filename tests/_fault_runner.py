"""Runs a small digits job in its own process, optionally killing itself.

  python tests/_fault_runner.py WORKDIR FAULT N [JSON_OVERRIDES]
    [--coordinator=HOST:PORT --num_processes=K --process_id=I]

JSON_OVERRIDES: config fields; "_lottery": true for the lottery config,
"_make": "module:function" for another config factory (a tests/ module).

FAULT: none | step (SIGKILL when batch N is requested) | call (SIGKILL at
the N-th batch request of the process, for multi-phase drivers) | prune (SIGKILL
right after the N-th pruning event computed its mask, before the phase
checkpoint) | checkpoint (SIGKILL in the middle of the N-th checkpoint
write: the state is on disk in orbax's temporary directory, the metadata
and the commit are not).
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv):
  flags = dict(a[2:].split("=", 1) for a in argv if a.startswith("--"))
  args = [a for a in argv if not a.startswith("--")]
  workdir, fault, n = args[1], args[2], int(args[3])
  overrides = json.loads(args[4]) if len(args) > 4 else {}
  import jax  # pylint: disable=g-import-not-at-top
  if "coordinator" in flags:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(flags["coordinator"],
                               int(flags["num_processes"]),
                               int(flags["process_id"]))
  import helpers  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from experiments import data as data_lib  # pylint: disable=g-import-not-at-top
  from experiments import pruning  # pylint: disable=g-import-not-at-top
  from experiments import drivers  # pylint: disable=g-import-not-at-top

  def die():
    os.kill(os.getpid(), signal.SIGKILL)

  calls = {"n": 0}
  if fault in ("step", "call"):
    real_batch = data_lib.train_batch

    def batch(source, step, **kw):
      calls["n"] += 1
      if (step if fault == "step" else calls["n"]) == n:
        die()
      return real_batch(source, step, **kw)
    data_lib.train_batch = batch
  elif fault == "prune":
    real_prune = pruning.apply_pruning

    def prune(*a, **kw):
      mask = real_prune(*a, **kw)
      calls["n"] += 1
      if calls["n"] == n:
        jax.block_until_ready(mask)
        die()
      return mask
    pruning.apply_pruning = prune
  elif fault == "checkpoint":
    handler = ocp.JsonCheckpointHandler
    real_save = handler._save_fn  # pylint: disable=protected-access

    async def save_fn(self, x, directory):
      calls["n"] += 1
      if calls["n"] == n:
        die()
      return await real_save(self, x, directory)
    handler._save_fn = save_fn  # pylint: disable=protected-access
  make = (helpers.small_lottery_config if overrides.pop("_lottery", False)
          else helpers.small_config)
  if "_make" in overrides:  # "module:function" of a config factory in tests/
    import importlib  # pylint: disable=g-import-not-at-top
    module, fn = overrides.pop("_make").split(":")
    make = getattr(importlib.import_module(module), fn)
  drivers.run(make(**overrides), workdir)


if __name__ == "__main__":
  main(sys.argv)
