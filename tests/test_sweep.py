"""Grid sweeps (`experiments.sweep`, `python -m launch.sweep`).

Expansion and naming are checked by hand; bad grids are refused before
anything runs; a small float grid on digits runs end to end, survives a
SIGKILL of the sweep mid-run (the killed run resumes from its checkpoint,
the finished one is not re-run) and is skipped when finished.
"""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from experiments import sweep as sweep_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEMPLATE = '''
from experiments.configs import digits_magnitude


def get_config():
  c = digits_magnitude.get_config()
  c.num_steps = {num_steps}
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 50
  c.keep_checkpoints = 1
  c.pruning.method = "none"
  c.model_kwargs.hidden = (32,)
  return c


def get_sweep():
  return {spec!r}
'''


def write_sweep(directory, grids, seeds=(0,), name="sweep.py",
                num_steps=200):
  path = os.path.join(str(directory), name)
  with open(path, "w") as f:
    f.write(TEMPLATE.format(num_steps=num_steps,
                            spec={"grids": grids, "seeds": list(seeds)}))
  return path


def launch(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "launch.sweep", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)


def snapshot(path):
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      p = os.path.join(root, f)
      with open(p, "rb") as fh:
        out[os.path.relpath(p, path)] = fh.read()
  return out


def error_lines(proc):
  return [l for l in proc.stderr.splitlines()
          if l.strip() and "WARNING" not in l and not l.startswith(("W0",
                                                                    "I0"))]


# ------------------------------------------------------------- expansion --
def test_expand_names_and_dedup(tmp_path):
  path = write_sweep(tmp_path, [
      {"optimizer": ["sgd", "adam"], "model_kwargs.hidden": [(32,), [16, 8]]},
      {"learning_rate": [1e-3, 3e-3]},   # 1e-3 is the base: adam,(32,)
      {}], seeds=[0, 1])
  s = sweep_lib.load(path)
  assert s.fields == ["optimizer", "model_kwargs.hidden", "learning_rate"]
  names = [p.name for p in s.points]
  assert names == [
      "optimizer=sgd,hidden=32,seed=0", "optimizer=sgd,hidden=32,seed=1",
      "optimizer=sgd,hidden=16-8,seed=0", "optimizer=sgd,hidden=16-8,seed=1",
      "optimizer=adam,hidden=32,seed=0", "optimizer=adam,hidden=32,seed=1",
      "optimizer=adam,hidden=16-8,seed=0",
      "optimizer=adam,hidden=16-8,seed=1",
      "learning_rate=0.003,seed=0", "learning_rate=0.003,seed=1"]
  ref = s.points[4]  # the base config: in all three sub-grids
  assert ref.grids == [0, 1, 2]
  assert ref.values == {"optimizer": "adam", "model_kwargs.hidden": (32,),
                        "learning_rate": 0.001}
  assert s.points[2].overrides == (("optimizer", "sgd"),
                                   ("model_kwargs.hidden", (16, 8)))
  assert s.points[8].values["optimizer"] == "adam"
  cmd = sweep_lib.command(s, s.points[2], "/w")
  assert cmd[1:] == [
      "-m", "launch.train", f"--config={path}",
      "--workdir=/w/runs/optimizer=sgd,hidden=16-8,seed=0",
      "--config.optimizer=sgd", "--config.model_kwargs.hidden=(16, 8)",
      "--config.seed=0"]
  config = sweep_lib.point_config(s.base, s.points[2])
  assert config.model_kwargs.hidden == (16, 8) and config.seed == 0
  assert s.base.optimizer == "adam"  # the base is not modified
  assert len(json.dumps(s.spec())) > 0


def test_names_short_safe_and_bounded():
  assert sweep_lib.short_names(["a.x", "b.x", "c.y"]) == {
      "a.x": "a.x", "b.x": "b.x", "c.y": "y"}
  short = {"f": "f", "g": "g"}
  assert sweep_lib.run_name((("f", "a/b c"), ("g", 1e-5)), 3, short) == (
      "f=a_b_c,g=1e-05,seed=3")
  assert sweep_lib.run_name((), 0, short) == "base,seed=0"
  assert sweep_lib.run_name((("f", True), ("g", ())), 1, short) == (
      "f=True,g=empty,seed=1")
  long = sweep_lib.run_name((("f", "x" * 300),), 0, short)
  assert len(long) == sweep_lib.MAX_NAME and re.fullmatch(
      r"[A-Za-z0-9._,=+-]+", long)
  assert long != sweep_lib.run_name((("f", "x" * 301),), 0, short)
  assert sweep_lib.cli_value((16, 8)) == "(16, 8)"
  assert sweep_lib.cli_value([16]) == "(16,)"
  assert sweep_lib.cli_value(0.1) == "0.1"
  assert sweep_lib.cli_value(False) == "False"


# ------------------------------------------------------------ bad input --
@pytest.mark.parametrize("grids,seeds,words", [
    ([{"no_such_field": [1]}], [0], ["grids[0]", "config.no_such_field"]),
    ([{"optimizer": ["sgd"]}, {"model_kwargs.nope": [1]}], [0],
     ["grids[1]", "config.model_kwargs.nope"]),
    ([{"num_steps": ["ten"]}], [0], ["grids[0]['num_steps']", "str", "int"]),
    ([{"num_steps": [100.0]}], [0], ["grids[0]['num_steps']", "float"]),
    ([{"num_steps": [True]}], [0], ["grids[0]['num_steps']", "bool"]),
    ([{"optimizer": ["adam", "nope"]}], [0],
     ["grids[0]['optimizer'] = 'nope'", "config.optimizer", "nope"]),
    ([{"learning_rate": [-1.0]}], [0], ["'learning_rate'", "must be > 0"]),
    ([{"model": ["conv2"]}], [0], ["grids[0]", "model=conv2", "hidden"]),
    ([{"optimizer": []}], [0], ["grids[0]['optimizer']", "non-empty"]),
    ([{"optimizer": ["sgd", "sgd"]}], [0], ["repeated"]),
    ([{"seed": [1, 2]}], [0], ["grids[0]['seed']", "seeds"]),
    ([{"optimizer": ["sgd"]}], [], ["seeds"]),
    ([{"optimizer": ["sgd"]}], [0, 0], ["seeds"]),
    ([], [0], ["grids"]),
])
def test_bad_grid_refused(tmp_path, grids, seeds, words):
  path = write_sweep(tmp_path, grids, seeds)
  with pytest.raises(sweep_lib.SweepError) as e:
    sweep_lib.load(path)
  message = str(e.value)
  assert "\n" not in message
  for w in words:
    assert w in message, message


def test_bad_grid_cli_exit_2_nothing_written(tmp_path):
  path = write_sweep(tmp_path, [{"optimizer": ["sgd"]},
                                {"lr_schedule": ["nope"]}])
  workdir = tmp_path / "sweep"
  proc = launch(f"--config={path}", f"--workdir={workdir}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = error_lines(proc)
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert "grids[1]['lr_schedule'] = 'nope'" in lines[0], lines[0]
  assert not workdir.exists()
  proc = launch("--config=/no/such/sweep.py", f"--workdir={workdir}")
  assert proc.returncode == 2 and "no such file" in proc.stderr
  assert not workdir.exists()


def test_workdir_refusals_and_lock(tmp_path):
  s = sweep_lib.load(write_sweep(tmp_path, [{"optimizer": ["sgd"]}]))
  other = tmp_path / "other"
  other.mkdir()
  (other / "config.json").write_text("{}")
  with pytest.raises(sweep_lib.SweepError, match="holds no sweep.json"):
    sweep_lib.prepare_workdir(s, str(other))
  workdir = str(tmp_path / "w")
  lock = sweep_lib.prepare_workdir(s, workdir)
  try:
    with pytest.raises(sweep_lib.SweepError, match="in use"):
      sweep_lib.prepare_workdir(s, workdir)
  finally:
    lock.close()
  sweep_lib.prepare_workdir(s, workdir).close()  # free again
  s2 = sweep_lib.load(write_sweep(tmp_path, [{"optimizer": ["adam"]}],
                                  name="s2.py"))
  with pytest.raises(sweep_lib.SweepError, match="another grid"):
    sweep_lib.prepare_workdir(s2, workdir)


def test_workdir_grows_by_seeds_only(tmp_path):
  """The same grid with seeds added reuses the workdir (sweep.json then
  records the new seeds); fewer seeds, or seeds added to another grid, is
  another grid."""
  grid = [{"optimizer": ["sgd", "adam"]}]
  workdir = str(tmp_path / "w")
  s01 = sweep_lib.load(write_sweep(tmp_path, grid, seeds=(0, 1)))
  sweep_lib.prepare_workdir(s01, workdir).close()
  s012 = sweep_lib.load(write_sweep(tmp_path, grid, seeds=(0, 1, 2),
                                    name="s012.py"))
  sweep_lib.prepare_workdir(s012, workdir).close()
  with open(os.path.join(workdir, "sweep.json")) as f:
    assert json.load(f)["spec"]["seeds"] == [0, 1, 2]
  with pytest.raises(sweep_lib.SweepError, match="another grid.*seeds"):
    sweep_lib.prepare_workdir(s01, workdir)
  other = sweep_lib.load(write_sweep(tmp_path, [{"optimizer": ["sgd"]}],
                                     seeds=(0, 1, 2, 3), name="other.py"))
  with pytest.raises(sweep_lib.SweepError, match="another grid"):
    sweep_lib.prepare_workdir(other, workdir)


# ----------------------------------------------------------- end to end --
def _finished_checkpoint(run_dir):
  ckpt = os.path.join(run_dir, "checkpoints")
  return os.path.isdir(ckpt) and any(
      d.isdigit() and int(d) > 0 for d in os.listdir(ckpt))


def test_end_to_end_kill_resume_skip(tmp_path):
  path = write_sweep(tmp_path, [{"optimizer": ["sgd", "adam"]}],
                     seeds=[0, 1], num_steps=1500)
  workdir = tmp_path / "sweep"
  names = ["optimizer=sgd,seed=0", "optimizer=sgd,seed=1",
           "optimizer=adam,seed=0", "optimizer=adam,seed=1"]
  runs = [str(workdir / "runs" / n) for n in names]

  # 1. Kill the sweep (SIGKILL, the parent only) once run 1 has finished and
  # run 2 has written a checkpoint.
  with open(tmp_path / "first.log", "w") as log:
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "launch.sweep", f"--config={path}",
         f"--workdir={workdir}"], cwd=ROOT, stdout=log, stderr=log,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    deadline = time.time() + 300
    while not (os.path.exists(os.path.join(runs[0], "summary.json"))
               and _finished_checkpoint(runs[1])):
      assert proc.poll() is None, (tmp_path / "first.log").read_text()
      assert time.time() < deadline
      time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  assert not os.path.exists(os.path.join(runs[1], "summary.json")), (
      "run 2 finished before the kill; make it longer")
  time.sleep(3)  # the trainer died with the sweep: no orphan finishes it
  assert not os.path.exists(os.path.join(runs[1], "summary.json"))
  assert not os.path.exists(runs[2])

  # 2. Re-run, two at a time: run 1 is skipped, run 2 resumes.
  proc = launch(f"--config={path}", f"--workdir={workdir}", "--parallel=2")
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  out = proc.stdout
  assert "4 runs (1 finished earlier, 3 to run, 2 at a time)" in out
  assert f"[1/4] {names[0]}  finished earlier  test accuracy" in out
  for n in names[1:]:
    assert re.search(rf"\[[234]/4\] {re.escape(n)}  test accuracy "
                     r"\d\.\d{4}  \d+\.\d s", out), out
  with open(workdir / "logs" / f"{names[1]}.out") as f:
    assert "Resuming" in f.read()
  with open(workdir / "logs" / f"{names[0]}.out") as f:
    assert f.read().count("Training:") == 1  # not re-run
  attempts = [json.loads(l) for l in open(workdir / "attempts.jsonl")]
  assert [a["name"] for a in attempts].count(names[0]) == 1

  # Results: csv, md (printed), png.
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["name"] for r in rows] == names
  assert list(rows[0]) == ["name", "optimizer", "seed", "test_accuracy",
                           "test_loss", "step", "wall_seconds", "status",
                           *sweep_lib.SEED_COLUMNS]
  assert all(r["status"] == "ok" and r["step"] == "1500" for r in rows)
  assert [r["optimizer"] for r in rows] == ["sgd", "sgd", "adam", "adam"]
  for r in rows:
    with open(os.path.join(workdir, "runs", r["name"], "summary.json")) as f:
      assert float(r["test_accuracy"]) == json.load(f)["final"][
          "test_accuracy"]
  md = (workdir / "results.md").read_text(encoding="utf-8")
  assert md in out
  adam = [float(r["test_accuracy"]) for r in rows[2:]]
  mean = sum(adam) / 2
  std = abs(adam[0] - adam[1]) / 2 ** 0.5
  half = 12.706204736174696 * std / 2 ** 0.5  # t(0.975, 1) s / sqrt(2)
  assert (f"| adam | {mean:.4f} ± {std:.4f} [{mean - half:.4f}, "
          f"{mean + half:.4f}] | 2 |") in md, md
  assert float(rows[2]["test_accuracy_mean"]) == pytest.approx(mean)
  assert "| sgd | " in md
  assert (workdir / "results.png").read_bytes()[:4] == b"\x89PNG"
  assert json.load(open(workdir / "sweep.json"))["spec"]["runs"][1][
      "name"] == names[1]

  # 3. Again: everything is skipped, no run is touched.
  before = snapshot(workdir / "runs")
  proc = launch(f"--config={path}", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "(4 finished earlier, 0 to run" in proc.stdout
  assert snapshot(workdir / "runs") == before

  # 4. Another grid in the same workdir: refused, nothing touched (the
  # same grid with seeds added would grow it: test_workdir_grows_...).
  before = snapshot(workdir)
  other = write_sweep(tmp_path, [{"optimizer": ["sgd", "momentum"]}],
                      seeds=[0, 1, 2], name="other.py", num_steps=1500)
  proc = launch(f"--config={other}", f"--workdir={workdir}")
  assert proc.returncode == 2
  lines = error_lines(proc)
  assert len(lines) == 1 and "another grid" in lines[0], proc.stderr
  assert snapshot(workdir) == before


def test_failed_run_reported_and_sweep_exits_nonzero(tmp_path):
  path = write_sweep(tmp_path, [{"optimizer": ["sgd"],
                                 "learning_rate": [1e30]}])
  workdir = tmp_path / "sweep"
  proc = launch(f"--config={path}", f"--workdir={workdir}")
  assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
  assert re.search(r"\[1/1\] optimizer=sgd,learning_rate=1e\+30,seed=0  "
                   r"FAILED \(exit 1\) after [\d.]+ s: .*non-finite",
                   proc.stdout), proc.stdout
  assert "1 of 1 runs failed" in proc.stdout
  with open(workdir / "results.csv") as f:
    (row,) = list(csv.DictReader(f))
  assert row["status"] == "failed" and row["test_accuracy"] == ""


def test_dry_run_writes_nothing(tmp_path):
  path = write_sweep(tmp_path, [{"optimizer": ["sgd", "adam"]}], seeds=[3])
  workdir = tmp_path / "sweep"
  proc = launch(f"--config={path}", f"--workdir={workdir}", "--dry_run")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "2 runs (1 sub-grid(s), seeds [3])" in proc.stdout
  assert "optimizer=adam,seed=3\n  python -m launch.train" in proc.stdout
  assert not workdir.exists()


def test_ablation_digits_grid():
  """The shipped ablation grid expands and validates (nothing runs)."""
  s = sweep_lib.load(os.path.join(ROOT, "experiments", "configs",
                                  "ablation_digits.py"))
  assert len(s.points) == 130 and s.seeds == [0, 1, 2, 3, 4]
  assert len({p.name for p in s.points}) == 130
  ref = [p for p in s.points if p.name ==
         "optimizer=adam,kernel_quantizer=ste_sign,seed=0"]
  assert ref and ref[0].grids == [0, 1, 2, 3, 4, 5]
