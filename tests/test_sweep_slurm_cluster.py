"""A sweep on a real one-node SLURM cluster (`.ci/start-slurm`).

Four digits points are submitted as one job array (`launch.sweep
--executor=slurm --nowait`) while the same sweep runs locally. Once a
point's trainer has written a checkpoint mid-run:

* a plain `scancel` of its task: SLURM's SIGTERM makes the trainer
  checkpoint and exit 143, and the task requeues itself (what a preempted
  task does; inside the job a cancel and a preemption look the same) and
  resumes to the end;
* `scancel --signal=KILL <task>.0` of another's (its step, where the
  submitit worker and the trainer run; a SIGKILL of the whole job would be
  a cancel): both die at once, nothing requeues the task; re-submitting the
  sweep submits that point only (the others are finished or still queued
  or running: squeue, as this cluster has no accounting for sacct) and it
  resumes from its newest periodic checkpoint (the submitter waits for it:
  its result file says when it is done, as sacct cannot).

SLURM holds a requeued job for 2 minutes (its EligibleTime); the test
moves that to now (`scontrol update StartTime=now`).

`--collect` then writes results.csv, equal row by row (but wall time) to
the local sweep's. Skipped when `sinfo` does not answer, unless
SBN_REQUIRE_SLURM=1 (CI, after `.ci/start-slurm`): then it fails.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from test_sweep import ROOT, write_sweep

STEPS = 1000       # ~5 s of training at ~200 steps/s: the window to kill in
DEADLINE_S = 420   # the whole test, bounded
NAMES = ["optimizer=sgd,seed=0", "optimizer=sgd,seed=1",
         "optimizer=adam,seed=0", "optimizer=adam,seed=1"]
USABLE = ("idle", "mixed", "allocated", "completing")


def _slurm_down():
  """Why SLURM cannot run jobs here, or None when it can."""
  if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
    return "no SLURM commands (sinfo, sbatch) on PATH"
  try:
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                          text=True, timeout=30, check=False)
  except (OSError, subprocess.SubprocessError) as e:
    return f"sinfo failed: {e}"
  states = proc.stdout.split()
  if proc.returncode or not any(s.rstrip("*~#") in USABLE for s in states):
    return (f"sinfo: no usable node (exit {proc.returncode}, states "
            f"{states}, {proc.stderr.strip()[:200]})")
  return None


@pytest.fixture(name="slurm")
def fixture_slurm():
  why = _slurm_down()
  if why is not None:
    if os.environ.get("SBN_REQUIRE_SLURM") == "1":
      pytest.fail(f"SBN_REQUIRE_SLURM=1 but {why} (.ci/start-slurm starts "
                  "a one-node SLURM)")
    pytest.skip(why)


def _env():
  path = os.environ.get("PYTHONPATH")
  return dict(os.environ, JAX_PLATFORMS="cpu",
              PYTHONPATH=ROOT + (os.pathsep + path if path else ""))


def _sweep(*args, log=None):
  """Runs launch.sweep; in the background, its output to `log`, if given."""
  cmd = [sys.executable, "-m", "launch.sweep", *args]
  if log is not None:
    with open(log, "w") as f:
      return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=f,
                              stderr=subprocess.STDOUT)
  return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=DEADLINE_S)


def _submitted(workdir):
  path = os.path.join(workdir, "slurm", "submissions.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def _attempts(workdir, name):
  path = os.path.join(workdir, "attempts.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [r["rc"] for r in map(json.loads, f) if r["name"] == name]


def _finished(workdir, name):
  return os.path.exists(os.path.join(workdir, "runs", name, "summary.json"))


def _mid_run(workdir, name):
  """Whether the point's trainer has checkpointed a step before the end
  and not finished."""
  ckpt = os.path.join(workdir, "runs", name, "checkpoints")
  if _finished(workdir, name) or not os.path.isdir(ckpt):
    return False
  return any(d.isdigit() and 0 < int(d) < STEPS for d in os.listdir(ckpt))


def _queued(job_ids):
  """The job ids (array tasks) squeue lists as queued, running or
  completing."""
  if not job_ids:
    return set()
  proc = subprocess.run(
      ["squeue", "-h", "-r", "-o", "%i", "-j",
       ",".join(sorted({j.split("_")[0] for j in job_ids}))],
      capture_output=True, text=True, timeout=30, check=False)
  return set(proc.stdout.split()) & set(job_ids)


def _state(job_id):
  """squeue's state of a job ("" when it is not queued any more)."""
  proc = subprocess.run(["squeue", "-h", "-o", "%T", "-j", job_id],
                        capture_output=True, text=True, timeout=30,
                        check=False)
  return proc.stdout.strip()


def _poll(what, done, deadline):
  while not done():
    if time.time() > deadline:
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.1)


def _rows(workdir):
  with open(os.path.join(workdir, "results.csv")) as f:
    return [{k: v for k, v in r.items() if k != "wall_seconds"}
            for r in csv.DictReader(f)]


def test_slurm_sweep_cancel_kill_resubmit_matches_local(tmp_path, slurm):
  del slurm
  deadline = time.time() + DEADLINE_S
  path = write_sweep(tmp_path, [{"optimizer": ["sgd", "adam"]}],
                     seeds=(0, 1), num_steps=STEPS)
  local, workdir = str(tmp_path / "local"), str(tmp_path / "slurm")
  flags = [f"--config={path}", f"--workdir={workdir}", "--executor=slurm",
           "--slurm_partition=debug", "--slurm_cpus_per_task=1",
           "--slurm_time=10", "--nowait"]
  log = str(tmp_path / "local.log")
  local_proc = _sweep(f"--config={path}", f"--workdir={local}",
                      "--parallel=2", log=log)
  try:
    proc = _sweep(*flags)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "0 queued or running, 4 to submit" in proc.stdout, proc.stdout
    first = {s["name"]: s["job_id"] for s in _submitted(workdir)}
    assert sorted(first) == sorted(NAMES)
    assert len({j.split("_")[0] for j in first.values()}) == 1  # one array

    # Mid-run: a plain scancel of one task, a SIGKILL of another's.
    cancelled = killed = None
    while killed is None:
      for name in NAMES:
        if name != cancelled and _mid_run(workdir, name):
          if cancelled is None:
            subprocess.run(["scancel", first[name]], check=True)
            cancelled = name
          else:
            subprocess.run(["scancel", "--signal=KILL", first[name] + ".0"],
                           check=True)
            killed = name
          break
      else:
        assert time.time() < deadline, "no point checkpointed mid-run"
        assert not all(_finished(workdir, n) for n in NAMES
                       if n != cancelled), (
            "every point finished before one could be killed mid-run")
        time.sleep(0.1)

    # The killed task leaves the queue unfinished; the cancelled one
    # requeued itself (its trainer checkpointed on SIGTERM, exit 143).
    _poll(f"{killed}'s task to leave the queue",
          lambda: first[killed] not in _queued([first[killed]]), deadline)
    assert not _finished(workdir, killed)
    _poll(f"{cancelled}'s task to be requeued",
          lambda: _attempts(workdir, cancelled)[:1] == [143] and _state(
              first[cancelled]) in ("PENDING", ""), deadline)
    subprocess.run(["scontrol", "update", f"JobId={first[cancelled]}",
                    "StartTime=now"], check=False)  # (done, if "")

    # Re-submitting (and waiting) submits the killed point only.
    proc = _sweep(*flags[:-1])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    counts = re.search(r"4 runs \((\d) finished earlier, (\d) queued or "
                       r"running, 1 to submit\)", proc.stdout)
    assert counts and sum(map(int, counts.groups())) == 3, proc.stdout
    assert re.search(rf"\[\d/4\] {re.escape(killed)}  test accuracy",
                     proc.stdout), proc.stdout
    again = _submitted(workdir)[len(first):]
    assert [s["name"] for s in again] == [killed], again
    jobs = list(first.values()) + [again[0]["job_id"]]

    _poll("every point to finish",
          lambda: not _queued(jobs) and all(
              _finished(workdir, n) for n in NAMES), deadline)
    proc = _sweep(f"--config={path}", f"--workdir={workdir}", "--collect")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    local_proc.wait(timeout=max(1, deadline - time.time()))
    with open(log) as f:
      assert local_proc.returncode == 0, f.read()[-4000:]
  finally:
    if local_proc.poll() is None:
      local_proc.kill()
    ids = sorted({s["job_id"].split("_")[0] for s in _submitted(workdir)})
    if ids:  # (nothing left to cancel when it passed)
      subprocess.run(["scancel", *ids], check=False)

  assert _rows(workdir) == _rows(local)  # same accuracies, same rows
  assert _attempts(workdir, cancelled) == [143, 0]  # requeued by itself
  assert _attempts(workdir, killed) == [0]  # SIGKILL: no attempt recorded
  with open(os.path.join(workdir, "logs", cancelled + ".out")) as f:
    assert "Resuming" in f.read()
  with open(os.path.join(workdir, "logs", killed + ".out")) as f:
    assert re.search(r"Resuming .* from step [1-9]", f.read())
