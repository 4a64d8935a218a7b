r"""Runs a grid sweep: `python -m launch.sweep --config=FILE --workdir=DIR`.

  python -m launch.sweep --config=experiments/configs/ablation_digits.py \
      --workdir=/tmp/ablation [--parallel=2] [--dry_run]

FILE is a config file with `get_config()` (the base training config) and
`get_sweep()` (sub-grids of `{"config.field.path": [values]}` and `seeds`;
see experiments/sweep.py). Each grid point trains in DIR/runs/<name> as a
`python -m launch.train` subprocess, `--parallel` at a time; one progress
line per finished run. Re-running the same command skips finished runs and
resumes killed ones from their newest checkpoint. Writes DIR/sweep.json,
results.csv, results.md (printed at the end) and results.png.

Exit codes: 0 every run finished, 1 some run failed (each is reported with
its exit code and stderr tail; the others still ran), 2 bad input (a bad
grid entry, a config file that does not load, a workdir of another grid;
one line, nothing written), 143 stopped by SIGTERM (the running runs got
it too and checkpointed; re-running resumes them), 130 interrupted. A run
preempted on its own (exit 143) is started again at once and resumes.
"""
import shlex
import sys

from absl import app
from absl import flags
from absl import logging

_CONFIG = flags.DEFINE_string("config", None, "Sweep config file (with "
                              "get_config() and get_sweep()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the sweep.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at a time.")
_DRY_RUN = flags.DEFINE_boolean(
    "dry_run", False, "Print the expanded grid (run names and commands) and "
    "exit without writing anything.")


def _fail(message: str, code: int) -> None:
  print(f"launch.sweep: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(argv):
  """absl flag parsing with a one-line error and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0] if str(e) else repr(e), 2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
  if not _CONFIG.value:
    _fail("--config is required", 2)
  if not _WORKDIR.value and not _DRY_RUN.value:
    _fail("--workdir is required", 2)
  if _PARALLEL.value < 1:
    _fail(f"--parallel must be >= 1, got {_PARALLEL.value}", 2)

  logging.set_verbosity(logging.WARNING)
  from experiments import locks  # pylint: disable=g-import-not-at-top
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  # Relative and ~ paths: absolute once, here (the points run elsewhere).
  workdir = locks.absolute(_WORKDIR.value) if _WORKDIR.value else None
  try:
    s = sweep.load(_CONFIG.value)
    if _DRY_RUN.value:
      workdir = workdir or "DIR"
      print(f"{len(s.points)} runs ({len(s.grids)} sub-grid(s), seeds "
            f"{s.seeds}):")
      for p in s.points:
        cmd = sweep.command(s, p, workdir)
        print(f"{p.name}\n  {shlex.join(['python', *cmd[1:]])}")
      return
    failed = sweep.run(s, workdir, parallel=_PARALLEL.value,
                       echo=lambda line: print(line, flush=True))
  except sweep.SweepError as e:
    _fail(str(e), 2)
  except sweep.Stopped as e:  # its running runs checkpointed
    print(f"launch.sweep: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  except KeyboardInterrupt:
    print("launch.sweep: interrupted; re-run the same command to resume",
          file=sys.stderr, flush=True)
    sys.exit(130)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
