"""`python -m launch.train`: bad input gives one line and exit code 2."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "digits_magnitude.py")
SMALL = ["--config.num_steps=60", "--config.log_every=20",
         "--config.eval_every=30", "--config.checkpoint_every=30",
         "--config.pruning.begin_step=20", "--config.pruning.end_step=40",
         "--config.pruning.frequency=10", "--config.model_kwargs.hidden=(32,)"]


def launch(*args, env=None):
  full_env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
  return subprocess.run(
      [sys.executable, "-m", "launch.train", *args], cwd=ROOT, env=full_env,
      capture_output=True, text=True, timeout=300)


def snapshot(path):
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      p = os.path.join(root, f)
      with open(p, "rb") as fh:
        out[os.path.relpath(p, path)] = fh.read()
  return out


def assert_one_line_error(proc, *words):
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines()
           if l.strip() and "WARNING" not in l and not l.startswith("W0")]
  assert len(lines) == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  for w in words:
    assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cli") / "run")
  proc = launch(f"--config={CONFIG}", f"--workdir={workdir}", *SMALL)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "test accuracy" in proc.stdout and "steps/s" in proc.stdout
  assert "ETA" in proc.stdout
  return workdir


def test_finished_run_prints_stored_result(finished_workdir):
  before = snapshot(finished_workdir)
  proc = launch(f"--config={CONFIG}", f"--workdir={finished_workdir}", *SMALL)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "already finished" in proc.stdout
  assert "test accuracy" in proc.stdout
  assert snapshot(finished_workdir) == before


@pytest.mark.parametrize("override,words", [
    ("--config.no_such_field=1", ["no_such_field"]),
    ("--config.pruning.target_sparsity=1.5", ["pruning.target_sparsity"]),
    ("--config.num_steps=0", ["num_steps"]),
    ("--config.dataset=nope", ["dataset", "nope"]),
    ("--config.model=nope", ["model", "nope"]),
    ("--config.optimizer=nope", ["optimizer", "nope"]),
    ("--config.learning_rate=0.5", ["another config", "learning_rate"]),
])
def test_bad_input_leaves_workdir_untouched(finished_workdir, override, words):
  before = snapshot(finished_workdir)
  proc = launch(f"--config={CONFIG}", f"--workdir={finished_workdir}",
                *SMALL, override)
  assert_one_line_error(proc, *words)
  assert snapshot(finished_workdir) == before


def test_batch_not_divisible_by_devices(tmp_path):
  workdir = str(tmp_path / "run")
  proc = launch(f"--config={CONFIG}", f"--workdir={workdir}", *SMALL,
                "--config.batch_size=66",
                env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  assert_one_line_error(proc, "batch_size", "4")
  assert not os.path.exists(workdir)


def test_missing_config_file(tmp_path):
  proc = launch("--config=experiments/configs/nope.py",
                f"--workdir={tmp_path}/run")
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert "nope.py" in proc.stderr
