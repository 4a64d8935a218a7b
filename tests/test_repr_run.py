"""The RePr driver end to end on digits: cycles, filter masks, re-init,
the standard-training twin, resume after kill -9 and bad input."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import orbax.checkpoint as ocp

from experiments import checkpointing
from experiments import config_check
from experiments import repr_run
from experiments import drivers
from experiments.configs import repr_digits
import sparsity
from tests import _export_check

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# 2 cycles of 10 + 5 steps, then 10 more: 40 steps, seconds on CPU.
SMALL = {"num_steps": 40, "log_every": 5, "eval_every": 5,
         "checkpoint_every": 5, "keep_checkpoints": 20,
         "repr.s1_steps": 10, "repr.s2_steps": 5, "repr.cycles": 2}


def small_repr_config(**overrides):
  config = repr_digits.get_config()
  for key, value in {**SMALL, **overrides}.items():
    node = config
    *path, last = key.split(".")
    for p in path:
      if p not in node:  # pruning: a RePr config has no pruning section
        node[p] = {}
      node = node[p]
    node[last] = value
  return config


def _load(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("repr"))
  config = small_repr_config()
  return config, workdir, drivers.run(config, workdir)


def test_summary_and_dropped_counts(finished):
  config, workdir, summary = finished
  assert _load(workdir, "summary.json") == json.loads(json.dumps(summary))
  f = summary["final"]
  assert f["step"] == 40 and 0.0 <= f["test_accuracy"] <= 1.0
  assert f["remaining_fraction"] == 1.0  # every filter is back at the end
  assert summary["repr"]["ranked_layers"] == ["Conv_1", "Conv_2"]
  assert [c["cycle"] for c in summary["cycles"]] == [0, 1]
  for c in summary["cycles"]:
    # The global top 30% of 2 x 32 ranked filters: round(19.2) = 19.
    assert c["dropped_total"] == 19 == sum(c["dropped"].values())
    assert c["filters"] == {"Conv_1": 32, "Conv_2": 32}
    assert c["reinit_null_space"] == c["dropped"]  # d = 288 >> 32 + 19
    assert set(c["val_accuracy"]) == {"before_drop", "after_drop",
                                      "end_of_sub_network", "after_reinit"}
  assert summary["cycles"][1]["drop_step"] == 25
  assert summary["dropped_per_layer"]["Conv_1"] == [
      c["dropped"]["Conv_1"] for c in summary["cycles"]]
  for phase in ("cycle_00/full", "cycle_00/sparse", "cycle_01/full",
                "cycle_01/sparse", "final"):
    assert os.path.exists(os.path.join(workdir, phase, "metrics.jsonl"))


def test_dropped_filters_held_at_zero_then_reinit_orthogonal(finished):
  config, workdir, summary = finished
  driver = repr_run.Driver(config, workdir)
  full = driver.final_of(os.path.join(workdir, "cycle_01", "full"))
  sub = driver.final_of(os.path.join(workdir, "cycle_01", "sparse"))
  assert int(full.step) == 25 and int(sub.step) == 30
  sel = driver.selection_of(sub)
  assert {k: int(v.sum()) for k, v in sel.items()} == (
      summary["cycles"][1]["dropped"])
  params = jax.device_get(sub.params)
  for name, s in sel.items():
    k = np.asarray(params[name]["kernel"])
    assert np.all(k[..., s] == 0)
    assert np.all(np.any(k[..., ~s] != 0, axis=(0, 1, 2)))
    assert np.all(np.asarray(params[name]["bias"])[s] == 0)
    assert not np.asarray(sub.mask[name]["bias"])[s].any()
  # The same selection comes out of the ranking of the full network.
  scores = sparsity.repr_scores(jax.device_get(full.params), driver.ranked)
  again = sparsity.repr_select(scores, 0.3)
  assert all((again[n] == sel[n]).all() for n in sel)
  # The re-initialised start of the final phase: new filters orthogonal to
  # the kept ones and to their pre-drop values; it is what `final/` starts
  # from (its first checkpoint, step 30).
  start, _ = driver.reinit(1)
  mngr = checkpointing.manager(os.path.join(workdir, "final"), keep=20)
  assert mngr.all_steps()[0] == 30
  ckpt = mngr.restore(30, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(checkpointing.abstract_like(
          driver.engine.abstract, driver.engine.shardings))))
  for x, y in zip(jax.tree.leaves(jax.device_get(ckpt.state.params)),
                  jax.tree.leaves(jax.device_get(start.params))):
    np.testing.assert_array_equal(x, y)
  pre = jax.device_get(full.params)
  new = jax.device_get(start.params)
  assert sum(int(s.sum()) for s in sel.values()) == 19
  for name, s in sel.items():
    if not s.any():
      continue
    rows = np.asarray(new[name]["kernel"]).reshape(-1, 32).T
    old = np.asarray(pre[name]["kernel"]).reshape(-1, 32).T[s]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa
    assert np.abs(unit(rows[s]) @ unit(rows[~s]).T).max() < 1e-5
    assert np.abs(unit(rows[s]) @ unit(old).T).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(rows[s], axis=1),
                               np.linalg.norm(rows[~s], axis=1).mean(),
                               rtol=1e-5)
  assert bool(jax.tree.reduce(lambda a, b: a and b, jax.tree.map(
      lambda m: bool(np.all(m)), jax.device_get(start.mask))))


def test_standard_twin_same_steps_and_data(finished, tmp_path):
  config, workdir, summary = finished
  twin = small_repr_config(**{"repr.cycles": 0})
  out = drivers.run(twin, str(tmp_path / "std"))
  assert out["final"]["step"] == summary["final"]["step"] == 40
  assert out["cycles"] == []
  # Identical up to the first drop: same init, optimizer and batches.
  rows_a = [json.loads(x) for x in open(
      os.path.join(workdir, "cycle_00", "full", "metrics.jsonl"))]
  rows_b = [json.loads(x) for x in open(
      os.path.join(tmp_path / "std", "final", "metrics.jsonl"))]
  a = [r["train_loss"] for r in rows_a if "train_loss" in r and r["step"] <= 10]
  b = [r["train_loss"] for r in rows_b if "train_loss" in r and r["step"] <= 10]
  assert a and a == b


def test_export_of_the_final_phase_evaluates_to_its_accuracy(finished,
                                                             tmp_path):
  """launch.export of a finished RePr run (its final phase), evaluated
  without JAX: the summary's test accuracy exactly."""
  _, workdir, summary = finished
  result, info = _export_check.check(workdir, tmp_path)
  assert result["accuracy"] == summary["final"]["test_accuracy"]
  assert info["step"] == summary["final"]["step"]
  assert "final phase" in info["result"]


def test_finished_run_returns_stored_summary(finished):
  config, workdir, summary = finished
  again = drivers.run(config, workdir)
  assert again == _load(workdir, "summary.json")


_KILL_SCRIPT = r"""
import os, signal, sys, json
sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
from experiments import data as data_lib, drivers
import test_repr_run
n = int(sys.argv[2]); calls = {{"n": 0}}
real = data_lib.train_batch
def batch(source, step, **kw):
  calls["n"] += 1
  if calls["n"] == n:
    os.kill(os.getpid(), signal.SIGKILL)
  return real(source, step, **kw)
data_lib.train_batch = batch
drivers.run(test_repr_run.small_repr_config(), sys.argv[1])
"""


def test_kill_9_mid_cycle_resumes_bit_identically(finished, tmp_path):
  _, ref_dir, ref = finished
  workdir = str(tmp_path / "killed")
  script = _KILL_SCRIPT.format(tests=HERE, root=ROOT)

  def run(n):
    return subprocess.run([sys.executable, "-c", script, workdir, str(n)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))

  assert run(13).returncode == -9   # in cycle_00/sparse (steps 10..15)
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  proc = run(0)
  assert proc.returncode == 0, proc.stderr[-2000:]
  got = _load(workdir, "summary.json")
  assert got["final"] == ref["final"]
  assert got["cycles"] == json.loads(json.dumps(ref["cycles"]))
  config = small_repr_config()
  a = repr_run.Driver(config, workdir).final_of(
      os.path.join(workdir, "final"))
  b = repr_run.Driver(config, ref_dir).final_of(
      os.path.join(ref_dir, "final"))
  for x, y in zip(jax.tree.leaves(jax.device_get(a.params)),
                  jax.tree.leaves(jax.device_get(b.params))):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("field,value,words", [
    ("repr.drop_fraction", 1.0, "repr.drop_fraction"),
    ("repr.ranking", "bogus", "repr.ranking"),
    ("repr.reinit", "qr", "repr.reinit"),
    ("repr.cycles", 5, "repr.cycles"),
    ("repr.s1_steps", 0, "repr.s1_steps"),
    ("pruning.method", "magnitude", "pruning.method"),
])
def test_bad_repr_config_names_the_field(tmp_path, field, value, words):
  config = small_repr_config(**{field: value})
  with pytest.raises(config_check.ConfigError, match=words.replace(".", r"\.")):
    drivers.run(config, str(tmp_path / "bad"))
  assert not os.path.exists(tmp_path / "bad")


def test_model_without_ranked_conv_is_refused(tmp_path):
  config = small_repr_config(model="mlp")
  config.model_kwargs = {"hidden": (8,)}
  with pytest.raises(config_check.ConfigError, match="config.model"):
    drivers.run(config, str(tmp_path / "mlp"))
  assert not os.path.exists(tmp_path / "mlp")


def test_launch_exit_2_and_workdir_untouched(finished):
  _, workdir, _ = finished
  listing = sorted(os.listdir(workdir))
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       "--config=experiments/configs/repr_digits.py",
       f"--workdir={workdir}", "--config.repr.drop_fraction=0"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "repr.drop_fraction" in lines[0], proc.stderr
  assert sorted(os.listdir(workdir)) == listing


@pytest.mark.parametrize("name,shape,n_ranked", [
    ("repr_digits", (8, 8, 1), 2), ("repr_cifar10", (32, 32, 3), 2),
    ("repr_resnet20_cifar10", (32, 32, 3), 18)])
def test_configs_validate_and_rank_the_intended_layers(name, shape, n_ranked):
  import importlib  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  config_check.validate(config)
  rc = config.repr
  assert rc.cycles * (rc.s1_steps + rc.s2_steps) < config.num_steps
  layers = models.layer_list(models.get_model(config.model, 10), shape)
  convs = [e["name"] for e in layers if e["op"] == "conv"]
  ranked = [n for n in convs[1:] if not any(
      config_check.layer_matches(p, n) for p in rc.exclude)]
  assert len(ranked) == n_ranked
  if name == "repr_cifar10":  # 3 x 32 filters 3x3, then FC 512 -> 10
    params = models.abstract_variables(models.get_model(config.model, 10),
                                       shape)["params"]
    kernels = {sparsity.leaf_name(p): x.shape for p, x in
               jax.tree_util.tree_flatten_with_path(params)[0]
               if sparsity.leaf_name(p).endswith("kernel")}
    assert kernels == {"Conv_0/kernel": (3, 3, 3, 32),
                       "Conv_1/kernel": (3, 3, 32, 32),
                       "Conv_2/kernel": (3, 3, 32, 32),
                       "Dense_0/kernel": (512, 10)}
    assert rc.s1_steps == 20 * 352 and rc.s2_steps == 10 * 352
    assert rc.cycles == 3 and rc.drop_fraction == 0.3
