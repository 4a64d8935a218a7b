"""Sweep executors: `local` subprocesses, or a submitit job array on SLURM.

`launch.sweep --executor=...` runs the unfinished points of a sweep (see
`experiments.sweep`) with one of `EXECUTORS`:

* `local`: `sweep.run`, each point's `launch.train` a subprocess of the
  sweep, `--parallel` at a time.
* `slurm`: one submitit job array (`AutoExecutor.submit_array`, sbatch
  `--array=0-(n-1)%parallelism`) of one task per unfinished point, with the
  partition, time limit, CPUs and GPUs per task of `SlurmOptions`. Each task
  is a `TrainTask`: it runs exactly what the local executor runs, the
  point's command (`sweep.command`: `python -m launch.train` with the
  point's overrides and its `DIR/runs/<name>`) as a subprocess in the
  repository root, logs appended to `DIR/logs/<name>.out|.err` and its
  attempt to `DIR/attempts.jsonl`, and returns the exit code. Resume and
  skip still come from the trainer: re-submitting the sweep submits only
  the points without `summary.json` (and not those whose last task is still
  queued or running, `DIR/slurm/submissions.jsonl`); a failed task is re-run
  by re-submitting, and resumes from its newest checkpoint.
* `submitit_local`: the same code path through submitit's `LocalExecutor`
  on this machine (the tests use it): each task a local submitit job,
  `array_parallelism` at a time.

submitit's files (pickled tasks, the workers' logs) go to `DIR/slurm/`.
With `wait` (the default) the submitter prints a line per finished task
and writes results.csv/md/png when the array has finished; without it, it
prints the job id and the `--collect` command that writes them later.

Preemption and time limits (submitit's checkpointing: `TrainTask` is a
`submitit.helpers.Checkpointable`; sbatch gets `--signal=USR2@delay` with
`delay = min(SIGNAL_DELAY_S, time / 2)`):

* Time limit: USR2 reaches the submitit worker `delay` seconds before the
  limit; submitit calls `TrainTask.checkpoint`, which sends SIGTERM to the
  trainer, waits for it to checkpoint its step and exit (143), and returns
  a `DelayedSubmission` of the task; submitit requeues the array task
  (`scontrol requeue`) and the re-run trainer resumes from that
  checkpoint.
* Preemption: SLURM sends SIGTERM to every process of the job; the trainer
  checkpoints and exits 143 (submitit's worker ignores SIGTERM). The task
  then asks for the re-run itself: it sends itself submitit's preemption
  signal, so the same checkpoint-and-requeue runs.

Either is requeued at most `MAX_REQUEUES` times per submission; then the
task ends (143, or submitit's "timed-out too many times") and re-submitting
the sweep resumes it.

The trainer ignores submitit's signal (`submitit.JobEnvironment.USR_SIG`,
set to SIG_IGN before exec): SLURM signals every process of the job step,
and USR2's default action would kill the trainer without a checkpoint.

On a real SLURM (22.05, one node, no accounting storage: `.ci/start-slurm`
and tests/test_sweep_slurm_cluster.py) the array's tasks run in the
repository root with the submitter's environment (sbatch exports it), and
their results equal the local executor's. A plain `scancel` of a running
task is taken for a preemption: SLURM sends SIGTERM, the trainer
checkpoints and exits 143, and the task requeues itself (inside the job a
cancelled and a preempted job look alike, both COMPLETING); cancel it again
while it is pending to stop it. SLURM holds a requeued task for 2 minutes
(its EligibleTime) before it runs again. A task killed outright (SIGKILL
of its step) stays unfinished; re-submitting resumes it from its newest
checkpoint. Without accounting storage sacct fails and submitit's state is
UNKNOWN: `in_flight` then asks squeue, and so does a waiting submitter
(every `SQUEUE_EVERY_S`), which reports a task squeue lists no more and
that wrote no result as failed instead of waiting for it for ever.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from typing import Callable

import submitit

from experiments import signals
from experiments import sweep as sweep_lib

EXECUTORS = ("local", "slurm", "submitit_local")
SIGNAL_DELAY_S = 120  # USR2 this long before the time limit (at most)
MAX_REQUEUES = 10     # requeues of one task per submission, on time limits
                      # (submitit's max_num_timeout) and on preemptions
SQUEUE_EVERY_S = 10   # a waiting submitter asks squeue this often about
                      # tasks sacct cannot see (no accounting storage)
_ACTIVE = "submissions.jsonl"


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
  """What each array task asks SLURM for (None: the cluster's default)."""
  partition: str | None = None
  time_min: int = 60
  cpus_per_task: int | None = None
  gpus_per_task: int = 0
  array_parallelism: int | None = None  # None: all tasks at once

  def check(self) -> None:
    """Raises SweepError (one line) for a value SLURM would refuse."""
    bad = [(self.time_min < 1, f"--slurm_time must be >= 1 (minutes), got "
                               f"{self.time_min}"),
           (self.cpus_per_task is not None and self.cpus_per_task < 1,
            f"--slurm_cpus_per_task must be >= 1, got {self.cpus_per_task}"),
           (self.gpus_per_task < 0,
            f"--slurm_gpus_per_task must be >= 0, got {self.gpus_per_task}"),
           (self.array_parallelism is not None and self.array_parallelism < 1,
            "--slurm_array_parallelism must be >= 1, got "
            f"{self.array_parallelism}"),
           (self.partition is not None and not self.partition.strip(),
            "--slurm_partition must not be empty")]
    for is_bad, message in bad:
      if is_bad:
        raise sweep_lib.SweepError(message)

  @property
  def signal_delay_s(self) -> int:
    return min(SIGNAL_DELAY_S, 30 * self.time_min)

  def parameters(self, name: str) -> dict:
    """`AutoExecutor.update_parameters` keyword arguments (one task of one
    node per array element, so GPUs per node = GPUs per task)."""
    params = {"name": name, "timeout_min": self.time_min, "tasks_per_node": 1,
              "nodes": 1, "slurm_signal_delay_s": self.signal_delay_s,
              "slurm_additional_parameters": {"chdir": sweep_lib.ROOT}}
    if self.cpus_per_task is not None:
      params["cpus_per_task"] = self.cpus_per_task
    if self.gpus_per_task:
      params["gpus_per_node"] = self.gpus_per_task
    if self.partition is not None:
      params["slurm_partition"] = self.partition
    if self.array_parallelism is not None:
      params["slurm_array_parallelism"] = self.array_parallelism
    return params


def _usr_signal() -> int:
  """submitit's preemption / time-out signal (SIGUSR2 unless the
  SUBMITIT_PREEMPT_SIGNAL environment variable names another)."""
  return int(signal.Signals["SIG" + submitit.JobEnvironment.USR_SIG])


class TrainTask(submitit.helpers.Checkpointable):
  """One array task: a point's `launch.train` command as a subprocess.

  Returns its exit code. `checkpoint` (submitit calls it on its signal)
  stops the trainer with SIGTERM, waits for its checkpoint, and resubmits
  the task; a trainer that exits 143 on its own (preempted) makes the task
  ask for that too (see the module docstring).
  """

  def __init__(self, name: str, cmd: list, workdir: str,
               stop_timeout_s: float = 0.75 * SIGNAL_DELAY_S):
    self.name, self.cmd, self.workdir = name, list(cmd), workdir
    self.stop_timeout_s = stop_timeout_s
    self.requeues = 0
    self._proc = None
    self._start = 0.0

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_proc"] = None  # a Popen does not pickle (and is not resumed)
    return state

  def __call__(self) -> int:
    logs = os.path.join(self.workdir, "logs")
    os.makedirs(logs, exist_ok=True)
    out, err = (os.path.join(logs, self.name + e) for e in (".out", ".err"))
    self._start = time.time()
    self._proc, _ = sweep_lib.start_run(self.cmd, out, err,
                                        ignore_signals=(_usr_signal(),))
    # Not Popen.wait(): blocked, it holds the Popen's lock, and
    # `checkpoint`, run by submitit's signal handler inside this loop, could
    # not reap the trainer.
    while (rc := self._proc.poll()) is None:
      time.sleep(0.5)
    self._finished(rc)
    handler = signal.getsignal(_usr_signal())
    if (rc == signals.EXIT_PREEMPTED and self.requeues < MAX_REQUEUES
        and callable(handler)):  # inside a submitit job: requeue there
      self.requeues += 1
      # submitit's handler runs now: it calls `checkpoint`, requeues the
      # task and exits (or raises when it may not requeue any more).
      os.kill(os.getpid(), _usr_signal())
      time.sleep(60)
    return rc

  def _finished(self, rc: int) -> None:
    self._proc = None
    sweep_lib.record_attempt(self.workdir, {
        "name": self.name, "rc": rc,
        "seconds": round(time.time() - self._start, 2)})

  def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
    """Stops a running trainer (SIGTERM: it checkpoints its step, exit 143)
    and returns this task to be run again; it resumes there."""
    proc = self._proc
    if proc is not None:
      proc.send_signal(signal.SIGTERM)
      deadline = time.time() + self.stop_timeout_s
      while proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
      self._finished(proc.returncode if proc.returncode is not None else -9)
    return super().checkpoint(*args, **kwargs)


def check_executor(executor: str) -> None:
  """SweepError (one line) for an unknown executor or SLURM absent here."""
  if executor not in EXECUTORS:
    raise sweep_lib.SweepError(f"--executor={executor}: not one of "
                               f"{', '.join(EXECUTORS)}")
  if executor == "slurm" and submitit.SlurmExecutor.affinity() <= 0:
    raise sweep_lib.SweepError(
        "--executor=slurm: no SLURM here (srun not found); "
        "--executor=submitit_local runs the same path on this machine")


def make_executor(workdir: str, executor: str, options: SlurmOptions,
                  name: str):
  """A submitit AutoExecutor for `executor` ('slurm' or 'submitit_local')
  writing to DIR/slurm/<job id>/."""
  check_executor(executor)
  ex = submitit.AutoExecutor(
      folder=os.path.join(workdir, "slurm", "%j"),
      cluster="slurm" if executor == "slurm" else "local",
      slurm_max_num_timeout=MAX_REQUEUES, local_max_num_timeout=MAX_REQUEUES)
  ex.update_parameters(**options.parameters(name))
  return ex


def _submissions(workdir: str) -> dict:
  """name -> the job id of its last task submitted to SLURM."""
  path = os.path.join(workdir, "slurm", _ACTIVE)
  out = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        if line.strip():
          row = json.loads(line)
          if row.get("executor") == "slurm":
            out[row["name"]] = row["job_id"]
          else:  # a local task of a later submission: nothing in flight
            out.pop(row["name"], None)
  return out


# sacct states of a job that will still run (a requeued one included).
ACTIVE_STATES = frozenset({
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
    "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING",
    "STAGE_OUT", "STOPPED"})


def _squeue_active(job_ids: list) -> set | None:
  """The `job_ids` (array tasks `<job>_<i>`) squeue lists as still queued
  or running: one call, every array task on its own line (-r); a job id
  squeue no longer knows is not active. None when squeue fails."""
  mains = sorted({j.split("_")[0] for j in job_ids})
  try:
    proc = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(mains)],
        capture_output=True, text=True, timeout=60, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  if proc.returncode and "Invalid job id" not in proc.stderr:
    return None
  rows = [line.split("|") for line in proc.stdout.splitlines() if "|" in line]
  return {job for job, state in rows if state.strip() in ACTIVE_STATES}


def _lost(jobs: list) -> set:
  """The ids of the SLURM `jobs` that ended without a result where sacct
  cannot say so (no accounting storage: submitit's state stays UNKNOWN and
  `done()` never turns true): squeue lists them no more and they wrote no
  result."""
  unknown = [j for j in jobs if j.state == "UNKNOWN"]
  queued = _squeue_active([j.job_id for j in unknown]) if unknown else None
  if queued is None:
    return set()
  return {j.job_id for j in unknown if j.job_id not in queued
          and not j.paths.result_pickle.exists()}


def in_flight(workdir: str, names: list) -> dict:
  """name -> job id, for the `names` whose last SLURM task is still
  queued or running (one sacct call, through submitit's watcher; a job
  sacct does not know is not in flight). Where sacct knows none of them
  (state UNKNOWN: a cluster without accounting storage, where sacct
  fails), squeue says which are still queued or running."""
  last = _submissions(workdir)
  folder = os.path.join(workdir, "slurm", "%j")
  jobs = {name: submitit.SlurmJob(folder=folder, job_id=last[name])
          for name in names if name in last}
  if not jobs:
    return {}
  submitit.SlurmJob.watcher.update()
  states = {name: (job.state.split() or [""])[0].upper()
            for name, job in jobs.items()}
  if all(state == "UNKNOWN" for state in states.values()):
    queued = _squeue_active([job.job_id for job in jobs.values()]) or set()
    return {name: job.job_id for name, job in jobs.items()
            if job.job_id in queued}
  return {name: job.job_id for name, job in jobs.items()
          if states[name] in ACTIVE_STATES}


def _record_submission(workdir: str, name: str, job_id: str,
                       executor: str) -> None:
  with open(os.path.join(workdir, "slurm", _ACTIVE), "a") as f:
    f.write(json.dumps({"name": name, "job_id": job_id, "executor": executor,
                        "time": round(time.time(), 1)}) + "\n")


def submit(sweep: sweep_lib.Sweep, workdir: str, *, executor: str = "slurm",
           options: SlurmOptions = SlurmOptions(), wait: bool = True,
           echo: Callable[[str], None] = print) -> int:
  """Submits the unfinished points as one submitit array; with `wait`,
  reports each finished task and writes results.csv/md/png. Returns the
  number of failed tasks (0 when not waiting)."""
  options.check()
  if not wait and executor != "slurm":
    raise sweep_lib.SweepError("--nowait needs --executor=slurm (local "
                               "submitit jobs are this process' children)")
  if executor == "local":
    raise sweep_lib.SweepError("--executor=local: use sweep.run")
  check_executor(executor)
  lock = sweep_lib.prepare_workdir(sweep, workdir)
  try:
    ex = make_executor(workdir, executor, options,
                       "sweep:" + os.path.basename(sweep.config_path))
    n = len(sweep.points)
    unfinished = [p for p in sweep.points
                  if sweep_lib.read_summary(workdir, p) is None]
    active = (in_flight(workdir, [p.name for p in unfinished])
              if executor == "slurm" else {})
    todo = [p for p in unfinished if p.name not in active]
    echo(f"sweep: {n} runs ({n - len(unfinished)} finished earlier, "
         f"{len(active)} queued or running, {len(todo)} to submit) in "
         f"{workdir}")
    k = 0
    for p in sweep.points:
      if p not in unfinished:
        k += 1
        f = sweep_lib.read_summary(workdir, p)["final"]
        echo(f"[{k}/{n}] {p.name}  finished earlier  test accuracy "
             f"{f['test_accuracy']:.4f}")
      elif p.name in active:
        echo(f"{p.name}  queued or running in job {active[p.name]}")
    stop_s = 0.75 * options.signal_delay_s  # the trainer's time to stop
    tasks = [TrainTask(p.name, sweep_lib.command(sweep, p, workdir), workdir,
                       stop_timeout_s=stop_s) for p in todo]
    if executor == "slurm":  # one array, SLURM keeps the parallelism
      jobs = ex.submit_array(tasks) if tasks else []
      for p, job in zip(todo, jobs):
        _record_submission(workdir, p.name, job.job_id, executor)
      if jobs:
        echo(f"submitted {len(jobs)} task(s) as job array "
             f"{jobs[0].job_id.split('_')[0]}; submitit logs in "
             f"{os.path.join(workdir, 'slurm')}")
      if not wait:
        echo("not waiting; when the array has finished, write the results "
             f"with: python -m launch.sweep --config={sweep.config_path} "
             f"--workdir={workdir} --collect")
        return 0
      pending = list(zip(todo, jobs))
      queue = []
    else:  # LocalExecutor: one job per task, array_parallelism at a time
      pending, queue = [], list(zip(todo, tasks))
      if tasks:
        echo(f"submitting {len(tasks)} task(s) to submitit's local executor "
             f"({options.array_parallelism or len(tasks)} at a time); "
             f"submitit logs in {os.path.join(workdir, 'slurm')}")
    failed = 0
    limit = options.array_parallelism or len(tasks) or 1
    checked = time.time()
    while pending or queue:
      while queue and len(pending) < limit:
        p, task = queue.pop(0)
        job = ex.submit(task)
        _record_submission(workdir, p.name, job.job_id, executor)
        pending.append((p, job))
      time.sleep(0.5)
      lost = set()
      if executor == "slurm" and time.time() - checked > SQUEUE_EVERY_S:
        lost, checked = _lost([job for _, job in pending]), time.time()
      for p, job in list(pending):
        if job.job_id in lost or job.done():
          pending.remove((p, job))
          k += 1
          failed += _report(workdir, p, job, k, n, echo,
                            lost=job.job_id in lost)
    table = sweep_lib.write_results(sweep, workdir)
    echo(table)
    if failed:
      echo(f"sweep: {failed} of {len(todo)} submitted runs failed (logs in "
           f"{os.path.join(workdir, 'logs')}); re-submit to re-run them")
    return failed
  finally:
    lock.close()


def _report(workdir: str, p: sweep_lib.Point, job, k: int, n: int,
            echo, lost: bool = False) -> int:
  """Prints a finished task's line; returns 1 if it failed, else 0."""
  if lost:  # (job.result() would wait for it for ever)
    rc, why = None, ("the task ended without a result (killed?); SLURM "
                     "lists it no more")
  else:
    try:
      rc, why = job.result(), ""
    except Exception as e:  # pylint: disable=broad-except
      rc, why = None, _first_line(e)
  mine = [a for a in sweep_lib.attempts(workdir) if a["name"] == p.name]
  secs = mine[-1]["seconds"] if mine else 0.0
  summary = sweep_lib.read_summary(workdir, p)
  if rc == 0 and summary is not None:
    echo(f"[{k}/{n}] {p.name}  test accuracy "
         f"{summary['final']['test_accuracy']:.4f}  {secs:.1f} s")
    return 0
  tail = why or sweep_lib.log_tail(os.path.join(workdir, "logs",
                                                p.name + ".err"))
  echo(f"[{k}/{n}] {p.name}  FAILED (exit {rc}, job {job.job_id}) after "
       f"{secs:.1f} s: {tail}")
  return 1


def _first_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  return f"{type(e).__name__}: {lines[0] if lines else ''}"


def collect(sweep: sweep_lib.Sweep, workdir: str,
            echo: Callable[[str], None] = print) -> int:
  """Writes results.csv/md/png from the finished runs (runs nothing);
  returns the number of failed runs."""
  if not os.path.exists(os.path.join(workdir, "sweep.json")):
    raise sweep_lib.SweepError(f"--collect: {workdir} holds no sweep.json "
                               "(nothing was run there)")
  lock = sweep_lib.prepare_workdir(sweep, workdir)
  try:
    table = sweep_lib.write_results(sweep, workdir)
  finally:
    lock.close()
  echo(table)
  rows = sweep_lib.collect(sweep, workdir)
  return sum(r["status"] == "failed" for r in rows)


def execute(sweep: sweep_lib.Sweep, workdir: str, *, executor: str = "local",
            parallel: int = 1, options: SlurmOptions = SlurmOptions(),
            wait: bool = True, echo: Callable[[str], None] = print) -> int:
  """Runs a sweep's unfinished points with one of EXECUTORS; returns the
  number of failed runs."""
  if executor == "local":
    return sweep_lib.run(sweep, workdir, parallel=parallel, echo=echo)
  if executor not in EXECUTORS:
    raise sweep_lib.SweepError(f"--executor={executor}: not one of "
                               f"{', '.join(EXECUTORS)}")
  return submit(sweep, workdir, executor=executor, options=options,
                wait=wait, echo=echo)
