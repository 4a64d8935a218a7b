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

Executors (`--executor`, experiments/sweep_slurm.py):

  local           the default: subprocesses here, `--parallel` at a time.
  slurm           one submitit job array on a SLURM cluster, one task per
                  unfinished point running the same launch.train command:
      --executor=slurm [--slurm_partition=P] [--slurm_time=MIN]
      [--slurm_cpus_per_task=N] [--slurm_gpus_per_task=N]
      [--slurm_array_parallelism=N] [--nowait]
                  waits for the array and writes the results (`--nowait`:
                  prints the job id and the `--collect` command). A task
                  that hits its time limit or is preempted is requeued by
                  submitit and resumes from its checkpoint; re-submitting
                  submits only points neither finished nor still queued.
                  submitit's files go to DIR/slurm/.
  submitit_local  the slurm code path on this machine (submitit's local
                  executor; the tests use it).

`--collect` writes results.csv/md/png from DIR's finished runs, running
nothing.

Exit codes: 0 every run finished, 1 some run failed (each is reported with
its exit code and stderr tail; the others still ran), 2 bad input (a bad
grid entry, a config file that does not load, a workdir of another grid,
a bad or misplaced --slurm_* flag, --executor=slurm without SLURM; one
line, nothing written), 143 stopped by SIGTERM (the running runs got it
too and checkpointed; re-running resumes them), 130 interrupted. A run
preempted on its own (exit 143) is started again at once and resumes.
"""
import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from launch import cli

_CONFIG = flags.DEFINE_string("config", None, "Sweep config file (with "
                              "get_config() and get_sweep()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the sweep.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at a time.")
_DRY_RUN = flags.DEFINE_boolean(
    "dry_run", False, "Print the expanded grid (run names and commands) and "
    "exit without writing anything.")
_EXECUTOR = flags.DEFINE_enum(
    "executor", "local", ["local", "slurm", "submitit_local"],
    "local: subprocesses here; slurm: one submitit job array on SLURM; "
    "submitit_local: the slurm code path through submitit's local executor.")
_PARTITION = flags.DEFINE_string("slurm_partition", None,
                                 "SLURM partition (default: the cluster's).")
_TIME = flags.DEFINE_integer("slurm_time", 60, "Time limit of each task, "
                             "minutes (a task that hits it is requeued and "
                             "resumes).")
_CPUS = flags.DEFINE_integer("slurm_cpus_per_task", None,
                             "CPUs per task (default: the cluster's).")
_GPUS = flags.DEFINE_integer("slurm_gpus_per_task", 0, "GPUs per task.")
_ARRAY_PARALLELISM = flags.DEFINE_integer(
    "slurm_array_parallelism", None, "Tasks of the array running at a time "
    "(default: submitit's, 256; submitit_local: all).")
_WAIT = flags.DEFINE_boolean(
    "wait", True, "slurm: wait for the array, then write the results; "
    "--nowait: submit, print the job id and the --collect command.")
_COLLECT = flags.DEFINE_boolean(
    "collect", False, "Write results.csv/md/png from the finished runs of "
    "DIR and exit (runs nothing).")
_SLURM_FLAGS = ("slurm_partition", "slurm_time", "slurm_cpus_per_task",
                "slurm_gpus_per_task", "slurm_array_parallelism", "wait")


def _fail(message: str, code: int = 2) -> None:
  cli.fail("launch.sweep", message, code)


def parse_flags(argv):
  """absl flag parsing with a one-line error and exit code 2."""
  return cli.parse_flags("launch.sweep", argv)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
  if not _CONFIG.value:
    _fail("--config is required", 2)
  if not _WORKDIR.value and not _DRY_RUN.value:
    _fail("--workdir is required", 2)
  if _PARALLEL.value < 1:
    _fail(f"--parallel must be >= 1, got {_PARALLEL.value}", 2)
  executor = _EXECUTOR.value
  given = [f for f in _SLURM_FLAGS if flags.FLAGS[f].present]
  if executor == "local" and given:
    _fail(f"--{given[0]} needs --executor=slurm or submitit_local", 2)
  if executor != "local" and flags.FLAGS["parallel"].present:
    _fail(f"--parallel is for --executor=local; with --executor={executor} "
          "use --slurm_array_parallelism", 2)
  if _COLLECT.value and (_DRY_RUN.value or flags.FLAGS["executor"].present):
    _fail("--collect runs nothing: give it only --config and --workdir", 2)

  logging.set_verbosity(logging.WARNING)
  from experiments import locks  # pylint: disable=g-import-not-at-top
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  from experiments import sweep_slurm  # pylint: disable=g-import-not-at-top
  # Relative and ~ paths: absolute once, here (the points run elsewhere).
  workdir = locks.absolute(_WORKDIR.value) if _WORKDIR.value else None
  options = sweep_slurm.SlurmOptions(
      partition=_PARTITION.value, time_min=_TIME.value,
      cpus_per_task=_CPUS.value, gpus_per_task=_GPUS.value,
      array_parallelism=_ARRAY_PARALLELISM.value)
  try:
    options.check()
    if not _WAIT.value and executor != "slurm":
      raise sweep.SweepError("--nowait needs --executor=slurm (local "
                             "submitit jobs are this process' children)")
    if _COLLECT.value:
      s = sweep.load(_CONFIG.value, check_build=False)
      sys.exit(1 if sweep_slurm.collect(
          s, workdir, echo=lambda line: print(line, flush=True)) else 0)
    if executor != "local" and not _DRY_RUN.value:
      sweep_slurm.check_executor(executor)
    s = sweep.load(_CONFIG.value)
    if _DRY_RUN.value:
      workdir = workdir or "DIR"
      print(f"{len(s.points)} runs ({len(s.grids)} sub-grid(s), seeds "
            f"{s.seeds}):")
      for p in s.points:
        cmd = sweep.command(s, p, workdir)
        print(f"{p.name}\n  {shlex.join(['python', *cmd[1:]])}")
      return
    failed = sweep_slurm.execute(
        s, workdir, executor=executor, parallel=_PARALLEL.value,
        options=options, wait=_WAIT.value,
        echo=lambda line: print(line, flush=True))
  except sweep.SweepError as e:
    _fail(str(e), 2)
  except sweep.Stopped as e:  # its running runs checkpointed
    print(f"launch.sweep: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  except KeyboardInterrupt:
    print("launch.sweep: interrupted; re-run the same command to resume" + (
        " (a submitted SLURM array keeps running: re-running submits only "
        "what is neither finished nor queued)" if executor == "slurm"
        else ""), file=sys.stderr, flush=True)
    sys.exit(130)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
