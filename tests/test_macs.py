"""experiments.macs: one MAC formula for the structured and the FBS counts."""

import numpy as np

from experiments import fbs
from experiments import macs
from experiments import models
from experiments import structured


def test_the_old_names_are_the_new_functions():
  assert structured.structured_macs is macs.structured_macs
  assert fbs.mac_plan is macs.mac_plan
  assert fbs.executed_macs is macs.executed_macs
  assert fbs.macs_metrics is macs.macs_metrics


def test_structured_and_fbs_agree_on_dense_macs_incl_depthwise():
  """MobileNetV3 has depthwise convs (G = C_in) whose H W KH KW is not a
  multiple of G: both counts are (C_in / G) C_out H W KH KW."""
  shape = (32, 32, 3)
  layers = models.layer_list(models.get_model("mobilenet_v3_small_seg", 3),
                             shape)
  rows = {r["name"]: r["dense_macs"]
          for r in macs.structured_macs(layers, input_shape=shape)["layers"]}
  plan = {r["name"]: r["dense_macs"] for r in macs.mac_plan(layers, shape)}
  assert rows == plan
  dw = [e for e in layers if e["op"] == "conv"
        and e["feature_group_count"] > 1]
  assert dw
  e = dw[0]
  h, w, c = e["shape"]
  kh, kw = e["kernel_size"]
  assert rows[e["name"]] == h * w * kh * kw * c  # one input per output
  # Nothing gated: the executed MACs are the dense ones.
  ex = macs.executed_macs(macs.mac_plan(layers, shape), {})
  assert float(np.asarray(ex[e["name"]])[0]) == rows[e["name"]]


def test_layer_macs_formula():
  conv = {"name": "c", "op": "conv", "shape": [5, 5, 6], "kernel_size": [3, 3],
          "feature_group_count": 3}
  assert macs.pair_macs(conv) == 25 * 9
  assert macs.layer_macs(conv, 6) == 25 * 9 * 2 * 6
  dense = {"name": "d", "op": "dense", "shape": [4, 7]}
  assert macs.positions(dense) == 4 and macs.layer_macs(dense, 3) == 4 * 3 * 7
