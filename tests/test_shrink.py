"""experiments.shrink: the physically smaller network of a filter-masked one.

Hand-made graphs (a residual block where one branch prunes a channel and
the other does not, a concat, a depthwise block, flatten into dense, a
soft-pruned filter whose BatchNorm shift keeps it alive) check which
channels go and where; zoo models (VGG, ResNet-20, NIN, UNet,
MobileNetV3, RePr's vanilla CNN) with random filter masks check that the
shrunk network's logits equal the masked network's (the JAX executor) and
that it is smaller by the expected count.
"""

import os
import types

import numpy as np
import pytest

from experiments import models
from experiments import shrink as shrink_lib
from experiments import structured
from tests.test_layer_exec import random_variables


def _close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape
  scale = max(1.0, float(np.abs(want).max()))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


# ------------------------------------------------------- hand-made graphs --
def _conv(name, src, c_in, c_out, hw, *, k=3, groups=1, bias=False):
  e = {"name": name, "op": "conv", "inputs": [src], "shape": [*hw, c_out],
       "params": {"kernel": ["params", name, "kernel"]},
       "kernel_size": [k, k], "strides": [1, 1],
       "padding": [[k // 2, k // 2]] * 2, "feature_group_count": groups}
  shapes = {"kernel": (k, k, c_in // groups, c_out)}
  if bias:
    e["params"]["bias"] = ["params", name, "bias"]
    shapes["bias"] = (c_out,)
  return e, shapes


def _bn(name, src, shape):
  e = {"name": name, "op": "batchnorm", "inputs": [src], "shape": shape,
       "epsilon": 1e-5, "params": {
           "scale": ["params", name, "scale"],
           "bias": ["params", name, "bias"],
           "mean": ["batch_stats", name, "mean"],
           "var": ["batch_stats", name, "var"]}}
  c = shape[-1]
  return e, {"scale": (c,), "bias": (c,), "mean": (c,), "var": (c,)}


def _op(name, op, inputs, shape, **attrs):
  return {"name": name, "op": op, "inputs": list(inputs), "params": {},
          "shape": list(shape), **attrs}


def _dense(name, src, d_in, d_out):
  return ({"name": name, "op": "dense", "inputs": [src], "shape": [d_out],
           "params": {"kernel": ["params", name, "kernel"],
                      "bias": ["params", name, "bias"]}},
          {"kernel": (d_in, d_out), "bias": (d_out,)})


def _build(parts, seed=0):
  """(layers, variables) from entries and (entry, {role: shape}) pairs,
  random values (variances in [0.5, 2])."""
  rng = np.random.default_rng(seed)
  layers, variables = [], {"params": {}, "batch_stats": {}}
  for p in parts:
    e, shapes = p if isinstance(p, tuple) else (p, {})
    layers.append(e)
    for role, path in e["params"].items():
      shape = shapes[role]
      value = (rng.uniform(0.5, 2.0, shape) if role == "var"
               else rng.normal(0.0, 0.5, shape))
      variables[path[0]].setdefault(path[1], {})[path[2]] = value.astype(
          np.float32)
  return layers, variables


def _check_logits(layers, variables, masks, input_shape, seed=1):
  """Shrinks; asserts the logits equal the masked network's; returns the
  shrunk (layers, variables)."""
  masked = (shrink_lib.masked_variables(layers, variables, masks)
            if masks else variables)
  small, small_vars = shrink_lib.shrink(layers, variables, masks,
                                        input_shape=input_shape)
  x = np.random.default_rng(seed).standard_normal(
      (3, *input_shape)).astype(np.float32)
  want = models.layer_executor(layers, masked)(x)
  _close(models.layer_executor(small, small_vars)(x), want)
  return small, small_vars


def _width(layers, name):
  return next(e for e in layers if e["name"] == name)["shape"][-1]


def _kernel(v, name):
  return v["params"][name]["kernel"]


def test_residual_removes_only_channels_dead_in_every_branch():
  hw = [4, 4]
  layers, v = _build([
      _conv("A", "input", 3, 4, hw), _bn("BA", "A", [*hw, 4]),
      _conv("B", "input", 3, 4, hw), _bn("BB", "B", [*hw, 4]),
      _op("add_0", "add", ["BA", "BB"], [*hw, 4]),
      _op("relu_0", "activation", ["add_0"], [*hw, 4], kind="relu"),
      _conv("C", "relu_0", 4, 2, hw, bias=True)])
  masks = {"A": [True, False, False, True], "B": [True, True, False, False]}
  small, sv = _check_logits(layers, v, masks, (*hw, 3))
  # Only channel 2 is dead in both branches.
  assert [_width(small, n) for n in ("A", "BA", "B", "add_0", "C")] == [
      3, 3, 3, 3, 2]
  assert _kernel(sv, "C").shape == (3, 3, 3, 2)
  np.testing.assert_array_equal(_kernel(sv, "C"),
                                _kernel(v, "C")[:, :, [0, 1, 3]])
  assert sv["batch_stats"]["BB"]["mean"].shape == (3,)


def test_a_live_branch_keeps_the_channel():
  """One branch removes channel 0, the other keeps it: nothing goes."""
  hw = [4, 4]
  layers, v = _build([
      _conv("A", "input", 3, 2, hw), _bn("BA", "A", [*hw, 2]),
      _conv("B", "input", 3, 2, hw), _bn("BB", "B", [*hw, 2]),
      _op("add_0", "add", ["BA", "BB"], [*hw, 2]),
      _conv("C", "add_0", 2, 2, hw)])
  small, sv = _check_logits(layers, v, {"A": [False, True]}, (*hw, 3))
  assert _width(small, "add_0") == 2 and _kernel(sv, "A").shape[-1] == 2
  np.testing.assert_array_equal(_kernel(sv, "A")[..., 0], 0)


def test_concat_removes_per_part_with_offsets():
  hw = [4, 4]
  layers, v = _build([
      _conv("A", "input", 3, 3, hw, bias=True),
      _conv("B", "input", 3, 2, hw, bias=True),
      _op("concat_0", "concat", ["A", "B"], [*hw, 5], axis=-1),
      _op("relu_0", "activation", ["concat_0"], [*hw, 5], kind="relu"),
      _conv("C", "relu_0", 5, 2, hw, k=1)])
  masks = {"A": [False, True, True], "B": [True, False]}
  small, sv = _check_logits(layers, v, masks, (*hw, 3))
  assert [_width(small, n) for n in ("A", "B", "concat_0")] == [2, 1, 3]
  np.testing.assert_array_equal(_kernel(sv, "C"),
                                _kernel(v, "C")[:, :, [1, 2, 3]])
  np.testing.assert_array_equal(sv["params"]["A"]["bias"],
                                v["params"]["A"]["bias"][1:])


@pytest.mark.parametrize("k", [3, 1])
def test_depthwise_block_loses_whole_groups(k):
  hw = [4, 4]
  layers, v = _build([
      _conv("E", "input", 3, 4, hw, k=1), _bn("BE", "E", [*hw, 4]),
      _op("relu_0", "activation", ["BE"], [*hw, 4], kind="relu"),
      _conv("DW", "relu_0", 4, 4, hw, groups=4), _bn("BD", "DW", [*hw, 4]),
      _op("hs_0", "activation", ["BD"], [*hw, 4], kind="hard_swish"),
      _conv("P", "hs_0", 4, 2, hw, k=k)])
  # DW's filter 2 is removed (with its BatchNorm): the group goes, and so
  # does E's channel 2 that only it reads.  E's filter 1 is removed but DW's
  # BatchNorm shift makes channel 1 a constant that P reads: a padded 3x3
  # P reads it as 0 at the border, so it stays; a 1x1 P (no padding) has it
  # folded into a new bias, and it goes.
  # E's channel 2 is also a constant (zero kernel, BatchNorm intact) that
  # only the removed group reads: nothing to fold.
  masks = {"E": [True, False, True, True], "DW": [True, True, False, True]}
  v["params"]["E"]["kernel"][..., 2] = 0.0
  small, sv = _check_logits(layers, v, masks, (*hw, 3))
  kept = [0, 1, 3] if k == 3 else [0, 3]
  dw = next(e for e in small if e["name"] == "DW")
  assert dw["feature_group_count"] == len(kept) == dw["shape"][-1]
  assert _kernel(sv, "DW").shape == (3, 3, 1, len(kept))
  np.testing.assert_array_equal(
      _kernel(sv, "E"), _kernel(v, "E")[..., kept] * (np.array(kept) != 1))
  assert _kernel(sv, "P").shape == (k, k, len(kept), 2)
  p = next(e for e in small if e["name"] == "P")
  assert ("bias" in p["params"]) == (k == 1)


def test_constant_channel_folds_into_the_next_dense_bias():
  """A pruned neuron whose bias stays (main/subsidiary bakes only the
  kernel) is the constant relu(b): it goes, folded into the next bias."""
  layers, v = _build([
      _dense("D0", "input", 4, 3),
      _op("relu_0", "activation", ["D0"], [3], kind="relu"),
      _dense("D1", "relu_0", 3, 2)])
  v["params"]["D0"]["kernel"][:, 1] = 0.0
  v["params"]["D0"]["bias"][1] = 0.7
  small, sv = _check_logits(layers, v, None, (4,))
  assert _width(small, "D0") == 2
  np.testing.assert_allclose(
      sv["params"]["D1"]["bias"],
      v["params"]["D1"]["bias"] + 0.7 * v["params"]["D1"]["kernel"][1],
      rtol=1e-6)


def test_flatten_into_dense_removes_rows_of_every_position():
  hw = [2, 3]
  layers, v = _build([
      _conv("C", "input", 3, 4, hw, bias=True),
      _op("relu_0", "activation", ["C"], [*hw, 4], kind="relu"),
      _op("flatten_0", "flatten", ["relu_0"], [24]),
      _dense("D", "flatten_0", 24, 2)])
  small, sv = _check_logits(layers, v, {"C": [True, False, True, False]},
                            (*hw, 3))
  assert _width(small, "flatten_0") == 12
  rows = [p * 4 + c for p in range(6) for c in (0, 2)]  # NHWC order
  np.testing.assert_array_equal(_kernel(sv, "D"), _kernel(v, "D")[rows])


def test_soft_pruned_filter_with_a_batchnorm_shift_is_kept():
  """A zero kernel whose BatchNorm shift is intact is a constant channel,
  not a zero one: a padded conv reading it keeps it (the variables are
  used as given)."""
  hw = [4, 4]
  layers, v = _build([
      _conv("A", "input", 3, 3, hw), _bn("BA", "A", [*hw, 3]),
      _op("relu_0", "activation", ["BA"], [*hw, 3], kind="relu"),
      _conv("C", "relu_0", 3, 2, hw)])
  v["params"]["A"]["kernel"][..., 1] = 0.0
  small, _ = _check_logits(layers, v, None, (*hw, 3))
  assert _width(small, "A") == 3
  v["params"]["BA"]["scale"][1] = v["params"]["BA"]["bias"][1] = 0.0
  small, _ = _check_logits(layers, v, None, (*hw, 3))
  assert _width(small, "A") == 2


def test_squeeze_excite_gate_follows_the_gated_channels():
  hw = [4, 4]
  layers, v = _build([
      _conv("A", "input", 3, 4, hw, bias=True),
      _op("relu_0", "activation", ["A"], [*hw, 4], kind="relu"),
      _op("pool_0", "pool", ["relu_0"], [4], kind="avg", **{"global": True}),
      _dense("S0", "pool_0", 4, 2),
      _op("relu_1", "activation", ["S0"], [2], kind="relu"),
      _dense("S1", "relu_1", 2, 4),
      _op("hsig_0", "activation", ["S1"], [4], kind="hard_sigmoid"),
      _op("gate_0", "gate", ["relu_0", "hsig_0"], [*hw, 4]),
      _conv("C", "gate_0", 4, 2, hw, k=1)])
  small, sv = _check_logits(layers, v, {"A": [True, False, True, True]},
                            (*hw, 3))
  assert [_width(small, n) for n in ("A", "S0", "S1", "gate_0")] == [
      3, 2, 3, 3]
  assert _kernel(sv, "S0").shape == (3, 2)
  assert _kernel(sv, "C").shape == (1, 1, 3, 2)


def test_a_whole_pruned_layer_keeps_one_zero_channel(tmp_path):
  """The file format has no empty tensors: a layer that loses every filter
  keeps one (zero) channel, and the shrunk network exports."""
  from experiments import export  # pylint: disable=g-import-not-at-top
  hw = [4, 4]
  layers, v = _build([
      _conv("A", "input", 3, 4, hw), _bn("BA", "A", [*hw, 4]),
      _op("relu_0", "activation", ["BA"], [*hw, 4], kind="relu"),
      _op("pool_0", "pool", ["relu_0"], [4], kind="avg", **{"global": True}),
      _dense("D", "pool_0", 4, 2)])
  small, sv = _check_logits(layers, v, {"A": [False] * 4}, (*hw, 3))
  assert [e["shape"][-1] for e in small] == [1, 1, 1, 1, 2]
  path = str(tmp_path / "m.sbn")
  export.write_model(path, small, sv, input_shape=(*hw, 3))
  x = np.ones((2, *hw, 3), np.float32)
  _close(export.Model.load(path, use_numba=False)(x),
         models.layer_executor(small, sv)(x))


def test_arguments_are_not_changed_and_no_mask_changes_nothing():
  hw = [4, 4]
  layers, v = _build([_conv("A", "input", 3, 3, hw),
                      _conv("C", "A", 3, 2, hw)])
  before = _kernel(v, "A").copy()
  small, sv = shrink_lib.shrink(layers, v, {"A": [True, False, True]})
  assert layers[0]["shape"][-1] == 3 and np.array_equal(_kernel(v, "A"),
                                                        before)
  same, _ = shrink_lib.shrink(layers, v)
  assert same == layers
  assert shrink_lib.parameter_count(small, sv) == 27 * 2 + 9 * 2 * 2


# ---------------------------------------------------------------- the zoo --
ZOO = {  # name: (model, per-example input shape)
    "vgg": (lambda: models.VGG(num_classes=5, cfg=(8, "M", 16, "M")),
            (8, 8, 3)),
    "resnet20": (lambda: models.get_model("resnet20", 5, width=4),
                 (8, 8, 3)),
    "nin": (lambda: models.get_model("nin", 5, width=0.125), (8, 8, 3)),
    "nin_float": (lambda: models.get_model("nin", 5, width=0.125,
                                           binarize=False), (8, 8, 3)),
    "unet": (lambda: models.get_model("unet_tiny", 3, widths=(4, 8)),
             (8, 8, 3)),
    "mobilenet_v3": (lambda: models.get_model(
        "mobilenet_v3_small_seg32", 3, width=0.25, head_channels=8),
        (16, 16, 3)),
    "vanilla_cnn": (lambda: models.VanillaCNN(num_classes=5, convs=(8, "M", 8, "M", 8, "M")),
                    (8, 8, 3)),
}


def _random_masks(layers, seed):
  """Random filter masks (about 40 % removed, one filter always kept) on
  every conv but the ones making the logits."""
  rng = np.random.default_rng(seed)
  last = {layers[-1]["name"]}
  for e in reversed(layers):  # the linear layers the logits come from
    if e["name"] in last and e["op"] not in ("conv", "dense"):
      last.update(e["inputs"])
  masks = {}
  for e in layers:
    if e["op"] == "conv" and e["name"] not in last:
      keep = rng.random(e["shape"][-1]) > 0.4
      keep[rng.integers(keep.size)] = True
      masks[e["name"]] = keep
  return masks


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_logits_equal_and_smaller(name):
  make, shape = ZOO[name]
  model = make()
  layers = models.layer_list(model, shape)
  variables = random_variables(model, shape)
  masks = _random_masks(layers, seed=3)
  small, sv = _check_logits(layers, variables, masks, shape)
  before = shrink_lib.parameter_count(layers, variables)
  after = shrink_lib.parameter_count(small, sv)
  macs = structured.structured_macs(small, input_shape=shape)["macs"]
  want = structured.structured_macs(layers, masks, input_shape=shape)
  # (NIN: a pruned channel reaches a sign (sign(0) = +1) or a BatchNorm
  # after a pool, not masked with the filter: a constant channel, which
  # goes only where a 1x1 float conv reads it, folded into its bias.)
  assert after < before
  if name in ("vgg", "vanilla_cnn", "unet"):
    # Chains (and concat): the shrunk dense MACs are the live-pair MACs.
    # Not so in general: a residual stream keeps a channel that is dead in
    # one of its tensors but live in another (the conv reading the dead
    # one keeps zero rows), a depthwise group kept behind a removed expand
    # filter keeps that zero channel (its BatchNorm shift is read).
    assert macs == want["macs"]
  state = types.SimpleNamespace(**{  # a TrainState always has batch_stats
      "batch_stats": {}, **shrink_lib.masked_variables(layers, variables,
                                                       masks)})
  size = shrink_lib.state_shrunk_size(layers, state, input_shape=shape)
  assert (size["parameters"], size["shrunk_parameters"]) == (before, after)
  assert size["shrunk_macs"] == macs
  if name == "vgg":
    k1, k2 = (int(np.sum(masks[n])) for n in ("Conv_0", "Conv_1"))
    assert size["channels_removed"] == {"Conv_0": 8 - k1, "Conv_1": 16 - k2}
    n_out = layers[-1]["shape"][-1]
    # conv kernels (no bias), BatchNorm (4 per channel), the dense after
    # the global pool
    assert after == (9 * 3 * k1 + 4 * k1 + 9 * k1 * k2 + 4 * k2
                     + k2 * n_out + n_out)


def test_resnet20_residual_stream_shrinks_where_every_block_removes():
  make, shape = ZOO["resnet20"]
  model = make()
  layers = models.layer_list(model, shape)
  variables = random_variables(model, shape)
  rng = np.random.default_rng(4)
  masks = {}
  for e in layers:  # the blocks' first convs: random; their inner width
    if e["op"] == "conv" and e["name"].endswith("/Conv_0"):
      keep = rng.random(e["shape"][-1]) > 0.5
      keep[0] = True
      masks[e["name"]] = keep
  # Stage 1's stream (width 4): channel 1 removed by the stem and every
  # block's second conv; channel 2 by all but block 2.
  for n in ("Conv_0", "BasicBlock_0/Conv_1", "BasicBlock_1/Conv_1",
            "BasicBlock_2/Conv_1"):
    masks[n] = np.array([True, False, n == "BasicBlock_2/Conv_1", True])
  small, sv = _check_logits(layers, variables, masks, shape)
  for n, keep in masks.items():
    if n.endswith("/Conv_0"):
      assert _width(small, n) == keep.sum()
  assert [_width(small, f"add_{i}") for i in range(9)] == [3] * 3 + [8] * 3 + [
      16] * 3
  # The stage-2 projection reads the 3 channels left.
  assert sv["params"]["BasicBlock_3"]["Conv_2"]["kernel"].shape[2] == 3


# ------------------------------------------------ launch.export --shrink --
def test_export_shrink_of_a_slimming_run(tmp_path):
  """A tiny Network Slimming run exported with and without --shrink: the
  shrunk file is smaller, scores the reported accuracy without JAX, and
  its logits equal the full file's."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  from experiments import export  # pylint: disable=g-import-not-at-top
  from experiments.configs import slimming_digits  # pylint: disable=g-import-not-at-top
  from tests import _export_check  # pylint: disable=g-import-not-at-top
  config = slimming_digits.get_config()
  config.num_steps = 10
  config.log_every = config.eval_every = config.checkpoint_every = 10
  config.lr_decay_steps = ()
  config.model_kwargs = ml_collections.ConfigDict({"cfg": (8, "M", 16)})
  config.filterprune.finetune_steps = 10
  config.filterprune.scratch = False
  run = str(tmp_path / "slim")
  summary = drivers.run(config, run)
  full = str(tmp_path / "full.sbn")
  _export_check.export(run, full)
  result, info = _export_check.check(run, tmp_path, name="small.sbn",
                                     cli=True, shrink=True)
  assert result["accuracy"] == summary["final"]["test_accuracy"]
  small = export.Model.load(os.path.join(tmp_path, "small.sbn"),
                            use_numba=False)
  big = export.Model.load(full, use_numba=False)
  counts = small.meta["shrink"]
  assert counts["shrunk_parameters"] < counts["parameters"]
  recorded = summary["structured"]["shrunk"]  # what the driver recorded
  assert (recorded["parameters"], recorded["shrunk_parameters"]) == (
      counts["parameters"], counts["shrunk_parameters"])
  assert f"shrunk: {counts['shrunk_parameters']} of " in info.stdout
  widths = {e["name"]: e["shape"][-1] for e in small.header["layers"]}
  assert widths["Conv_0"] + widths["Conv_1"] == 24 - 12  # floor(24 / 2)
  x = np.random.default_rng(0).standard_normal((4, 8, 8, 1)).astype(
      np.float32)
  _close(small(x), big(x))
