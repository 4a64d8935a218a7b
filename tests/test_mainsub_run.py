"""The main/subsidiary driver end to end on a tiny digits run."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import config_check
from experiments import mainsub_run
from experiments import drivers
from experiments.configs import mainsub_digits
from tests import _export_check

LAYERS = ("BinaryConv_2", "BinaryConv_4")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def tiny(recipe="budget", **overrides):
  config = mainsub_digits.get_config(recipe)
  config.model_kwargs.width = 1 / 16
  config.model_kwargs.variant = "benn"   # 7 convs: less to compile
  config.model_kwargs.dropout = 0.0
  config.num_steps = 20
  config.log_every = 10
  config.eval_every = 10
  config.checkpoint_every = 10
  config.mainsub.sub_steps = 6
  config.mainsub.finetune_steps = 4
  config.mainsub.sub_lr = 0.01
  config.mainsub.alpha = 0.0
  config.mainsub.layers = LAYERS
  for k, v in overrides.items():
    node = config
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("mainsub") / "run")
  return d, drivers.run(tiny(), d)


def test_summary_and_stages(finished):
  d, s = finished
  with open(os.path.join(d, "summary.json")) as f:
    assert json.load(f) == s
  assert [r["name"] for r in s["layers"]] == list(LAYERS)
  kept = sum(r["kept"] for r in s["layers"])
  total = sum(r["filters"] for r in s["layers"])
  assert s["filters_remaining_fraction"] == kept / total
  assert s["final"]["filters_remaining_fraction"] == kept / total
  assert {"test_accuracy", "test_loss", "step"} <= set(s["final"])
  for r in s["layers"]:
    assert r["kept_fraction"] == r["kept"] / r["filters"]
    # The budget recipe (the default): round(0.25 x 12) of 12 filters go.
    assert (r["filters"], r["kept"]) == (12, 9)
  assert s["mainsub"]["budget"] == 0.25
  assert s["mainsub"]["sub_optimizer"] == "adam"
  assert set(s["controls"]) == {"greedy", "random", "learned"}
  # Scratch-E / Scratch-B of the final mask (Liu et al. 2019).
  assert 0.0 < s["final"]["macs_fraction"] <= 1.0
  assert s["baselines"]["scratch_e"]["steps"] == 20
  assert s["baselines"]["scratch_b"]["steps"] >= 20
  for c in s["controls"].values():
    assert c["filters_remaining_fraction"] == pytest.approx(kept / total)
    assert c["kept"] == {r["name"]: r["kept"] for r in s["layers"]}
    assert c["end_step"] == 2 * 4
  for sub in ("main", "layer_00_sub", "layer_00_main", "layer_01_sub",
              "layer_01_main", "controls/greedy", "controls/random"):
    assert os.path.exists(os.path.join(d, sub, "result.json")), sub
  assert os.path.getsize(os.path.join(d, "mainsub.md")) > 0


def test_removed_filters_are_zero_and_stay_zero(finished):
  d, s = finished
  driver = mainsub_run.Driver(tiny(), d)
  last = driver.final_state(driver.main_dir(1))
  sub1 = driver.final_state(driver.sub_dir(1), driver.sub_engine(LAYERS[1]))
  for i, name in enumerate(LAYERS):
    with open(os.path.join(driver.sub_dir(i), "result.json")) as f:
      keep = np.asarray(json.load(f)["keep"], bool)
    kernel = np.asarray(last.params[name]["kernel"])
    mask = np.asarray(last.mask[name]["kernel"])
    assert (kernel[..., ~keep] == 0).all()         # after fine-tuning
    if keep.any():
      assert (kernel[..., keep] != 0).mean() > 0.99
    np.testing.assert_array_equal(mask, np.broadcast_to(keep, mask.shape))
    assert keep.sum() == s["layers"][i]["kept"]
  # Layer 1's subsidiary stage started from layer 0's pruned net and
  # trained only its gate: every weight equals layer_00_main's final one.
  main0 = driver.final_state(driver.main_dir(0))
  for name in ("Conv_0", *LAYERS):
    np.testing.assert_array_equal(sub1.params[name]["kernel"],
                                  main0.params[name]["kernel"])
  assert "BinaryConv_4_subsidiary" in sub1.params


def test_export_of_the_last_main_stage_evaluates_to_its_accuracy(
    finished, tmp_path):
  """launch.export of the finished run (the last main stage, keeps baked
  into the kernels), evaluated without JAX: the summary's accuracy."""
  d, s = finished
  result, info = _export_check.check(d, tmp_path)
  assert result["accuracy"] == s["final"]["test_accuracy"]
  assert "main stage" in info["result"]


def test_greedy_control_removes_the_smallest_filters(finished):
  d, s = finished
  driver = mainsub_run.Driver(tiny(), d)
  subs = [json.load(open(os.path.join(driver.sub_dir(i), "result.json")))
          for i in range(2)]
  keeps = driver.control_keeps("greedy", subs)
  main = jax.device_get(driver.final_state(driver.d("main")).params)
  for name, keep in keeps.items():
    score = np.abs(main[name]["kernel"]).reshape(-1, keep.size).mean(0)
    if 0 < keep.sum() < keep.size:
      assert score[keep].min() >= score[~keep].max()
  learned = driver.control_keeps("learned", subs)
  for s_ in subs:
    np.testing.assert_array_equal(learned[s_["layer"]], np.asarray(
        s_["keep"], bool))
  rand = driver.control_keeps("random", subs)
  assert {k: int(v.sum()) for k, v in rand.items()} == \
      {k: int(v.sum()) for k, v in keeps.items()}


def _penalty_run(tmp_path, alpha):
  """One pruned layer, released recipe's count penalty with gates
  initialised at 0.5 and plain SGD; no controls, no baselines."""
  return drivers.run(tiny(
      "released", **{"mainsub.alpha": alpha, "mainsub.sub_optimizer": "sgd",
                     "mainsub.sub_lr": 0.1, "mainsub.gate_init": 0.5,
                     "mainsub.layers": ("BinaryConv_2",),
                     "mainsub.controls": (), "mainsub.scratch": False}),
                                 str(tmp_path / f"alpha_{alpha}"))


def test_count_penalty_removes_filters(tmp_path):
  # Each SGD step moves every gate inside the STE window down by
  # lr x alpha / 2 = 0.5 on top of the task gradient: the gates start at
  # 0.5 and are gone within a few of the 6 steps.  Without the penalty the
  # task gradient alone (lr 0.1) leaves every gate on the kept side.
  on = _penalty_run(tmp_path, 10.0)
  off = _penalty_run(tmp_path, 0.0)
  assert on["mainsub"]["alpha"] == 10.0 and on["mainsub"]["budget"] == 0.0
  [r_on], [r_off] = on["layers"], off["layers"]
  assert r_off["kept"] == r_off["filters"] == 12
  assert r_on["kept"] < r_on["filters"] // 2
  assert on["filters_remaining_fraction"] == r_on["kept"] / 12
  assert on["controls"] == {} and "baselines" not in on


_KILL_SCRIPT = r"""
import os, signal, sys
sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
from experiments import data as data_lib, drivers
import test_mainsub_run
n = int(sys.argv[2]); calls = {{"n": 0}}
real = data_lib.train_batch
def batch(source, step, **kw):
  calls["n"] += 1
  if calls["n"] == n:
    os.kill(os.getpid(), signal.SIGKILL)
  return real(source, step, **kw)
data_lib.train_batch = batch
drivers.run(test_mainsub_run.tiny(checkpoint_every=2),
                         sys.argv[1])
"""


def test_kill_9_mid_subsidiary_stage_resumes_bit_identically(finished,
                                                              tmp_path):
  # Killed at the 25th batch: the main network took 20, so this is step 4
  # of layer_00_sub (checkpoint at step 2: the budget's update count and
  # the gates' SGD state are restored mid-anneal).
  ref_dir, ref = finished
  workdir = str(tmp_path / "killed")
  script = _KILL_SCRIPT.format(tests=HERE, root=ROOT)

  def run(n):
    return subprocess.run([sys.executable, "-c", script, workdir, str(n)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))

  proc = run(25)
  assert proc.returncode == -9, proc.stderr[-2000:]
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  assert not os.path.exists(os.path.join(workdir, "layer_00_sub",
                                         "result.json"))
  proc = run(0)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(workdir, "summary.json")) as f:
    got = json.load(f)
  assert got == json.loads(json.dumps(ref))
  config = tiny(checkpoint_every=2)
  a, b = (mainsub_run.Driver(config, d) for d in (workdir, ref_dir))
  for sub in (a.main_dir(1), a.d("controls", "greedy"),
              a.d("controls", "random"), a.d("scratch_b")):
    rel = os.path.relpath(sub, workdir)
    x = jax.device_get(a.final_state(sub))
    y = jax.device_get(b.final_state(os.path.join(ref_dir, rel)))
    for u, v in zip(jax.tree.leaves((x.params, x.batch_stats, x.mask)),
                    jax.tree.leaves((y.params, y.batch_stats, y.mask))):
      np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("field,value", [
    ("model_kwargs.use_bias", True), ("mainsub.penalty", "l1"),
    ("mainsub.sub_steps", 0), ("mainsub.alpha", -1.0),
    ("mainsub.budget", 1.0), ("mainsub.budget", -0.1),
    ("mainsub.gate_init", 1.5), ("mainsub.gate_init", True),
    ("mainsub.sub_optimizer", "rmsprop"),
    ("mainsub.alpha", 1e-8),     # a penalty beside the budget is refused
    ("mainsub.controls", ("greedy", "magnitude")), ("model", "binary_mlp"),
    ("mainsub.layers", ("BinaryConv_9",))])
def test_bad_config_names_the_field(field, value, tmp_path):
  with pytest.raises(config_check.ConfigError,
                     match=field.replace(".", r"\.")):
    drivers.run(tiny(**{field: value}), str(tmp_path / "w"))
  assert not os.path.exists(str(tmp_path / "w"))


@pytest.mark.parametrize("name", ["mainsub_digits", "mainsub_cifar10_nin"])
def test_configs_validate(name):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  config_check.validate(config, device_count=1)
