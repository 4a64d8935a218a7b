"""kill -9 at a step, at a prune boundary and during a checkpoint write,
then re-run: the final params and summary equal an uninterrupted run's;
and several devices / processes match one device."""
import json
import os
import socket
import subprocess
import sys

import pytest

from experiments import train
from helpers import leaves_close
from helpers import leaves_equal
from helpers import small_config

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "_fault_runner.py")


def run(workdir, fault="none", n=0, overrides=None, env=None, extra=()):
  full_env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
  return subprocess.Popen(
      [sys.executable, RUNNER, workdir, fault, str(n),
       json.dumps(overrides or {}), *extra],
      env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def finish(proc, expect=0):
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == expect, err[-3000:]
  return out


def summary(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ref"))
  finish(run(workdir))
  return workdir


@pytest.mark.parametrize("fault,n", [
    ("step", 170),        # mid-phase, 70 steps after the last checkpoint
    ("prune", 3),         # at the third pruning event (step 150)
    ("checkpoint", 2),    # inside the second checkpoint write
])
def test_kill_and_resume_is_bit_identical(reference, tmp_path, fault, n):
  workdir = str(tmp_path / "run")
  finish(run(workdir, fault, n), expect=-9)
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  finish(run(workdir))
  assert summary(workdir) == summary(reference)
  config = small_config()
  assert leaves_equal(train.load_state(config, workdir),
                      train.load_state(config, reference))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


# Few steps and a one-shot prune: data-parallel sums reduce in another
# order, and magnitude pruning would amplify float noise over long runs.
SHORT = {"num_steps": 60, "log_every": 20, "eval_every": 30,
         "checkpoint_every": 30, "pruning.schedule": "oneshot",
         "pruning.begin_step": 30}


def _assert_matches_single_device(single, other):
  config = small_config(**SHORT)
  a = train.load_state(config, single)
  b = train.load_state(config, other)
  assert leaves_equal(a.mask, b.mask)
  assert leaves_close(a.params, b.params, rtol=1e-4, atol=1e-5)
  assert summary(single)["final"]["test_accuracy"] == pytest.approx(
      summary(other)["final"]["test_accuracy"], abs=1e-2)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("one"))
  finish(run(workdir, overrides=SHORT))
  return workdir


def test_four_forced_cpu_devices_match_one(single_device, tmp_path):
  workdir = str(tmp_path / "four")
  finish(run(workdir, overrides=SHORT, env={
      "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
  assert summary(workdir)["devices"] == 4
  _assert_matches_single_device(single_device, workdir)


# The same config as `small_config(**SHORT)`, as launch.train flags.
CLI_FLAGS = ["--config=experiments/configs/digits_magnitude.py",
             "--config.model_kwargs.hidden=(64,32)",
             "--config.pruning.end_step=200", "--config.pruning.frequency=25",
             *[f"--config.{k}={v}" for k, v in SHORT.items()]]


def test_two_processes_through_the_cli_match_one(single_device, tmp_path):
  """The documented multi-host command: two `python -m launch.train`
  processes with --coordinator_address on localhost."""
  workdir = str(tmp_path / "two")
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "launch.train", *CLI_FLAGS,
       f"--workdir={workdir}", f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"],
      cwd=os.path.dirname(HERE), env=dict(os.environ, JAX_PLATFORMS="cpu"),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [finish(p) for p in procs]
  assert summary(workdir)["processes"] == 2
  assert "test accuracy" in outs[0] and "test accuracy" not in outs[1]
  with open(os.path.join(workdir, "config.json")) as f:
    stored = json.load(f)
  assert stored["model_kwargs"]["hidden"] == [64, 32]  # the same config
  _assert_matches_single_device(single_device, workdir)
  leftovers = [f for _, _, files in os.walk(workdir) for f in files
               if f.endswith(".tmp")]
  assert not leftovers, leftovers


def _poll(predicate, timeout: float, what: str) -> None:
  import time  # pylint: disable=g-import-not-at-top
  end = time.monotonic() + timeout
  while not predicate():
    assert time.monotonic() < end, f"timed out waiting for {what}"
    time.sleep(0.02)


def test_two_processes_killed_and_rerun_resume(tmp_path):
  """kill -9 of one of the two `launch.train` processes mid-run (the other
  is then killed too, as a scheduler would end the job), then the same
  two commands again: process 0 says it resumes from a checkpoint, the run
  finishes, and it matches an uninterrupted one-process run of the same
  config (masks equal, accuracy within one test image)."""
  import signal  # pylint: disable=g-import-not-at-top
  longer = {**SHORT, "num_steps": 300}
  flags = [*CLI_FLAGS, "--config.num_steps=300"]
  workdir = str(tmp_path / "two")
  root = os.path.dirname(HERE)
  env = dict(os.environ, JAX_PLATFORMS="cpu")

  def launch(port):
    return [subprocess.Popen(
        [sys.executable, "-m", "launch.train", *flags, f"--workdir={workdir}",
         f"--coordinator_address=localhost:{port}", "--num_processes=2",
         f"--process_id={i}"], cwd=root, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]

  procs = launch(_free_port())
  first = os.path.join(workdir, "checkpoints", "30")
  _poll(lambda: os.path.isdir(first) or any(
      p.poll() is not None for p in procs), 240, "the first checkpoint")
  procs[1].send_signal(signal.SIGKILL)
  procs[1].communicate(timeout=60)
  try:
    procs[0].communicate(timeout=5)
  except subprocess.TimeoutExpired:  # blocked in a collective
    procs[0].send_signal(signal.SIGKILL)
    procs[0].communicate(timeout=60)
  assert not os.path.exists(os.path.join(workdir, "summary.json")), (
      "the run finished before the kill: make it longer")

  procs = launch(_free_port())
  outs = [finish(p) for p in procs]
  resumed = [l for l in outs[0].splitlines() if l.startswith("Resuming")]
  assert resumed and "from step 0 " not in resumed[0], outs[0][-2000:]
  assert summary(workdir)["processes"] == 2
  single = str(tmp_path / "one")
  finish(run(single, overrides=longer))
  a = train.load_state(small_config(**longer), single)
  b = train.load_state(small_config(**longer), workdir)
  assert leaves_equal(a.mask, b.mask)
  assert summary(single)["final"]["test_accuracy"] == pytest.approx(
      summary(workdir)["final"]["test_accuracy"], abs=1 / 360 + 1e-9)
