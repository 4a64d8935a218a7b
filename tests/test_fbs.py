"""FBS: winners-take-all, MAC accounting, the L1 penalty, the FBS run."""
import doctest
import inspect
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import config_check
from experiments import fbs
from experiments import fbs_run
from experiments import models
from experiments import drivers
from experiments import train
from experiments.configs import fbs_digits
import sparsity
from tests import _export_check

# The modules that define these public functions (their doctests run here).
_fbs = inspect.getmodule(sparsity.winners_take_all)


# ------------------------------------------------------ winners-take-all --
@pytest.mark.parametrize("d,c,k", [(0.5, 32, 16), (0.75, 32, 24), (0.7, 10, 7),
                                   (0.5, 3, 2), (0.01, 10, 1), (1.0, 5, 5),
                                   (0.34, 3, 2)])
def test_wta_count_is_ceil(d, c, k):
  assert sparsity.wta_count(d, c) == k


@pytest.mark.parametrize("d", [0.0, -0.1, 1.5])
def test_wta_count_rejects_bad_density(d):
  with pytest.raises(ValueError, match="density"):
    sparsity.wta_count(d, 8)


@pytest.mark.parametrize("d", [1.0, 0.75, 0.5, 0.3])
def test_wta_keeps_exactly_k_largest_random(d):
  g = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (16, 20)) + 0.1)
  k = sparsity.wta_count(d, 20)
  out = np.asarray(sparsity.winners_take_all(jnp.asarray(g), k))
  assert ((out != 0).sum(-1) == k).all()
  # The kept entries are the k largest, unchanged; the others exactly 0.
  order = np.argsort(-g, axis=-1, kind="stable")[:, :k]
  want = np.zeros_like(g)
  np.put_along_axis(want, order, np.take_along_axis(g, order, -1), -1)
  np.testing.assert_array_equal(out, want)
  assert np.all(out[out != g] == 0.0)


def test_wta_ties_lower_index_wins():
  g = jnp.asarray([[1.0, 2.0, 2.0, 2.0, 0.5],
                   [3.0, 3.0, 3.0, 3.0, 3.0],
                   [0.0, 0.0, 5.0, 0.0, 0.0]])
  out = np.asarray(sparsity.winners_take_all(g, 2))
  np.testing.assert_array_equal(out, [[0.0, 2.0, 2.0, 0.0, 0.0],
                                      [3.0, 3.0, 0.0, 0.0, 0.0],
                                      [0.0, 0.0, 5.0, 0.0, 0.0]])
  # Row 3 keeps index 0 (a 0-valued winner): exactly k kept, the
  # second winner is itself 0.
  np.testing.assert_array_equal(np.asarray(sparsity.winners_take_all(
      jnp.asarray([[0.0, 0.0, 0.0, 1.0]]), 3)), [[0.0, 0.0, 0.0, 1.0]])


def test_wta_gradient_only_to_winners():
  g = jnp.asarray([[0.3, 0.9, 0.1, 0.5], [0.2, 0.1, 0.7, 0.6]])
  w = jnp.asarray([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
  grad = jax.grad(lambda x: jnp.sum(w * sparsity.winners_take_all(x, 2)))(g)
  np.testing.assert_array_equal(np.asarray(grad),
                                [[0.0, 2.0, 0.0, 4.0], [0.0, 0.0, 7.0, 8.0]])


def test_fbs_layer_keeps_k_channels_and_exact_zeros():
  model = models.FBSCNN(num_classes=3, convs=(4, "M", 6), gate_first=True,
                        density=0.5)
  x = jax.random.normal(jax.random.PRNGKey(1), (5, 4, 4, 2))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  _, sown = model.apply(variables, x, train=False, mutable=["fbs_gates"])
  gates = fbs.gates_of(sown["fbs_gates"])
  assert sorted(gates) == ["FBSConv_0", "FBSConv_1"]
  assert gates["FBSConv_0"].shape == (5, 4)
  assert (np.asarray(gates["FBSConv_0"]).sum(-1) <= 2).all()
  assert (np.asarray(gates["FBSConv_1"]).sum(-1) <= 3).all()
  # A suppressed channel of layer 1 is exactly 0 at the layer's output.
  _, inter = model.apply(variables, x, train=False,
                         capture_intermediates=True)
  y = np.asarray(inter["intermediates"]["FBSConv_0"]["__call__"][0])
  off = ~np.asarray(gates["FBSConv_0"])
  assert np.all(y.transpose(0, 3, 1, 2)[off] == 0.0)


# --------------------------------------------------------- MAC accounting --
def _two_layer():
  """FBS 4 (image input), pool, FBS 6, global pool, dense 3 on 4x4x2."""
  model = models.FBSCNN(num_classes=3, convs=(4, "M", 6), gate_first=True,
                        density=0.5)
  return fbs.mac_plan(models.layer_list(model, (4, 4, 2)), (4, 4, 2))


def test_mac_plan_of_a_two_layer_net_by_hand():
  plan = {r["name"]: r for r in _two_layer()}
  # conv 1: 4x4 out, 3x3 kernel, 2 -> 4: 16 * 9 * 2 * 4 = 1152
  # conv 2: 2x2 out (after the 2x2 pool), 4 -> 6: 4 * 9 * 4 * 6 = 864
  # dense: 6 -> 3 = 18; predictors: 2 x 4 = 8 and 4 x 6 = 24
  assert {k: (v["dense_macs"], v["predictor"], v["gate_in"], v["gate_out"])
          for k, v in plan.items()} == {
              "FBSConv_0/saliency": (8, True, None, None),
              "FBSConv_0/Conv_0": (1152, False, None, "FBSConv_0"),
              "FBSConv_1/saliency": (24, True, None, None),
              "FBSConv_1/Conv_0": (864, False, "FBSConv_0", "FBSConv_1"),
              "Dense_0": (18, False, "FBSConv_1", None)}


def test_executed_macs_by_hand():
  plan = _two_layer()
  t, f = True, False
  gates = {"FBSConv_0": np.asarray([[t, f, t, f], [f, f, t, f]]),
           "FBSConv_1": np.asarray([[t, t, f, f, t, f], [f, t, t, t, f, f]])}
  got = {k: np.asarray(v) for k, v in fbs.executed_macs(plan, gates).items()}
  # example 0: conv 1 16*9*2*2 = 576, conv 2 4*9*2*3 = 216, dense 3*3 = 9
  # example 1: conv 1 16*9*2*1 = 288, conv 2 4*9*1*3 = 108, dense 3*3 = 9
  want = {"FBSConv_0/saliency": [8, 8], "FBSConv_0/Conv_0": [576, 288],
          "FBSConv_1/saliency": [24, 24], "FBSConv_1/Conv_0": [216, 108],
          "Dense_0": [9, 9]}
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k])
  mean = {k: v.mean() for k, v in got.items()}
  m = fbs.macs_metrics(plan, mean)
  # (576 + 216 + 9 + 32 + 288 + 108 + 9 + 32) / 2 / (1152 + 864 + 18)
  assert m["macs_fraction"] == pytest.approx(635 / 2034, rel=1e-12)
  assert m["macs_overhead_fraction"] == pytest.approx(32 / 2034, rel=1e-12)
  rows = fbs.layer_table(plan, m)
  fractions = [r["fraction"] for r in rows]
  # Layers without gating have no fraction (None); compare them apart:
  # pytest >= 9.2 refuses None inside approx.
  assert [f is None for f in fractions] == [True, False, True, False, False]
  assert [f for f in fractions if f is not None] == pytest.approx(
      [432 / 1152, 162 / 864, 9 / 18], rel=1e-12)
  assert "total" in fbs.format_layer_table(rows, m)


def test_batchnorm_stops_the_input_gate_chain():
  """A BatchNorm between a gate and the next conv adds its shift to the
  zeroed channels: the next conv's input is then dense."""
  layers = [
      {"name": "P/saliency", "op": "dense", "inputs": ["pool_0"],
       "shape": [2]},
      {"name": "pool_0", "op": "pool", "inputs": ["input"], "kind": "avg",
       "global": True, "shape": [2]},
      {"name": "wta_0", "op": "wta", "inputs": ["P/saliency"], "k": 1,
       "density": 0.5, "shape": [2]},
      {"name": "P/Conv_0", "op": "conv", "inputs": ["input"],
       "kernel_size": [1, 1], "feature_group_count": 1, "shape": [3, 3, 2]},
      {"name": "gate_0", "op": "gate", "inputs": ["P/Conv_0", "wta_0"],
       "shape": [3, 3, 2]},
      {"name": "bn", "op": "batchnorm", "inputs": ["gate_0"],
       "shape": [3, 3, 2]},
      {"name": "c_bn", "op": "conv", "inputs": ["bn"], "kernel_size": [1, 1],
       "feature_group_count": 1, "shape": [3, 3, 5]},
      {"name": "relu", "op": "activation", "kind": "relu",
       "inputs": ["gate_0"], "shape": [3, 3, 2]},
      {"name": "c_relu", "op": "conv", "inputs": ["relu"],
       "kernel_size": [1, 1], "feature_group_count": 1, "shape": [3, 3, 5]},
  ]
  plan = {r["name"]: r for r in fbs.mac_plan(layers, (3, 3, 2))}
  assert plan["c_bn"]["gate_in"] is None
  assert plan["c_relu"]["gate_in"] == "P"
  assert plan["P/Conv_0"]["gate_out"] == "P"
  assert plan["c_relu"]["dense_macs"] == 9 * 2 * 5


# ------------------------------------------------------- the L1 penalty --
def test_l1_penalty_adds_exactly_lambda_times_saliency_norm():
  lam = 0.37
  x = jax.random.normal(jax.random.PRNGKey(2), (6, 4, 4, 2))
  batch = {"image": x, "label": jnp.arange(6) % 3}
  with_l1 = models.FBSCNN(num_classes=3, convs=(4,), gate_first=True,
                          density=0.5, saliency_l1=lam)
  without = with_l1.clone(saliency_l1=0.0)
  v = with_l1.init(jax.random.PRNGKey(0), x, train=False)
  l1, _ = train.loss_fn(with_l1, v["params"], v["batch_stats"], batch,
                         True)  # pylint: disable=protected-access
  l0, _ = train.loss_fn(without, v["params"], v["batch_stats"], batch,
                         True)  # pylint: disable=protected-access
  p = v["params"]["FBSConv_0"]["saliency"]
  s = np.abs(np.asarray(x, np.float64)).mean(axis=(1, 2))
  g = np.maximum(s @ np.asarray(p["kernel"], np.float64)
                 + np.asarray(p["bias"], np.float64), 0.0)
  np.testing.assert_allclose(np.asarray(l1) - np.asarray(l0),
                             lam * np.abs(g).sum(-1), rtol=1e-5)
  # Evaluation adds nothing.
  e1, _ = train.loss_fn(with_l1, v["params"], v["batch_stats"], batch,
                         False)  # pylint: disable=protected-access
  e0, _ = train.loss_fn(without, v["params"], v["batch_stats"], batch,
                         False)  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.asarray(e1), np.asarray(e0))


# ------------------------------------------------------------ config ----
def _config(density=0.5, steps=12):
  c = fbs_digits.get_config()
  c.model_kwargs.density = density
  c.num_steps = steps
  c.batch_size = 32
  c.eval_batch_size = 512
  c.log_every = steps
  c.eval_every = steps
  c.checkpoint_every = steps
  return c


@pytest.mark.parametrize("field,value,culprit", [
    ("model_kwargs.density", 0.0, "config.model_kwargs.density"),
    ("model_kwargs.density", 1.5, "config.model_kwargs.density"),
    ("model_kwargs.saliency_l1", -1.0, "config.model_kwargs.saliency_l1"),
    ("pruning.method", "magnitude", "config.pruning.method"),
    ("model", "mlp", "config.model"),
])
def test_config_errors_name_the_field(field, value, culprit):
  c = _config()
  node = c
  *head, last = field.split(".")
  for h in head:
    if h not in node:  # pruning: an FBS config has no pruning section
      node[h] = {}
    node = node[h]
  node[last] = value
  with pytest.raises(config_check.ConfigError, match=culprit.replace(
      ".", r"\.") + ":"):
    config_check.validate(c)


def test_fbs_model_needs_the_fbs_section():
  c = _config()
  del c["fbs"]
  with pytest.raises(config_check.ConfigError, match=r"^config\.fbs:"):
    config_check.validate(c)


def test_sweep_expands_four_densities():
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  s = sweep.load(fbs_digits.__file__, check_build=False)
  assert sorted(p.values["model_kwargs.density"] for p in s.points) == [
      0.25, 0.5, 0.75, 1.0]


# ------------------------------------------------------------- the run ----
DIGITS_DENSE = 18432 + 589824 + 294912 + 589824 + 640   # conv/dense layers
DIGITS_OVERHEAD = 32 * 32 + 32 * 64 + 64 * 64          # saliency predictors


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("fbs")
  out = {}
  for d in (1.0, 0.5):
    wd = str(root / f"d{d}")
    out[d] = (wd, drivers.run(_config(d, steps=30), wd))
  return out


def test_run_reports_macs_fraction(runs):
  s1, s05 = runs[1.0][1], runs[0.5][1]
  over = DIGITS_OVERHEAD / DIGITS_DENSE
  for s in (s1, s05):
    assert s["final"]["test_accuracy"] > 0.5
    assert s["final"]["macs_overhead_fraction"] == pytest.approx(over)
    assert len(s["fbs_layers"]) == 8
  # d = 1: every channel is a winner; only a saliency that its ReLU made
  # exactly 0 skips its channel, so executed <= dense + predictors.
  # (It happens: this run skips ~10%.)
  assert 0.5 < s1["final"]["macs_fraction"] <= (1.0 + over) * (1 + 1e-6)
  for r in s1["fbs_layers"]:
    assert r["predictor"] or 0.5 < r["fraction"] <= 1.0 + 1e-6
    if r["name"] == "Conv_0":  # ungated, input is the image
      assert r["fraction"] == 1.0
  # d = 0.5: output halves, inputs of gated layers halve as well:
  # (18432 + 589824/2 + 294912/4 + 589824/4 + 640/2 + overhead) / dense
  # at most (a ReLU-dead saliency could skip more).
  half = (18432 + 589824 / 2 + 294912 / 4 + 589824 / 4 + 640 / 2
          + DIGITS_OVERHEAD) / DIGITS_DENSE
  assert s05["final"]["macs_fraction"] <= half * (1 + 1e-6)
  assert 0.2 < s05["final"]["macs_fraction"] < s1["final"]["macs_fraction"]
  rows = {r["name"]: r for r in s05["fbs_layers"]}
  assert rows["FBSConv_1/Conv_0"]["fraction"] <= 0.25 + 1e-6
  with open(os.path.join(runs[0.5][0], "summary.json")) as f:
    assert json.load(f)["final"]["macs_fraction"] == pytest.approx(
        s05["final"]["macs_fraction"])


def test_export_evaluates_to_the_reported_accuracy(runs, tmp_path):
  """launch.export of the finished d = 0.5 run (its newest checkpoint, the
  gates in the file), evaluated without JAX with skipped channels: the
  summary's test accuracy exactly."""
  workdir, summary = runs[0.5]
  result, _ = _export_check.check(workdir, tmp_path)
  assert result["accuracy"] == summary["final"]["test_accuracy"]
  assert any("skip(" in row["kernel"] for row in result["layers"])


def test_no_retrace_across_steps_and_evals(tmp_path):
  c = _config(0.5, steps=6)
  c.eval_every = 2
  engine = train.Engine(c)
  train.train_phase(engine, str(tmp_path / "p"),
                    lambda: engine.init(jax.random.PRNGKey(0)),
                    end_step=6, data_seed=0, checkpoint_start=False)
  assert engine.train_step()._cache_size() == 1  # pylint: disable=protected-access
  assert engine._eval_step._cache_size() == 1  # pylint: disable=protected-access


def test_init_from_a_trained_network(runs, tmp_path):
  src_dir = runs[1.0][0]
  c = _config(0.5, steps=4)
  c.fbs.init_from = src_dir
  engine = train.Engine(c)
  loaded = fbs_run.load_start(engine, src_dir)
  src = train.load_state(_config(1.0), src_dir)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(
      {"params": src.params, "batch_stats": src.batch_stats})):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  s = drivers.run(c, str(tmp_path / "ft"))
  assert s["fbs"]["init_from"] == src_dir
  assert s["final"]["step"] == 4
  assert s["final"]["macs_fraction"] < 0.5


def test_init_from_errors(runs, tmp_path):
  c = _config(0.5)
  c.fbs.init_from = str(tmp_path / "nothing")
  with pytest.raises(config_check.ConfigError,
                     match=r"^config\.fbs\.init_from: no finished run"):
    drivers.run(c, str(tmp_path / "a"))
  assert not os.path.exists(tmp_path / "a")
  c2 = _config(0.5)
  c2.model_kwargs.convs = (16,)
  with pytest.raises(config_check.ConfigError,
                     match=r"^config\.fbs\.init_from: .*do not match"):
    fbs_run.load_start(train.Engine(c2), runs[1.0][0])


@pytest.mark.parametrize("module", [_fbs, fbs])
def test_doctests(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
