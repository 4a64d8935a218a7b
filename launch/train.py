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
import errno
import os
import re
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


def _config_path(argv) -> str:
  """The --config file named on the command line (for messages)."""
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return "?"


def _unknown_field(e: BaseException, argv) -> str:
  """`--config.X: unknown config field 'X' (did you mean 'Y'?)` from the
  KeyError/AttributeError that config_flags raises for an unknown field."""
  arg = e
  while isinstance(arg, BaseException):  # AttributeError(KeyError(text))
    arg = arg.args[0] if arg.args else str(arg)
  text = str(arg)
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  key = lines[0].strip("\"'") if lines else "?"
  if "has no attribute 'get_config" in text:
    return (f"--config={_config_path(argv)}: the file defines no "
            "get_config()")
  hint = next((re.search(r'Did you mean "([^"]+)"', l) for l in lines[1:]
               if "Did you mean" in l), None)
  culprit = next((a.split("=")[0] for a in argv
                  if a.startswith("--config.")
                  and a.split("=")[0].endswith("." + key)), f"config.{key}")
  suggestion = f" (did you mean {hint.group(1)!r}?)" if hint else ""
  return f"{culprit}: unknown config field {key!r}{suggestion}"


def parse_flags(argv):
  """absl flag parsing with a one-line error and exit code 2.

  Loading the config file runs its ``get_config()``, so any exception it
  raises is bad input too: one line naming the file, exit 2.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0] if str(e) else repr(e), 2)
  except (AttributeError, KeyError) as e:  # config_flags: unknown field
    _fail(_unknown_field(e, argv), 2)
  except SyntaxError as e:
    _fail(f"--config={_config_path(argv)}: SyntaxError: {e}", 2)
  except Exception as e:  # pylint: disable=broad-except  # get_config raised
    first = str(e).splitlines()[0] if str(e) else ""
    _fail(f"--config={_config_path(argv)}: {type(e).__name__}: {first}", 2)


def _check_distributed() -> None:
  """The multi-process flags: all three or none, a host:port address and
  0 <= process_id < num_processes (one line, exit 2)."""
  address, n, pid = (_COORDINATOR.value, _NUM_PROCESSES.value,
                     _PROCESS_ID.value)
  if address is None:
    if n is not None or pid is not None:
      _fail("--num_processes/--process_id need --coordinator_address="
            "HOST:PORT", 2)
    return
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    _fail(f"--coordinator_address={address}: expected HOST:PORT with a "
          "port in 1..65535", 2)
  if n is None or n < 1:
    _fail(f"--num_processes={n}: --coordinator_address needs "
          "--num_processes >= 1", 2)
  if pid is None or not 0 <= pid < n:
    _fail(f"--process_id={pid}: must be in [0, --num_processes={n})", 2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
  if _CONFIG.value is None:
    _fail("--config is required", 2)
  path = flags.FLAGS["config"].config_filename
  try:  # config_flags defers load errors until the config is first read
    config = _CONFIG.value
    if not hasattr(config, "to_dict"):
      _fail(f"--config={path}: get_config() returned "
            f"{type(config).__name__}, not an ml_collections.ConfigDict", 2)
    config.to_dict()
  except Exception as e:  # pylint: disable=broad-except
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    _fail(f"--config={path}: {lines[-1] if lines else type(e).__name__}", 2)
  if not _WORKDIR.value:
    _fail("--workdir is required", 2)
  _check_distributed()

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
  except Exception as e:  # pylint: disable=broad-except
    if not _out_of_space(e):
      raise
    print(f"launch.train: error: no space left on the device of "
          f"{_WORKDIR.value} ({_first_line(e)}); the checkpoints written "
          "before are intact: free space and re-run the same command to "
          "resume", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # orbax's writer threads die noisily at interpreter shutdown once the
    # disk is full; the message above is the last word, so leave now.
    os._exit(1)  # pylint: disable=protected-access


def _first_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"


def _out_of_space(e: BaseException | None) -> bool:
  """Whether `e` (or an exception it was raised from) is a full disk:
  ENOSPC, or tensorstore's RESOURCE_EXHAUSTED as orbax reports it."""
  seen = 0
  while e is not None and seen < 20:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
      return True
    text = str(e)
    if "No space left on device" in text or "RESOURCE_EXHAUSTED" in text:
      return True
    e, seen = e.__cause__ or e.__context__, seen + 1
  return False


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
