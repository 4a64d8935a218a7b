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


def tiny(**kw):
  """A 20-step plain run of the small config (also what the preemption
  subprocess below runs, importing this module)."""
  return helpers.small_config(**{"num_steps": 20, "log_every": 10,
                                 "eval_every": 20, "checkpoint_every": 10,
                                 "pruning.method": "none", **kw})


def test_a_relative_workdir_runs_and_resumes(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = tiny()
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
      drivers.run(tiny(), workdir)
    assert sorted(os.listdir(workdir)) == [".lock"]  # nothing written
  finally:
    holder.kill()
    holder.wait()
  # the OS dropped the dead holder's lock: no manual cleaning
  summary = drivers.run(tiny(), workdir)
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
  drivers.run(t.tiny(num_steps=40), sys.argv[1])
except signals.Preempted as e:
  print("PREEMPTED", e.step, flush=True)
  sys.exit(e.exit_code)
"""


def test_sigterm_checkpoints_and_the_rerun_loses_no_step(tmp_path):
  ref = drivers.run(tiny(num_steps=40), str(tmp_path / "ref"))
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
  resumed = drivers.run(tiny(num_steps=40), workdir)
  assert resumed == ref


def test_a_run_that_fails_before_its_first_step_leaves_no_workdir(tmp_path):
  workdir = str(tmp_path / "w")
  bad = tiny()
  bad.model_kwargs.hidden = (64, -3)  # not a layer width: fails in init
  with pytest.raises(Exception):
    drivers.run(bad, workdir)
  assert not os.path.exists(workdir)  # the corrected command may run
  assert drivers.run(tiny(), workdir)["final"]["step"] == 20


def test_an_existing_workdir_is_left_byte_identical_by_bad_input(tmp_path):
  workdir = str(tmp_path / "w")
  drivers.run(tiny(), workdir)

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
    bad = tiny(**{field: value})
    with pytest.raises(config_check.ConfigError, match=field):
      drivers.run(bad, workdir)
  assert listing() == before


# ---------------------------------------------------------------------------
# The rows of ../shared/robustness-cases.md that were weak or defects, each
# as a test named after its case number. Cases 111-139 (crafted .sbn files)
# are in tests/test_export_malformed.py; kill -9 resumes in test_faults.py.

def _cli(*args, module="launch.train", timeout=300):
  """Runs a launch program; returns (exit code, stdout, stderr)."""
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  return proc.returncode, proc.stdout, proc.stderr


def _one_line(rc, stderr, code=2):
  """Asserts exit `code` with a single non-empty stderr line, no traceback;
  returns the line."""
  lines = [l for l in stderr.splitlines() if l.strip()]
  assert rc == code, stderr[-2000:]
  assert "Traceback" not in stderr, stderr[-2000:]
  assert len(lines) == 1, lines
  return lines[0]


_CFG = "--config=experiments/configs/digits_magnitude.py"


@pytest.mark.parametrize("case,flag,want", [
    (9, "--config.num_step=100",
     "--config.num_step: unknown config field 'num_step' (did you mean "
     "'num_steps'?)"),
    (10, "--config.pruning.target_sparcity=0.5",
     "--config.pruning.target_sparcity: unknown config field "
     "'target_sparcity' (did you mean 'target_sparsity'?)"),
    (11, "--config.Num_Steps=100",
     "--config.Num_Steps: unknown config field 'Num_Steps' (did you mean "
     "'num_steps'?)"),
])
def test_cases_9_to_11_an_unknown_field_is_named_once(tmp_path, case, flag,
                                                      want):
  del case
  line = _one_line(*_cli(_CFG, f"--workdir={tmp_path / 'w'}", flag)[::2])
  assert line == f"launch.train: error: {want}"
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("case,body,want", [
    (18, "def get_config():\n  raise RuntimeError('boom from config')\n",
     "RuntimeError: boom from config"),
    (19, "def get_config():\n  return 42\n",
     "get_config() returned int, not an ml_collections.ConfigDict"),
    (21, "x = 1\n", "the file defines no get_config()"),
    (22, "x = = 1\n", "SyntaxError"),
])
def test_cases_18_to_22_a_bad_config_file_is_named(tmp_path, case, body,
                                                   want):
  path = tmp_path / f"cfg_{case}.py"
  path.write_text(body)
  line = _one_line(*_cli(f"--config={path}",
                         f"--workdir={tmp_path / 'w'}")[::2])
  assert f"--config={path}" in line and want in line, line
  assert not (tmp_path / "w").exists()


def test_case_20_a_missing_config_file_is_named(tmp_path):
  line = _one_line(*_cli("--config=experiments/configs/nope.py",
                         f"--workdir={tmp_path / 'w'}")[::2])
  assert "experiments/configs/nope.py" in line
  assert "No such file" in line


@pytest.mark.parametrize("case,flags,want", [
    (56, ["--coordinator_address=localhost", "--num_processes=1",
          "--process_id=0"], "--coordinator_address=localhost: expected "
     "HOST:PORT"),
    (57, ["--coordinator_address=localhost:23456", "--num_processes=2",
          "--process_id=5"], "--process_id=5: must be in [0, "
     "--num_processes=2)"),
    (58, ["--coordinator_address=localhost:23457"],
     "--num_processes=None: --coordinator_address needs --num_processes"),
    (0, ["--num_processes=2", "--process_id=0"],
     "--num_processes/--process_id need --coordinator_address"),
])
def test_cases_56_to_58_bad_multi_host_flags(tmp_path, case, flags, want):
  del case
  line = _one_line(*_cli(_CFG, f"--workdir={tmp_path / 'w'}", *flags)[::2])
  assert want in line, line
  assert not (tmp_path / "w").exists()


def test_case_161_prepare_data_without_a_dataset():
  line = _one_line(*_cli(module="launch.prepare_data")[::2])
  assert line == ("prepare_data: --dataset is required (e.g. "
                  "--dataset=cifar10)")


def _listing(workdir):
  out = {}
  for dirpath, _, files in os.walk(workdir):
    for f in files:
      if f != ".lock":
        with open(os.path.join(dirpath, f), "rb") as fh:
          out[os.path.join(dirpath, f)] = fh.read()
  return out


@pytest.mark.parametrize("case,overrides,want", [
    (6, {"learning_rate": float("inf")},
     "config.learning_rate: must be > 0 and finite, got inf"),
    (7, {"batch_size": 100000000},
     "config.batch_size: 100000000 is larger than the train split (1257 "
     "examples)"),
    (42, {"keep_checkpoints": 0},
     "config.keep_checkpoints: must be an integer >= 1, got 0"),
    (43, {"keep_checkpoints": -1},
     "config.keep_checkpoints: must be an integer >= 1, got -1"),
    (44, {"warmup_steps": -5, "lr_schedule": "cosine"},
     "config.warmup_steps: must be an integer >= 0, got -5"),
    (45, {"seed": 99999999999999999999},
     "config.seed: must be an integer in [0, 2**31)"),
    (54, {"model_kwargs.hidden": (300, "a")},
     "config.model_kwargs: model 'mlp' cannot be built"),
    (55, {"model_kwargs.hidden": (300, -5)},
     "config.model_kwargs: model 'mlp' cannot be built"),
])
def test_bad_input_is_one_config_error_and_writes_nothing(tmp_path, case,
                                                          overrides, want):
  """Cases 6, 7, 42-45, 54, 55: refused before anything is written, a new
  workdir stays absent, so the corrected command runs."""
  del case
  workdir = str(tmp_path / "new")
  with pytest.raises(config_check.ConfigError) as e:
    drivers.run(tiny(**overrides), workdir)
  assert want in str(e.value) and "\n" not in str(e.value), str(e.value)
  assert not os.path.exists(workdir)


def test_case_7_at_the_cli_exit_2_and_the_corrected_command_runs(tmp_path):
  workdir = tmp_path / "w"
  small = [_CFG, f"--workdir={workdir}", "--config.num_steps=20",
           "--config.pruning.method=none", "--config.log_every=10",
           "--config.eval_every=20", "--config.checkpoint_every=10"]
  rc, _, err = _cli(*small, "--config.batch_size=100000000")
  line = _one_line(rc, err)
  assert "config.batch_size: 100000000 is larger than the train split" in line
  assert not workdir.exists()
  rc, _, err = _cli(*small)
  assert rc == 0, err[-2000:]
  assert (workdir / "summary.json").exists()


@pytest.mark.parametrize("case", [24, 25])
def test_cases_24_25_a_workdir_that_is_or_is_below_a_file(tmp_path, case):
  afile = tmp_path / "afile"
  afile.write_text("mine")
  workdir = str(afile) if case == 24 else str(afile / "sub")
  with pytest.raises(runs.WorkdirError, match="is not a directory"):
    drivers.run(tiny(), workdir)
  assert afile.read_text() == "mine"


@pytest.mark.parametrize("case", [27, 28])
def test_cases_27_28_an_unwritable_workdir(tmp_path, monkeypatch, case):
  """27: chmod 555 (root bypasses modes, so os.access is what decides);
  28: a read-only mount (os.access says EROFS): both as os.access sees
  them."""
  del case
  workdir = tmp_path / "ro"
  workdir.mkdir()
  real = os.access
  monkeypatch.setattr(os, "access", lambda p, m, **kw: (
      False if os.fspath(p) == str(workdir) else real(p, m, **kw)))
  with pytest.raises(runs.WorkdirError, match="is not writable"):
    drivers.run(tiny(), str(workdir))
  assert os.listdir(workdir) == []
  with pytest.raises(runs.WorkdirError, match="its parent .* is not"):
    drivers.run(tiny(), str(workdir / "sub"))


@pytest.mark.skipif(not os.path.exists("/usr/bin/setpriv")
                    or os.geteuid() != 0, reason="needs root and setpriv")
def test_case_27_at_the_cli_without_dac_override(tmp_path):
  workdir = tmp_path / "d"
  workdir.mkdir()
  os.chmod(workdir, 0o555)
  try:
    proc = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
         sys.executable, "-m", "launch.train", _CFG, f"--workdir={workdir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if "setpriv" in proc.stderr:
      pytest.skip(f"setpriv refused: {proc.stderr.strip()[:200]}")
    line = _one_line(proc.returncode, proc.stderr)
    assert "is not writable" in line
    assert os.listdir(workdir) == []
  finally:
    os.chmod(workdir, 0o755)


def test_case_41_two_method_sections_are_refused(tmp_path):
  from experiments.configs import repr_digits  # pylint: disable=g-import-not-at-top
  config = repr_digits.get_config()
  config.filterprune = {"criterion": "fpgm"}
  with pytest.raises(config_check.ConfigError,
                     match="at most one method section"):
    drivers.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_case_47_an_unprepared_tfds_dataset_names_the_command(tmp_path):
  workdir = str(tmp_path / "w")
  config = tiny(dataset="mnist", data_dir=str(tmp_path / "nonexistent"))
  with pytest.raises(FileNotFoundError,
                     match="launch.prepare_data --dataset=mnist"):
    drivers.run(config, workdir)
  assert not os.path.exists(workdir)  # fixing data_dir is not refused


def test_case_77_a_truncated_config_json_is_one_line(tmp_path):
  workdir = str(tmp_path / "w")
  drivers.run(tiny(), workdir)
  path = os.path.join(workdir, "config.json")
  with open(path, "r+") as f:
    f.truncate(100)
  before = _listing(workdir)
  with pytest.raises(runs.WorkdirError, match="config.json is unreadable"):
    drivers.run(tiny(), workdir)
  assert _listing(workdir) == before


def test_case_78_a_truncated_summary_is_set_aside_and_rebuilt(tmp_path,
                                                              capsys):
  workdir = str(tmp_path / "w")
  summary = drivers.run(tiny(), workdir)
  path = os.path.join(workdir, "summary.json")
  with open(path, "r+") as f:
    f.truncate(50)
  torn = open(path, "rb").read()
  assert drivers.run(tiny(), workdir) == summary  # finished again
  assert open(path + ".unreadable", "rb").read() == torn  # kept
  out = capsys.readouterr().out
  assert "summary.json is unreadable" in out and "moved to" in out


@pytest.mark.parametrize("damage", ["empty", "delete"])
def test_cases_67_68_an_emptied_or_deleted_checkpoint_file(tmp_path, capsys,
                                                           damage):
  workdir = str(tmp_path)
  mngr, abstract = _save_two(workdir)
  files = [os.path.join(d, f) for d, _, fs in os.walk(
      tmp_path / "checkpoints" / "2" / "state") for f in fs
           if os.path.getsize(os.path.join(d, f)) > 0]
  largest = max(files, key=os.path.getsize)
  if damage == "empty":
    open(largest, "wb").close()
  else:
    os.remove(largest)
  mngr = checkpointing.manager(workdir, keep=3)
  state, meta = checkpointing.restore_latest(mngr, abstract)
  assert meta["data_position"] == 1
  assert [float(x) for x in state["w"]] == [0.0, 1.0, 2.0, 3.0]
  assert "unreadable" in capsys.readouterr().out


def test_case_83_export_refuses_an_unfinished_run_unless_allowed(tmp_path):
  from experiments import export  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "w")
  drivers.run(tiny(), workdir)
  os.remove(os.path.join(workdir, "summary.json"))  # as if killed at 20
  out = str(tmp_path / "m.sbn")
  with pytest.raises(FileNotFoundError, match="unfinished"):
    export.export_run(workdir, out)
  assert not os.path.exists(out)
  info = export.export_run(workdir, out, allow_unfinished=True)
  assert info["unfinished"] is True and info["step"] == 20
  assert "UNFINISHED" in info["result"]
  assert export.Model.load(out).meta["unfinished"] is True


def test_case_83_allow_unfinished_is_refused_for_a_phased_driver(tmp_path):
  from experiments import export  # pylint: disable=g-import-not-at-top
  config = helpers.small_lottery_config()
  workdir = str(tmp_path / "lot")
  os.makedirs(workdir)
  runs.write_json(os.path.join(workdir, "config.json"),
                  runs.config_json(config))
  with pytest.raises(ValueError, match="plain or FBS run"):
    export.export_run(workdir, str(tmp_path / "l.sbn"),
                      allow_unfinished=True)


def test_case_150_a_grid_point_too_big_for_the_split_is_refused(tmp_path):
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  path = tmp_path / "grid.py"
  path.write_text(
      "from experiments.configs import digits_magnitude\n"
      "def get_config():\n"
      "  c = digits_magnitude.get_config()\n"
      "  c.num_steps = 20\n"
      "  c.pruning.method = 'none'\n"
      "  return c\n"
      "def get_sweep():\n"
      "  return {'seeds': [0], 'grids': [{'batch_size': [64, 100000]}]}\n")
  with pytest.raises(sweep.SweepError) as e:
    sweep.load(str(path))
  assert "grids[0]['batch_size'] = 100000" in str(e.value)
  assert "larger than the train split" in str(e.value)


_FULL_DISK = """
set -e
mkdir -p {mnt}
mount -t tmpfs -o size=200k tmpfs {mnt}
cd {root}
set +e
{python} -m launch.train {cfg} --workdir={mnt}/w --config.num_steps=30 \\
    --config.checkpoint_every=10 --config.log_every=10 \\
    --config.eval_every=30 --config.pruning.method=none
echo "rc=$?"
"""


def test_cases_73_74_a_full_disk_ends_with_one_clear_line(tmp_path):
  probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
  if probe.returncode != 0:
    pytest.skip("cannot make a mount namespace here (unshare -m)")
  script = _FULL_DISK.format(mnt=tmp_path / "mnt", root=ROOT,
                             python=sys.executable, cfg=_CFG)
  proc = subprocess.run(["unshare", "-m", "bash", "-c", script],
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  if "mount:" in proc.stderr:
    pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
  assert "rc=1" in proc.stdout, proc.stdout[-1000:] + proc.stderr[-2000:]
  last = [l for l in proc.stderr.splitlines() if l.strip()][-1]
  assert last.startswith("launch.train: error: no space left on the device"
                         ), last
  assert "re-run the same command to resume" in last
  assert "sys.meta_path is None" not in proc.stderr


def _wait_for(predicate, proc, what, timeout=300):
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, f"exited {proc.returncode} before {what}"
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.02)


def _trainer_pid(run):
  """The pid in a running trainer's workdir lock, once it trains."""
  try:
    if not os.path.exists(os.path.join(run, "metrics.jsonl")):
      return None
    with open(os.path.join(run, ".lock")) as f:
      return int(f.read().strip() or 0) or None
  except (OSError, ValueError):
    return None


def _sweep_args(tmp_path):
  import test_sweep  # pylint: disable=g-import-not-at-top
  path = test_sweep.write_sweep(tmp_path, [{"optimizer": ["adam"]}],
                                seeds=[0], num_steps=1000)
  workdir = tmp_path / "sweep"
  run = str(workdir / "runs" / "optimizer=adam,seed=0")
  return ([sys.executable, "-m", "launch.sweep", f"--config={path}",
           f"--workdir={workdir}"], workdir, run)


def test_sweep_preemption_of_a_run_and_of_the_sweep(tmp_path):
  """1. A SIGTERM to one run (its node was preempted): it checkpoints and
  exits 143, and the sweep starts it again at once; it resumes. 2. A
  SIGTERM to the sweep: it passes it to the running run, which
  checkpoints; the sweep exits 143; re-running the sweep resumes it."""
  import signal  # pylint: disable=g-import-not-at-top
  cmd, workdir, run = _sweep_args(tmp_path)
  log_path = tmp_path / "sweep.log"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env=env)  # pylint: disable=consider-using-with
    _wait_for(lambda: _trainer_pid(run), proc, "the run to train")
    first = _trainer_pid(run)
    os.kill(first, signal.SIGTERM)
    _wait_for(lambda: "re-running it" in log_path.read_text(), proc,
              "the sweep to re-run the preempted run")
    _wait_for(lambda: _trainer_pid(run) not in (None, first), proc,
              "the second attempt to train")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143, log_path.read_text()
  out = log_path.read_text()
  assert "preempted (exit 143)" in out, out
  assert "stopped (exit 143)" in out and "re-run the sweep" in out, out
  assert "launch.sweep: SIGTERM received: 1 run(s) unfinished" in out
  attempts = [json.loads(l) for l in open(workdir / "attempts.jsonl")]
  assert [a["rc"] for a in attempts] == [143, 143]
  assert not os.path.exists(os.path.join(run, "summary.json"))
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=600, env=env)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "[1/1] optimizer=adam,seed=0  test accuracy" in proc.stdout
  with open(workdir / "logs" / "optimizer=adam,seed=0.out") as f:
    assert f.read().count("Resuming") == 2
  with open(os.path.join(run, "summary.json")) as f:
    assert json.load(f)["final"]["step"] == 1000


def test_case_95_export_of_a_relative_workdir(tmp_path, monkeypatch):
  from experiments import export  # pylint: disable=g-import-not-at-top
  drivers.run(tiny(), str(tmp_path / "ref"))
  monkeypatch.chdir(tmp_path)
  info = export.export_run("ref", "rel.sbn")
  assert info["workdir"] == str(tmp_path / "ref")
  assert os.path.exists(tmp_path / "rel.sbn")
  home = tmp_path / "home"
  home.mkdir()
  monkeypatch.setenv("HOME", str(home))
  os.rename(tmp_path / "ref", home / "ref")
  assert export.export_run("~/ref", str(tmp_path / "home.sbn"))["step"] == 20


def test_case_159_a_relative_sweep_workdir(tmp_path):
  import test_sweep  # pylint: disable=g-import-not-at-top
  path = test_sweep.write_sweep(tmp_path, [{"optimizer": ["adam"]}],
                                seeds=[0], num_steps=100)
  proc = subprocess.run(
      [sys.executable, "-m", "launch.sweep", f"--config={path}",
       "--workdir=sw_rel"], cwd=tmp_path, capture_output=True, text=True,
      timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu",
                            PYTHONPATH=ROOT))
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  run = tmp_path / "sw_rel" / "runs" / "optimizer=adam,seed=0"
  assert (run / "summary.json").exists()
  assert not os.path.exists(os.path.join(ROOT, "sw_rel"))


def test_case_93_export_names_an_unreadable_newest_checkpoint(tmp_path):
  """A reader never falls back to an older checkpoint (it is not the
  result the run reported) and moves nothing."""
  import shutil  # pylint: disable=g-import-not-at-top
  from experiments import export  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "w")
  drivers.run(tiny(), workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "20", "meta"))
  before = _listing(workdir)
  with pytest.raises(ValueError, match=r"checkpoint 20 in .* is unreadable"):
    export.export_run(workdir, str(tmp_path / "m.sbn"))
  assert _listing(workdir) == before
  assert not os.path.exists(tmp_path / "m.sbn")


def test_case_8_a_huge_eval_batch_is_capped_at_the_largest_split():
  from experiments import engine  # pylint: disable=g-import-not-at-top
  e = engine.Engine(tiny(eval_batch_size=100_000_000))
  assert e.eval_bs == 1257  # digits' train split; not 1e8 padded rows
  assert engine.Engine(tiny()).eval_bs == 512  # unchanged below it
