"""FPGM, Network Slimming, structured MACs and the scratch baselines."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments import config_check
from experiments import filterprune_run
from experiments import structured
from experiments import drivers
from experiments import train
from experiments.configs import fpgm_digits
from experiments.configs import slimming_digits
import sparsity
from tests import _export_check

# Four 2-D filters (columns): points (0,0), (1,0), (0,1), (5,5).
# Distance sums: (0,0): 1 + 1 + 7.0711 = 9.0711; (1,0): 1 + 1.4142 +
# 6.4031 = 8.8173; (0,1): 8.8173; (5,5): 7.0711 + 2 * 6.4031 = 19.8773.
POINTS = np.array([[0., 1., 0., 5.],
                   [0., 0., 1., 5.]])


def test_fpgm_prunes_the_filters_nearest_the_geometric_median():
  # rate 0.25: floor(4 * .25) = 1 filter; (1,0) and (0,1) tie at 8.8173,
  # the lower index goes.
  assert sparsity.fpgm_keep(POINTS, 0.25).tolist() == [True, False, True,
                                                       True]
  assert sparsity.fpgm_keep(POINTS, 0.5).tolist() == [True, False, False,
                                                      True]
  # (0,0), (2,0), (10,0): sums 12, 10, 18 -> (2,0) goes.
  line = np.array([[0., 2., 10.]])
  assert sparsity.fpgm_keep(line, 0.34).tolist() == [True, False, True]


def test_fpgm_norm_step_then_distance_among_the_rest():
  # rate_norm .75: floor(4 * .25) = 1 smallest-L2 filter (index 0) goes;
  # among (1,0), (0,1), (5,5): sums 7.8173, 7.8173, 12.806 -> index 1.
  keep = sparsity.fpgm_keep(POINTS, 0.25, rate_norm=0.75)
  assert keep.tolist() == [False, False, True, True]
  # The norm criterion (soft filter pruning control): smallest L2 first.
  assert sparsity.fpgm_keep(POINTS, 0.25, criterion="l2").tolist() == [
      False, True, True, True]
  assert sparsity.fpgm_keep(POINTS, 0.5, criterion="l1").tolist() == [
      False, False, True, True]


def test_fpgm_keeps_one_filter_and_rejects_bad_rates():
  assert sparsity.fpgm_keep(POINTS[:, :1], 0.9).tolist() == [True]
  with pytest.raises(ValueError, match="rate_dist"):
    sparsity.fpgm_keep(POINTS, 1.0)
  with pytest.raises(ValueError, match="criterion"):
    sparsity.fpgm_keep(POINTS, 0.2, criterion="cosine")


def test_fpgm_on_conv_kernels_uses_whole_filters():
  k = np.zeros((3, 3, 2, 4))
  k[..., 0] = 1.0
  k[..., 1] = 1.1
  k[..., 2] = -3.0
  k[..., 3] = 0.8
  # Sums (per-element gaps times sqrt(18)): f0 .1+4+.2 = 4.3, f1 .1+4.1+.3
  # = 4.5, f2 4+4.1+3.8 = 11.9, f3 .2+.3+3.8 = 4.3 -> f0 and f3 tie; the
  # lower index goes. With rate .5 both go.
  masks = sparsity.fpgm_filter_masks({"Conv_0": k}, {"Conv_0": 0.25})
  assert masks["Conv_0"].tolist() == [False, True, True, True]
  masks = sparsity.fpgm_filter_masks({"Conv_0": k}, {"Conv_0": 0.5})
  assert masks["Conv_0"].tolist() == [False, True, True, False]


def test_slimming_prunes_the_globally_smallest_scales():
  scales = {"a": np.array([0.5, -0.01, 0.3, 0.2]),
            "b": np.array([0.02, 0.4, -0.03, 0.6])}
  # floor(8 * .5) = 4 smallest |gamma|: .01 (a1), .02 (b0), .03 (b2), .2 (a3)
  m = sparsity.slimming_filter_masks(scales, 0.5)
  assert m["a"].tolist() == [True, False, True, False]
  assert m["b"].tolist() == [False, True, False, True]
  # Ties: the earlier layer, then the lower channel, is pruned first.
  m = sparsity.slimming_filter_masks({"a": np.array([1., .1, .1]),
                                      "b": np.array([.1, 1.])}, 0.4)
  assert m["a"].tolist() == [True, False, False]
  assert m["b"].tolist() == [True, True]


def test_slimming_keeps_a_channel_per_layer():
  m = sparsity.slimming_filter_masks({"a": np.array([.01, .02]),
                                      "b": np.array([1., 2., 3.])}, 0.4)
  assert m["a"].tolist() == [False, True]  # both would go; the larger stays
  assert m["b"].tolist() == [True, True, True]


def test_bn_scale_l1_adds_the_subgradient_to_bn_scales_only():
  params = {"BatchNorm_0": {"scale": jnp.array([0.5, -2.0, 0.0]),
                            "bias": jnp.array([1.0, -1.0, 1.0])},
            "Conv_0": {"kernel": -jnp.ones((1, 1, 1, 3))}}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
  tx = sparsity.bn_scale_l1(1e-2)
  out, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(out["BatchNorm_0"]["scale"],
                             [0.26, 0.24, 0.25], rtol=1e-6)
  np.testing.assert_array_equal(out["BatchNorm_0"]["bias"], 0.25)
  np.testing.assert_array_equal(out["Conv_0"]["kernel"], 0.25)
  # With SGD the penalty alone shrinks |gamma| by lr * s per step.
  sgd = optax.chain(sparsity.bn_scale_l1(0.1), optax.sgd(1.0))
  zero = jax.tree.map(jnp.zeros_like, params)
  u, _ = sgd.update(zero, sgd.init(params), params)
  new = optax.apply_updates(params, u)
  np.testing.assert_allclose(new["BatchNorm_0"]["scale"], [0.4, -1.9, 0.0],
                             rtol=1e-6)


def _layer(name, op, inputs, shape, **kw):
  return {"name": name, "op": op, "inputs": inputs, "params": {},
          "shape": shape, **kw}


def test_structured_macs_counts_removed_inputs_of_the_next_layer():
  # conv1 3x3 1->4 on 4x4 SAME, BN of conv1, relu, conv2 3x3 4->2, relu,
  # flatten (4*4*2 = 32), dense 32->3.  Remove filter 1 of conv1 and
  # filter 0 of conv2:
  #   conv1 16*9*1*3 = 432 of 576; conv2 16*9*3*1 = 432 of 16*9*4*2 = 1152
  #   dense: live inputs 16 (channel 1 of each pixel) * 3 = 48 of 96.
  conv = dict(kernel_size=[3, 3], strides=[1, 1], feature_group_count=1)
  layers = [
      _layer("c1", "conv", ["input"], [4, 4, 4], **conv),
      _layer("bn", "batchnorm", ["c1"], [4, 4, 4]),
      _layer("r1", "activation", ["bn"], [4, 4, 4], kind="relu"),
      _layer("c2", "conv", ["r1"], [4, 4, 2], **conv),
      _layer("r2", "activation", ["c2"], [4, 4, 2], kind="relu"),
      _layer("f", "flatten", ["r2"], [32]),
      _layer("d", "dense", ["f"], [3]),
  ]
  out = structured.structured_macs(
      layers, {"c1": [True, False, True, True], "c2": [False, True]},
      input_shape=[4, 4, 1])
  got = {r["name"]: (r["macs"], r["dense_macs"]) for r in out["layers"]}
  assert got == {"c1": (432, 576), "c2": (432, 1152), "d": (48, 96)}
  assert out["macs"] == 912 and out["dense_macs"] == 1824
  assert out["macs_fraction"] == pytest.approx(0.5)
  # A sigmoid makes a dead channel live again (sigmoid(0) = 0.5).
  layers[2] = _layer("r1", "activation", ["bn"], [4, 4, 4], kind="sigmoid")
  out = structured.structured_macs(layers, {"c1": [True, False, True, True]},
                                   input_shape=[4, 4, 1])
  assert out["layers"][1]["macs"] == 1152


def test_structured_macs_with_weight_masks_and_unmasked_batchnorm():
  conv = dict(kernel_size=[3, 3], strides=[1, 1], feature_group_count=1)
  layers = [
      _layer("c1", "conv", ["input"], [4, 4, 4], **conv),
      _layer("bn", "batchnorm", ["c1"], [4, 4, 4]),
      _layer("r1", "activation", ["bn"], [4, 4, 4], kind="relu"),
      _layer("c2", "conv", ["r1"], [4, 4, 2], **conv),
  ]
  alive = {"c1": [True, False, True, True]}
  km = {"c1": np.ones((3, 3, 1, 4), bool), "c2": np.ones((3, 3, 4, 2), bool)}
  km["c2"][0, 0, 0, 0] = False   # a pruned weight on a live input: -16
  km["c2"][0, 0, 1, 0] = False   # on the dead input channel 1: already 0
  out = structured.structured_macs(layers, alive, input_shape=[4, 4, 1],
                                   kernel_masks=km)
  assert [r["macs"] for r in out["layers"]] == [432, 864 - 16]
  # A BatchNorm whose shift is not masked makes the dead channel live.
  out = structured.structured_macs(layers, alive, input_shape=[4, 4, 1],
                                   masked_bn=False)
  assert [r["macs"] for r in out["layers"]] == [432, 1152]


def test_scratch_b_steps():
  assert structured.scratch_b_steps(100, 0.4) == (250, 2.5)
  assert structured.scratch_b_steps(100, 0.25, max_factor=2.0) == (200, 2.0)


def _tiny(config):
  config.num_steps = 40
  config.log_every = 20
  config.eval_every = 20
  config.checkpoint_every = 20
  config.lr_decay_steps = (30,)
  config.model_kwargs = ml_collections.ConfigDict({"cfg": (8, "M", 16)})
  return config


def _leaf(tree, name, role):
  node = tree
  for k in name.split("/"):
    node = node[k]
  return np.asarray(node[role])


def test_fpgm_run_end_to_end(tmp_path):
  config = _tiny(fpgm_digits.get_config())
  config.filterprune.prune_every = 10
  workdir = str(tmp_path / "fpgm")
  summary = drivers.run(config, workdir)
  s = summary["structured"]
  # floor(8 * .4) = 3 and floor(16 * .4) = 6 filters gone.
  assert [r["filters_kept"] for r in s["layers"]] == [5, 10, 10]
  assert 0.0 < summary["final"]["macs_fraction"] < 1.0
  assert summary["final"]["macs_fraction"] == pytest.approx(
      s["macs"] / s["dense_macs"])
  for name in ("scratch_e", "scratch_b"):
    assert 0.0 <= summary["baselines"][name]["test_accuracy"] <= 1.0
  assert summary["baselines"]["scratch_e"]["steps"] == 40
  assert summary["baselines"]["scratch_b"]["steps"] > 40
  state = filterprune_run.load_state(config, workdir, "train")
  params = jax.device_get(state.params)
  dead = ~np.any(_leaf(params, "Conv_0", "kernel").reshape(-1, 8) != 0, 0)
  assert dead.sum() == 3
  assert np.all(_leaf(params, "BatchNorm_0", "scale")[dead] == 0)
  assert np.all(_leaf(params, "BatchNorm_0", "bias")[dead] == 0)
  # The scratch baseline trains exactly the pruned architecture.
  scratch = filterprune_run.load_state(config, workdir, "scratch_e")
  k = _leaf(jax.device_get(scratch.params), "Conv_0", "kernel")
  assert (~np.any(k.reshape(-1, 8) != 0, 0)).tolist() == dead.tolist()
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["baselines"] == summary["baselines"]
  # Re-running returns the stored result without training.
  assert drivers.run(config, workdir) == summary
  # The export is the hard-pruned network (RUN/train at T), not a scratch
  # baseline: without JAX it scores the summary's test accuracy exactly.
  result, info = _export_check.check(workdir, tmp_path)
  assert result["accuracy"] == summary["final"]["test_accuracy"]
  assert info["step"] == 40 and "fpgm" in info["result"]


def test_slimming_run_end_to_end(tmp_path):
  config = _tiny(slimming_digits.get_config())
  config.filterprune.finetune_steps = 20
  config.filterprune.l1 = 1e-3
  config.filterprune.scratch = False  # the FPGM test covers the baselines
  summary = drivers.run(config, str(tmp_path / "slim"))
  s = summary["structured"]
  assert s["filters"] == 24 and s["filters_kept"] == 24 - 12  # floor(24/2)
  assert summary["final"]["step"] == 60
  assert set(summary["slimming"]) >= {
      "unpruned_test_accuracy", "pruned_test_accuracy_before_finetune"}
  assert "baselines" not in summary
  assert summary["final"]["macs_fraction"] < 1.0
  # The export is the pruned, fine-tuned network (RUN/finetune): without
  # JAX it scores the summary's test accuracy exactly.
  result, info = _export_check.check(str(tmp_path / "slim"), tmp_path)
  assert result["accuracy"] == summary["final"]["test_accuracy"]
  assert info["step"] == 60


@pytest.mark.parametrize("field,value,match", [
    ("rate", 1.0, "filterprune.rate"),
    ("criterion", "cosine", "filterprune.criterion"),
    ("method", "l0", "filterprune.method"),
    ("prune_every", -1, "filterprune.prune_every"),
])
def test_bad_filterprune_config_names_the_field(tmp_path, field, value,
                                                match):
  config = fpgm_digits.get_config()
  config.filterprune[field] = value
  with pytest.raises(config_check.ConfigError, match=match):
    drivers.run(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_bad_slimming_config_names_the_field():
  config = slimming_digits.get_config()
  config.filterprune.prune_fraction = 1.0
  with pytest.raises(config_check.ConfigError,
                     match="filterprune.prune_fraction"):
    config_check.validate(config)


def _train(driver, state, start: int, steps: int):
  """`steps` jitted training steps of the driver's engine from `start`."""
  from experiments import data as data_lib  # pylint: disable=g-import-not-at-top
  engine = driver.engine
  step_fn = engine.train_step(driver.tx)
  src = engine.dataset.splits["train"]
  with jax.set_mesh(engine.mesh):
    for s in range(start, start + steps):
      batch = data_lib.train_batch(src, s, batch_size=driver.config.batch_size,
                                   seed=0, process_index=0, process_count=1)
      state, _ = step_fn(state, train.to_global(batch, engine.data_sharding))
  return state


def _norms(state, name):
  k = _leaf(jax.device_get(state.params), name, "kernel")
  return np.linalg.norm(k.reshape(-1, k.shape[-1]), axis=0)


@pytest.mark.parametrize("variant", ["paper", "released_cifar"])
def test_fpgm_soft_pruning_lets_a_released_filter_regrow(tmp_path, variant):
  # SFP / FPGM: a selection zeroes the kernels only; BatchNorm is never
  # masked, so a zeroed filter gets gradient (in the paper's variant at once,
  # in the released CIFAR script's after the next selection releases it).
  config = _tiny(fpgm_digits.get_config())
  config.filterprune.soft_variant = variant
  os.makedirs(tmp_path / "w" / "train")
  driver = filterprune_run.Driver(config, str(tmp_path / "w"))
  state = driver.engine.init(jax.random.PRNGKey(0))
  # BatchNorm shifts > 0, as after some training: a zero channel is then
  # not cut off by ReLU's zero gradient at 0.
  params = jax.device_get(state.params)
  for bn in ("BatchNorm_0", "BatchNorm_1"):
    params[bn]["bias"] = np.full_like(params[bn]["bias"], 0.1)
  state = driver.engine.place(state.replace(params=params))
  state = driver.fpgm_event(state, False)
  zeroed = _norms(state, "Conv_0") == 0
  assert zeroed.sum() == 3  # floor(8 * .4)
  bn = jax.device_get(state.params)["BatchNorm_0"]
  assert np.all(bn["bias"][zeroed] == 0.1)  # BatchNorm is not masked
  state = _train(driver, state, 0, 10)
  if variant == "paper":   # zeroed filters train until the next selection
    assert np.all(_norms(state, "Conv_0")[zeroed] > 0)
  else:                    # held at exactly 0 (do_grad_mask)
    assert np.all(_norms(state, "Conv_0")[zeroed] == 0)
  # The next selection zeroes another set: force one filter of the first
  # set to be released by selecting with a rate that zeroes nothing.
  keep = {n: np.ones_like(np.asarray(driver.kept_filters(state)[n]))
          for n in driver.pruned}
  state = driver.engine.place(driver.with_filters(state, keep, soft=True)
                              .replace(mask=driver.full_mask(
                                  jax.device_get(state.params))))
  state = _train(driver, state, 10, 10)
  assert np.all(_norms(state, "Conv_0")[zeroed] > 0)  # regrown


def test_fpgm_run_records_selections_and_revivals(tmp_path):
  config = fpgm_digits.get_config()
  config.num_steps = 95  # 5 selections, one an epoch of 19 steps
  config.lr_decay_steps = (95,)
  config.log_every = config.eval_every = config.checkpoint_every = 95
  config.filterprune.scratch = False
  summary = drivers.run(config, str(tmp_path / "fpgm"))
  events = summary["filterprune"]
  assert [e["step"] for e in events] == [19, 38, 57, 76, 95]
  assert all(e["selected"] == 74 for e in events)  # floor(.4 C) per layer
  assert events[0]["newly_selected"] == 74 and events[0]["revived"] == 0
  for a, b in zip(events, events[1:]):
    assert b["revived"] == b["newly_selected"]  # same count each time
  assert sum(e["revived"] for e in events) >= 1
  assert summary["final"]["revived_filters"] == sum(
      e["revived"] for e in events)
  assert 0.0 <= summary["final"]["test_accuracy_before_removal"] <= 1.0
