"""Segmentation: Dice/IoU by hand, the per-layer report, the models, and a
tiny end-to-end run of the plain trainer on `shapes`."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import models
from experiments import segmentation as seg
from experiments import drivers
from experiments.configs import gradcount_shapes
from tests import _layer_list_ref as ref

# name -> (input shape, kwargs): small widths keep the test fast.
SEG_MODELS = {"unet_tiny": ((16, 16, 3), {"widths": (4, 8)}),
              "mobilenet_v3_small_seg32": ((32, 32, 3), {"width": 0.25}),
              "mobilenet_v3_small_seg": ((32, 32, 3), {"width": 0.25})}


# ---------------------------------------------------------------- metrics --
def test_confusion_matrix_and_scores_by_hand():
  labels = jnp.array([[[0, 1], [1, 2]], [[3, 3], [3, 3]]])
  pred = jnp.array([[[0, 1], [0, 2]], [[0, 0], [0, 0]]])
  # The second example has weight 0 (padding): it must not count.
  cm = np.asarray(seg.confusion_matrix(pred, labels, 4,
                                       jnp.array([1.0, 0.0])))
  expected = np.zeros((4, 4))
  expected[0, 0] = expected[1, 1] = expected[1, 0] = expected[2, 2] = 1
  np.testing.assert_array_equal(cm, expected)
  # class 0: TP 1 FP 1 FN 0; class 1: TP 1 FP 0 FN 1; class 2: TP 1;
  # class 3 occurs nowhere: left out of the means.
  np.testing.assert_allclose(seg.iou_per_class(cm)[:3], [0.5, 0.5, 1.0])
  assert np.isnan(seg.iou_per_class(cm)[3])
  np.testing.assert_allclose(seg.dice_per_class(cm)[:3], [2 / 3, 2 / 3, 1])
  assert seg.mean_iou(cm) == pytest.approx(2 / 3)
  assert seg.mean_dice(cm) == pytest.approx(7 / 9)
  # From logits: argmax over the last axis gives the same matrix.
  logits = jax.nn.one_hot(pred, 4)
  np.testing.assert_array_equal(
      seg.confusion_matrix(logits, labels, 4, jnp.array([1.0, 0.0])), cm)


def test_scores_of_a_wrong_class_and_an_empty_matrix():
  cm = np.array([[0, 2], [0, 0]])  # class 0 always predicted as 1
  np.testing.assert_allclose(seg.iou_per_class(cm), [0.0, 0.0])
  assert seg.mean_dice(cm) == 0.0
  assert seg.mean_iou(np.zeros((3, 3))) == 0.0


# ----------------------------------------------------------------- report --
def _tiny_layers():
  return [
      {"name": "Conv_0", "op": "conv", "inputs": ["input"],
       "params": {"kernel": ["params", "Conv_0", "kernel"]}},
      {"name": "BatchNorm_0", "op": "batchnorm", "inputs": ["Conv_0"],
       "params": {"mean": ["batch_stats", "BatchNorm_0", "mean"],
                  "var": ["batch_stats", "BatchNorm_0", "var"],
                  "scale": ["params", "BatchNorm_0", "scale"],
                  "bias": ["params", "BatchNorm_0", "bias"]}},
      {"name": "Conv_1", "op": "conv", "inputs": ["BatchNorm_0"],
       "params": {"kernel": ["params", "Conv_1", "kernel"],
                  "bias": ["params", "Conv_1", "bias"]}},
  ]


def test_layer_report_by_hand():
  variables = {
      "params": {"Conv_0": {"kernel": np.ones((1, 1, 2, 3))},
                 "BatchNorm_0": {"scale": np.ones(3), "bias": np.ones(3)},
                 "Conv_1": {"kernel": np.ones((1, 1, 3, 2)),
                            "bias": np.ones(2)}},
      "batch_stats": {"BatchNorm_0": {"mean": np.ones(3), "var": np.ones(3)}}}
  mask = {"Conv_0": {"kernel": np.array([[True, False, True],
                                         [False, False, True]])
                     .reshape(1, 1, 2, 3)},
          "BatchNorm_0": {"scale": None, "bias": None},
          "Conv_1": {"kernel": None, "bias": None}}
  rows = seg.layer_report(_tiny_layers(), variables, mask)
  by = {r["name"]: r for r in rows}
  # Conv_0: filter 1 is gone; 2 filters, 3 weights kept. Dense storage of
  # the compacted kernel 4*2*2 = 16 < CSR 3*(4+2) + 4*3 = 30.
  assert (by["Conv_0"]["filters_kept"], by["Conv_0"]["weights_kept"]) == (2, 3)
  assert by["Conv_0"]["memory_bytes"] == 16
  # Its BatchNorm keeps 2 channels x 4 tensors x 4 bytes.
  assert by["BatchNorm_0"]["memory_bytes"] == 32
  # Conv_1 unpruned: 6 weights + 2 biases.
  assert by["Conv_1"]["memory_bytes"] == 32
  t = seg.totals(rows)
  assert t["memory_bytes"] == 80 and t["memory_bytes_dense"] == 24 + 48 + 32
  assert (t["filters_kept"], t["filters"]) == (4, 5)
  assert t["remaining_fraction"] == pytest.approx(9 / 12)
  assert "total" in seg.format_layer_report(rows)


def test_output_layers():
  assert seg.output_layers(_tiny_layers()) == ["Conv_1"]


# ----------------------------------------------------------------- models --
def test_make_divisible():
  assert models.make_divisible(36) == 40
  assert models.make_divisible(4) == 8
  assert models.make_divisible(20) == 24  # 16 < 0.9 * 20 -> + 8


def test_unet_tiny_parameter_count():
  # Hand count, 3 input channels, 4 classes (3x3 kernels; BN 2 per channel):
  enc = (27 * 8 + 16 + 72 * 8 + 16) + (72 * 16 + 32 + 144 * 16 + 32) + (
      144 * 32 + 64 + 288 * 32 + 64)
  dec16 = 288 * 16 + 32 + 288 * 16 + 32 + 144 * 16 + 32
  dec8 = 144 * 8 + 16 + 144 * 8 + 16 + 72 * 8 + 16
  head = 8 * 4 + 4
  v = models.abstract_variables(models.get_model("unet_tiny", 4), (32, 32, 3))
  n = sum(x.size for x in jax.tree.leaves(v["params"]))
  assert n == enc + dec16 + dec8 + head == 32876


@pytest.mark.parametrize("name", sorted(SEG_MODELS))
def test_layer_list_reproduces_segmentation_model(name):
  shape, kwargs = SEG_MODELS[name]
  model = models.get_model(name, 3, **kwargs)
  rng = np.random.default_rng(0)
  # Random variables (no init to compile); BN variances positive.
  variables = jax.tree_util.tree_map_with_path(
      lambda p, v: (np.abs(rng.normal(size=v.shape)) + 0.5 if
                    p[-1].key == "var" else 0.3 * rng.normal(size=v.shape)
                    ).astype(np.float32),
      models.abstract_variables(model, shape))
  x = rng.normal(size=(2, *shape)).astype(np.float32)
  out = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, x))
  assert out.shape == (2, *shape[:2], 3)
  layers = models.layer_list(model, shape)
  got = ref.run(layers, variables, x)
  # Random weights without normalising statistics make activations grow
  # through the MobileNet blocks: compare relative to the output's scale.
  np.testing.assert_allclose(got, out, rtol=1e-4,
                             atol=1e-5 * float(np.abs(out).max()))
  if name.startswith("mobilenet"):
    kinds = {e.get("kind") for e in layers if e["op"] == "activation"}
    assert {"hard_swish", "hard_sigmoid", "relu"} <= kinds
    assert any(e["op"] == "gate" for e in layers)
    depthwise = [e for e in layers if e["op"] == "conv"
                 and e["feature_group_count"] > 1]
    assert depthwise and all(e["feature_group_count"] == e["shape"][-1]
                             for e in depthwise)


def test_bad_input_size():
  with pytest.raises(ValueError, match="divisible"):
    models.abstract_variables(models.get_model("unet_tiny", 2), (18, 18, 3))


# ------------------------------------------------------------- end to end --
def tiny_config(**gc):
  """gradcount_shapes shrunk to 40 steps of a 2-level UNet on 16x16."""
  config = gradcount_shapes.get_config()
  config.dataset_kwargs = {"size": 16, "num_train": 64, "num_validation": 16,
                           "num_test": 24}
  config.model_kwargs = {"widths": (4, 8)}
  config.num_steps = 40
  config.batch_size = 16
  config.eval_batch_size = 16
  config.log_every = 10
  config.eval_every = 20
  config.checkpoint_every = 20
  config.keep_checkpoints = 3
  g = config.gradcount
  g.warmup_steps, g.joint_steps, g.window, g.redundancy_every = 10, 20, 10, 20
  g.scratch = False
  for k, v in gc.items():
    g[k] = v
  return config


def test_plain_segmentation_run_end_to_end(tmp_path):
  config = tiny_config()
  del config.gradcount  # the plain trainer, no gradient counting
  summary = drivers.run(config, str(tmp_path))
  final = summary["final"]
  for key in ("dice", "mean_iou", "remaining_fraction",
              "filters_remaining_fraction", "memory_bytes"):
    assert key in final
  assert 0.0 <= final["mean_iou"] <= final["dice"] <= 1.0
  assert final["remaining_fraction"] == 1.0
  assert final["filters_remaining_fraction"] == 1.0
  assert isinstance(final["memory_bytes"], int)
  # Nothing removed: memory = every parameter and BN statistic at 4 bytes.
  v = models.abstract_variables(models.get_model("unet_tiny", 4,
                                                 widths=(4, 8)), (16, 16, 3))
  assert final["memory_bytes"] == 4 * sum(x.size for x in jax.tree.leaves(v))
  with open(os.path.join(tmp_path, "summary.json")) as f:
    assert json.load(f)["final"]["dice"] == final["dice"]
  lines = [json.loads(l) for l in open(os.path.join(tmp_path,
                                                    "metrics.jsonl"))]
  assert any("val_dice" in l for l in lines)
  assert any("test_mean_iou" in l for l in lines)
