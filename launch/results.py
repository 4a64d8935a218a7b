r"""Writes one README result table: `python -m launch.results --table=NAME`.

  python -m launch.results --table=main_job [--seeds=N] [--runs_dir=DIR] \
      [--update_readme]
  python -m launch.results --list

Runs the experiments behind the table that have not finished (each seed a
`launch.train` subprocess through the sweep machinery; finished runs are
skipped, killed ones resume), then writes `results/NAME.md` (title, table,
seeds, the exact commands, the machine: CPU model, cores, jax / jaxlib /
flax / optax versions, date, wall time), `results/NAME.csv` and, where the
table has a plot, `results/NAME.png`. `--seeds=N`: the first N seeds
(default: the table's). `--runs_dir`: the runs' workdirs (default
`results/runs/NAME`, git-ignored). `--update_readme`: also replace the
README's `<!-- results/NAME.md -->` block by the table. See
experiments/results.py.

Exit codes: 0 written, 1 a run failed (nothing written when a seed did not
finish), 2 bad input (an unknown table: one line naming it and the known
tables).
"""
import sys

from absl import app
from absl import flags
from absl import logging

from launch import cli

_TABLE = flags.DEFINE_string("table", None, "The table to write (--list "
                             "lists them).")
_SEEDS = flags.DEFINE_integer("seeds", None, "Number of seeds (the first N); "
                              "default: the table's.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "Workdirs of the runs "
                                "(default results/runs/NAME).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where NAME.md/.csv/.png go "
                               "(default results/).")
_LIST = flags.DEFINE_boolean("list", False, "List the tables and exit.")
_UPDATE_README = flags.DEFINE_boolean(
    "update_readme", False, "Replace the README's block of the table.")
_README = flags.DEFINE_string("readme", None, "The README --update_readme "
                              "rewrites (default the repository's).")


def _fail(message: str, code: int = 2) -> None:
  cli.fail("launch.results", message, code)


def parse_flags(argv):
  """absl flag parsing with a one-line error and exit code 2."""
  return cli.parse_flags("launch.results", argv)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
  logging.set_verbosity(logging.WARNING)
  from experiments import locks  # pylint: disable=g-import-not-at-top
  from experiments import results  # pylint: disable=g-import-not-at-top
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  if _LIST.value:
    for t in results.TABLES.values():
      print(f"{t.name}{' (tests only)' if t.test_only else ''}: {t.title} "
            f"({t.config}, seeds {list(t.seeds)})")
    return
  if not _TABLE.value:
    _fail("--table is required (--list lists the tables)", 2)
  readme = None
  if _UPDATE_README.value:
    readme = locks.absolute(_README.value) if _README.value else results.README
  try:
    code = results.main(
        _TABLE.value, seeds=_SEEDS.value,
        runs_dir=locks.absolute(_RUNS_DIR.value) if _RUNS_DIR.value else None,
        out_dir=(locks.absolute(_OUT_DIR.value) if _OUT_DIR.value
                 else results.RESULTS_DIR),
        readme=readme, echo=lambda line: print(line, flush=True))
  except (results.ResultsError, sweep.SweepError) as e:
    _fail(str(e), 2)
  except sweep.Stopped as e:
    print(f"launch.results: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  except KeyboardInterrupt:
    print("launch.results: interrupted; re-run the same command to resume",
          file=sys.stderr, flush=True)
    sys.exit(130)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
