r"""Trains one experiment: `python -m launch.train --config=FILE --workdir=DIR`.

  python -m launch.train --config=experiments/configs/digits_magnitude.py \
      --workdir=/tmp/run [--config.num_steps=2000 ...]

Re-running the same command resumes from the newest checkpoint in DIR; after
a finished run it prints the stored result and exits at once.

Multi-process (e.g. 2 CPU processes on one host, gloo collectives):
  --coordinator_address=localhost:12345 --num_processes=2 --process_id=K

Exit codes: 0 success, 2 bad input (config, flags, workdir of another run
or in use by another run), 1 failed run (e.g. non-finite loss; the last
good checkpoint is kept), 143 preempted by SIGTERM and 130 stopped by
SIGINT (a one-process run checkpoints the step it reached first; re-running
resumes with no step lost).
"""
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/configs/*.py).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "jax.distributed coordinator host:port.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes (jax.distributed).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index (jax.distributed).")


def _fail(message: str, code: int) -> None:
  print(f"launch.train: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(argv):
  """absl flag parsing with a one-line error and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0] if str(e) else repr(e), 2)
  except (AttributeError, KeyError) as e:  # config_flags: unknown field
    key = str(e).strip("\"'")
    culprit = next((a.split("=")[0] for a in argv
                    if a.startswith("--config.") and key in a), key)
    _fail(f"{culprit}: unknown config field {key!r}", 2)
  except (ValueError, TypeError, OSError, SyntaxError) as e:
    _fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
          2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
  if _CONFIG.value is None:
    _fail("--config is required", 2)
  try:  # config_flags defers load errors until the config is first read
    _CONFIG.value.to_dict()
  except Exception as e:  # pylint: disable=broad-except
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    _fail(f"--config={flags.FLAGS['config'].config_filename}: "
          f"{lines[-1] if lines else type(e).__name__}", 2)
  if not _WORKDIR.value:
    _fail("--workdir is required", 2)

  # Orbax logs every checkpoint step at INFO; keep the terminal readable.
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top
  if _COORDINATOR.value:
    # CPU collectives across processes (ignored by GPU/TPU backends); must
    # be set before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)

  from experiments import config_check  # pylint: disable=g-import-not-at-top
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  from experiments import signals  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top
  try:
    drivers.run(_CONFIG.value, _WORKDIR.value)
  except config_check.ConfigError as e:
    _fail(str(e), 2)
  except FileNotFoundError as e:
    _fail(str(e).splitlines()[0], 2)
  except train.NonFiniteLossError as e:
    _fail(str(e), 1)
  except signals.Preempted as e:  # checkpoint written: re-run resumes
    print(f"launch.train: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
