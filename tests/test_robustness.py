"""Runs that survive real use (issue 19, first part): relative workdirs,
torn metrics lines, unreadable checkpoints, two runs on one workdir.

Each test asserts the one-line message (or warning) and that data is
intact.
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from experiments import checkpointing
from experiments import config_check
from experiments import drivers
from experiments import locks
from experiments import metrics
from experiments import runs
import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(**kw):
  return helpers.small_config(**{"num_steps": 20, "log_every": 10,
                                 "eval_every": 20, "checkpoint_every": 10,
                                 "pruning.method": "none", **kw})


def test_a_relative_workdir_runs_and_resumes(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = _tiny()
  summary = drivers.run(config, "runs/rel")  # orbax needs absolute paths
  assert os.path.exists(tmp_path / "runs" / "rel" / "summary.json")
  assert os.path.isdir(tmp_path / "runs" / "rel" / "checkpoints")
  assert drivers.run(config, "runs/rel") == summary
  assert drivers.run(config, str(tmp_path / "runs" / "rel")) == summary


def test_absolute_expands_home(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path))
  assert locks.absolute("~/x") == str(tmp_path / "x")
  assert os.path.isabs(locks.absolute("a/b"))


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path, capsys):
  path = tmp_path / "metrics.jsonl"
  rows = [{"step": 10, "train_loss": 1.0}, {"step": 20, "train_loss": 0.5}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows)
                  + '{"step": 30, "train_lo')  # a write cut short
  writer = metrics.MetricWriter(str(tmp_path), resume_step=20)
  writer.write(30, {"train_loss": 0.25})
  writer.close()
  got = [json.loads(l) for l in path.read_text().splitlines()]
  assert [r["step"] for r in got] == [10, 20, 30]
  assert "dropped 1 unreadable line" in capsys.readouterr().out


def test_a_last_line_without_newline_is_kept_whole(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 10, "a": 1}')  # complete, no newline
  writer = metrics.MetricWriter(str(tmp_path), resume_step=10)
  writer.write(20, {"a": 2})
  got = [json.loads(l) for l in path.read_text().splitlines()]
  assert [r["step"] for r in got] == [10, 20]


def _save_two(workdir):
  mngr = checkpointing.manager(workdir, keep=3)
  state = {"w": jnp.arange(4.0)}
  for step in (1, 2):
    checkpointing.save(mngr, step, {"w": state["w"] * step},
                       {"data_position": step})
  return mngr, jax.eval_shape(lambda: state)


@pytest.mark.parametrize("damage", ["truncate", "delete_meta"])
def test_an_unreadable_newest_checkpoint_is_set_aside(tmp_path, capsys,
                                                      damage):
  workdir = str(tmp_path)
  mngr, abstract = _save_two(workdir)
  newest = tmp_path / "checkpoints" / "2"
  if damage == "truncate":
    for dirpath, _, files in os.walk(newest / "state"):
      for f in files:
        if os.path.getsize(os.path.join(dirpath, f)) > 0:
          with open(os.path.join(dirpath, f), "r+b") as fh:
            fh.truncate(1)
  else:
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(newest / "meta")
  mngr = checkpointing.manager(workdir, keep=3)  # a re-run's manager
  state, meta = checkpointing.restore_latest(mngr, abstract)
  assert meta["data_position"] == 1
  assert [float(x) for x in state["w"]] == [0.0, 1.0, 2.0, 3.0]
  out = capsys.readouterr().out
  assert "checkpoint 2" in out and "unreadable" in out
  assert len([l for l in out.splitlines() if "warning" in l]) == 1
  assert os.path.isdir(tmp_path / "checkpoints.set_aside" / "2")  # kept
  assert not newest.exists()
  # the run goes on: a new step 2 can be written and restored
  checkpointing.save(mngr, 2, {"w": jnp.ones(4)}, {"data_position": 2})
  assert checkpointing.restore_latest(mngr, abstract)[1] == {
      "data_position": 2}


_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from experiments import locks
locks.lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_two_runs_on_one_workdir_the_second_is_refused(tmp_path):
  workdir = str(tmp_path / "w")
  os.makedirs(workdir)
  holder = subprocess.Popen(
      [sys.executable, "-c", _HOLDER.format(root=ROOT), workdir],
      stdout=subprocess.PIPE, text=True, env=dict(os.environ,
                                                  JAX_PLATFORMS="cpu"))
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(runs.WorkdirError,
                       match=f"in use by another run \\(pid {holder.pid}\\)"):
      drivers.run(_tiny(), workdir)
    assert sorted(os.listdir(workdir)) == [".lock"]  # nothing written
  finally:
    holder.kill()
    holder.wait()
  # the OS dropped the dead holder's lock: no manual cleaning
  summary = drivers.run(_tiny(), workdir)
  assert summary["final"]["step"] == 20
  # and the lock is released when the run returns (re-runnable at once)
  locks.lock(workdir)
  locks.unlock(workdir)


def test_the_cli_refuses_a_locked_workdir_with_exit_2(tmp_path):
  workdir = str(tmp_path / "w")
  os.makedirs(workdir)
  locks.lock(workdir)
  try:
    proc = subprocess.run(
        [sys.executable, "-m", "launch.train",
         "--config=experiments/configs/digits_magnitude.py",
         f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  finally:
    locks.unlock(workdir)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if "error" in l]
  assert len(lines) == 1 and "in use by another run" in lines[0]
  assert f"pid {os.getpid()}" in lines[0]
  assert "Traceback" not in proc.stderr
  assert sorted(os.listdir(workdir)) == [".lock"]


_PREEMPT = """
import os, signal, sys
sys.path[:0] = [{root!r}, {here!r}]
from experiments import data as data_lib
import test_robustness as t
real = data_lib.train_batch
def batch(source, step, **kw):
  if step == {at}:  # SLURM's SIGTERM arrives during step {at}
    os.kill(os.getpid(), signal.SIGTERM)
  return real(source, step, **kw)
data_lib.train_batch = batch
from experiments import drivers, signals
try:
  drivers.run(t._tiny(num_steps=40), sys.argv[1])
except signals.Preempted as e:
  print("PREEMPTED", e.step, flush=True)
  sys.exit(e.exit_code)
"""


def test_sigterm_checkpoints_and_the_rerun_loses_no_step(tmp_path):
  ref = drivers.run(_tiny(num_steps=40), str(tmp_path / "ref"))
  workdir = str(tmp_path / "pre")
  proc = subprocess.run(
      [sys.executable, "-c", _PREEMPT.format(
          root=ROOT, here=os.path.dirname(__file__), at=14), workdir],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 143, proc.stderr[-2000:]
  assert "PREEMPTED 15" in proc.stdout  # step 15 finished, then stopped
  steps = sorted(int(d) for d in os.listdir(os.path.join(workdir,
                                                         "checkpoints"))
                 if d.isdigit())
  assert steps[-1] == 15, steps  # the preemption step, not 10
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  resumed = drivers.run(_tiny(num_steps=40), workdir)
  assert resumed == ref


def test_a_run_that_fails_before_its_first_step_leaves_no_workdir(tmp_path):
  workdir = str(tmp_path / "w")
  bad = _tiny()
  bad.model_kwargs.hidden = (64, -3)  # not a layer width: fails in init
  with pytest.raises(Exception):
    drivers.run(bad, workdir)
  assert not os.path.exists(workdir)  # the corrected command may run
  assert drivers.run(_tiny(), workdir)["final"]["step"] == 20


def test_an_existing_workdir_is_left_byte_identical_by_bad_input(tmp_path):
  workdir = str(tmp_path / "w")
  drivers.run(_tiny(), workdir)

  def listing():
    out = {}
    for dirpath, _, files in os.walk(workdir):
      for f in files:
        if f != ".lock":
          with open(os.path.join(dirpath, f), "rb") as fh:
            out[os.path.join(dirpath, f)] = fh.read()
    return out

  before = listing()
  for field, value in (("learning_rate", float("inf")),
                       ("keep_checkpoints", 0), ("seed", 2**40)):
    bad = _tiny(**{field: value})
    with pytest.raises(config_check.ConfigError, match=field):
      drivers.run(bad, workdir)
  assert listing() == before
