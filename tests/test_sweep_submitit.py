"""Sweeps through submitit (`experiments.sweep_slurm`, `launch.sweep
--executor=slurm|submitit_local`), on this machine with submitit's
LocalExecutor: the SLURM code path without SLURM.

A digits point run as a submitit task gives the local executor's result;
re-submitting submits only the unfinished point; `--collect` writes the
results; a preempted task (its trainer exits 143) and a timed-out one
(submitit's USR2 reaches the worker) are requeued by submitit and finish;
bad flags are one line and exit 2.
"""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import submitit

from experiments import sweep as sweep_lib
from experiments import sweep_slurm
from test_sweep import ROOT, error_lines, launch, write_sweep

NAMES = ["optimizer=sgd,seed=0", "optimizer=adam,seed=0"]


def _rows(workdir):
  with open(os.path.join(workdir, "results.csv")) as f:
    return [{k: v for k, v in r.items() if k != "wall_seconds"}
            for r in csv.DictReader(f)]


def test_submitit_local_matches_local_resubmits_only_unfinished(tmp_path):
  path = write_sweep(tmp_path, [{"optimizer": ["sgd", "adam"]}],
                     num_steps=100)
  local = tmp_path / "local"
  proc = launch(f"--config={path}", f"--workdir={local}", "--parallel=2")
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

  # The same sweep where point 1 finished and point 2 did not: submitting
  # runs only point 2, as one submitit task.
  sub = tmp_path / "submitit"
  shutil.copytree(local, sub)
  shutil.rmtree(sub / "runs" / NAMES[1])
  for f in ("results.csv", "results.md", "results.png", "attempts.jsonl"):
    os.remove(sub / f)
  shutil.rmtree(sub / "logs")
  proc = launch(f"--config={path}", f"--workdir={sub}",
                "--executor=submitit_local", "--slurm_time=10")
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  out = proc.stdout
  assert "2 runs (1 finished earlier, 0 queued or running, 1 to submit)" in (
      out), out
  assert "submitting 1 task(s) to submitit's local executor" in out
  assert f"[1/2] {NAMES[0]}  finished earlier" in out
  assert f"[2/2] {NAMES[1]}  test accuracy" in out
  submitted = [json.loads(l) for l in open(sub / "slurm" /
                                           "submissions.jsonl")]
  assert [s["name"] for s in submitted] == [NAMES[1]]
  assert os.path.isdir(sub / "slurm" / submitted[0]["job_id"])
  assert _rows(sub) == _rows(local)  # same accuracies, same rows
  with open(sub / "logs" / f"{NAMES[1]}.out") as f:
    assert "Training:" in f.read()

  # --collect rewrites the results from the runs, running nothing.
  for f in ("results.csv", "results.md", "results.png"):
    os.remove(sub / f)
  proc = launch(f"--config={path}", f"--workdir={sub}", "--collect")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert _rows(sub) == _rows(local)
  assert (sub / "results.md").read_text() in proc.stdout
  assert (sub / "results.png").read_bytes()[:4] == b"\x89PNG"
  assert len(open(sub / "slurm" / "submissions.jsonl").readlines()) == 1


# A stand-in trainer: the first attempt is preempted (exit 143 on its own)
# or, with "timeout", sends submitit's signal to its worker and checkpoints
# on the SIGTERM that follows; the second attempt finishes.
FAKE = """
import os, signal, sys, time
marker, mode = sys.argv[1], sys.argv[2]
if signal.getsignal(signal.SIGUSR2) != signal.SIG_IGN:
  sys.exit(3)  # submitit's signal would kill the trainer
if os.path.exists(marker):
  print("resumed")
  sys.exit(0)
open(marker, "w").close()
if mode == "preempted":
  sys.exit(143)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
os.kill(os.getppid(), signal.SIGUSR2)
time.sleep(60)
sys.exit(4)
"""


def _requeued(tmp_path, mode):
  workdir = str(tmp_path)
  script = tmp_path / "fake.py"
  script.write_text(FAKE)
  task = sweep_slurm.TrainTask(
      "p", [sys.executable, str(script), str(tmp_path / "marker"), mode],
      workdir)
  ex = sweep_slurm.make_executor(workdir, "submitit_local",
                                 sweep_slurm.SlurmOptions(time_min=5), "t")
  job = ex.submit(task)
  assert job.result() == 0, job.stderr()
  tries = [json.loads(l) for l in open(tmp_path / "attempts.jsonl")]
  assert [t["rc"] for t in tries] == [143, 0], tries
  assert "resumed" in open(tmp_path / "logs" / "p.out").read()
  return job


def test_preempted_task_is_requeued_and_resumes(tmp_path):
  _requeued(tmp_path, "preempted")


def test_timed_out_task_checkpoints_and_is_requeued(tmp_path):
  job = _requeued(tmp_path, "timeout")
  assert "Calling checkpoint method" in job.stdout(), job.stdout()


def test_task_outside_submitit_returns_143(tmp_path):
  script = tmp_path / "fake.py"
  script.write_text(FAKE)
  task = sweep_slurm.TrainTask(
      "p", [sys.executable, str(script), str(tmp_path / "m"), "preempted"],
      str(tmp_path))
  assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
  assert task() == 143  # no submitit handler: nothing to requeue with
  assert isinstance(task.checkpoint(), submitit.helpers.DelayedSubmission)


def _without_slurm(*args):
  """`launch` with no `srun` on PATH (CI starts a one-node SLURM)."""
  path = os.pathsep.join(
      d for d in os.environ["PATH"].split(os.pathsep)
      if not os.path.exists(os.path.join(d or ".", "srun")))
  return subprocess.run([sys.executable, "-m", "launch.sweep", *args],
                        cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu",
                                           PATH=path),
                        capture_output=True, text=True, timeout=600)


def test_bad_flags_exit_2_nothing_written(tmp_path):
  path = write_sweep(tmp_path, [{"optimizer": ["sgd"]}])
  workdir = tmp_path / "w"
  for flags, words in [
      (["--executor=submitit_local", "--slurm_time=0"], "--slurm_time"),
      (["--executor=nope"], "executor"),
      (["--slurm_partition=gpu"], "--executor"),
      (["--executor=slurm"], "submitit_local"),  # no SLURM (srun) here
      (["--collect"], "sweep.json"),
  ]:
    proc = _without_slurm(f"--config={path}", f"--workdir={workdir}", *flags)
    assert proc.returncode == 2, (flags, proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and words in lines[0], (flags, proc.stderr)
    assert not workdir.exists(), flags


@pytest.mark.parametrize("kwargs,words", [
    ({"time_min": 0}, "--slurm_time"),
    ({"cpus_per_task": 0}, "--slurm_cpus_per_task"),
    ({"gpus_per_task": -1}, "--slurm_gpus_per_task"),
    ({"array_parallelism": 0}, "--slurm_array_parallelism"),
    ({"partition": " "}, "--slurm_partition"),
])
def test_bad_slurm_options(kwargs, words):
  with pytest.raises(sweep_lib.SweepError, match=words):
    sweep_slurm.SlurmOptions(**kwargs).check()


def test_slurm_parameters():
  params = sweep_slurm.SlurmOptions(
      partition="gpu", time_min=3, cpus_per_task=4, gpus_per_task=1,
      array_parallelism=8).parameters("sweep:x.py")
  assert params == {
      "name": "sweep:x.py", "timeout_min": 3, "tasks_per_node": 1,
      "nodes": 1, "slurm_signal_delay_s": 90, "cpus_per_task": 4,
      "gpus_per_node": 1, "slurm_partition": "gpu",
      "slurm_array_parallelism": 8,
      "slurm_additional_parameters": {"chdir": sweep_lib.ROOT}}
  with pytest.raises(sweep_lib.SweepError, match="--nowait"):
    sweep_slurm.submit(None, "/nonexistent", executor="submitit_local",
                       wait=False)


FAKE_SLURM = {  # just enough of SLURM's commands for submitit to submit
    "srun": "#!/bin/sh\nexit 0\n",
    "sbatch": "#!/bin/sh\ncp \"$1\" \"$FAKE_SLURM_DIR/batch.sh\"\n"
              "echo \"Submitted batch job 4242\"\n",
    "sacct": "#!/bin/sh\nprintf 'JobID|State|NodeList\\n"
             "4242_[0-1]|%s|node1\\n' \"$(cat $FAKE_SLURM_DIR/state)\"\n",
    "squeue": "#!/bin/sh\nexit 0\n",  # (asked only when sacct knows none)
}


def _fake_slurm_env(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, text in FAKE_SLURM.items():
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)
  return dict(os.environ, JAX_PLATFORMS="cpu", FAKE_SLURM_DIR=str(tmp_path),
              PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_submits_one_array_and_skips_queued_points(tmp_path,
                                                        monkeypatch):
  """The slurm path up to sbatch (fake SLURM commands on PATH): one array
  with the asked resources; re-submitting skips the queued points."""
  env = _fake_slurm_env(tmp_path)
  path = write_sweep(tmp_path, [{"optimizer": ["sgd", "adam"]}])
  workdir = tmp_path / "w"
  cmd = [sys.executable, "-m", "launch.sweep", f"--config={path}",
         f"--workdir={workdir}", "--executor=slurm", "--nowait",
         "--slurm_partition=gpu", "--slurm_time=30",
         "--slurm_cpus_per_task=2", "--slurm_array_parallelism=1"]
  run = lambda: subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=300)
  proc = run()
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "0 queued or running, 2 to submit" in proc.stdout
  assert "submitted 2 task(s) as job array 4242" in proc.stdout
  assert "--collect" in proc.stdout
  batch = (tmp_path / "batch.sh").read_text()
  for line in ["--array=0-1%1", "--partition=gpu", "--time=30",
               "--cpus-per-task=2", "--signal=USR2@120", f"--chdir={ROOT}",
               f"--output={workdir}/slurm/%A_%a/%A_%a_0_log.out"]:
    assert f"#SBATCH {line}\n" in batch, batch
  submitted = [json.loads(l) for l in open(workdir / "slurm" /
                                           "submissions.jsonl")]
  assert [(s["name"], s["job_id"]) for s in submitted] == [
      (NAMES[0], "4242_0"), (NAMES[1], "4242_1")]
  os.remove(tmp_path / "batch.sh")
  (tmp_path / "state").write_text("RUNNING")
  proc = run()  # both tasks still queued (sacct): nothing is submitted
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "2 queued or running, 0 to submit" in proc.stdout, proc.stdout
  assert f"{NAMES[1]}  queued or running in job 4242_1" in proc.stdout
  assert not (tmp_path / "batch.sh").exists()
  # Requeued: in flight. Ended without summary.json (failed, cancelled,
  # unknown to sacct): not, so the next submission submits them again.
  # (submitit's watcher keeps an ended state: one launch asks once.)
  for key in ("PATH", "FAKE_SLURM_DIR"):
    monkeypatch.setenv(key, env[key])
  for state in ("REQUEUED", "FAILED", "CANCELLED by 0", ""):
    (tmp_path / "state").write_text(state)
    assert sweep_slurm.in_flight(str(workdir), NAMES) == (
        {NAMES[0]: "4242_0", NAMES[1]: "4242_1"} if state == "REQUEUED"
        else {}), state


def test_waiting_submitter_reports_tasks_lost_without_sacct(tmp_path):
  """Without accounting storage sacct knows no task (state UNKNOWN): a
  task squeue lists no more that wrote no result is reported failed
  instead of waited for for ever (fake SLURM: the tasks never run)."""
  env = _fake_slurm_env(tmp_path)
  (tmp_path / "state").write_text("")
  path = write_sweep(tmp_path, [{"optimizer": ["sgd", "adam"]}])
  workdir = tmp_path / "w"
  proc = subprocess.run(
      [sys.executable, "-m", "launch.sweep", f"--config={path}",
       f"--workdir={workdir}", "--executor=slurm"], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
  for i, name in enumerate(NAMES):
    assert re.search(rf"{re.escape(name)}  FAILED \(exit None, job "
                     rf"4242_{i}\) after 0.0 s: the task ended without a "
                     "result", proc.stdout), proc.stdout
  assert (workdir / "results.csv").exists()
