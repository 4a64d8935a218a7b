"""Tests of binary.model_summary / format_model_summary and binary.flip_ratio
with hand-computed numbers."""
import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import binary
from experiments import models

# The modules that define these public functions (their doctests run here).
_flips = inspect.getmodule(binary.flip_ratio)
_summary = inspect.getmodule(binary.model_summary)

# BNN MLP 40 -> 5 -> 3, every layer binary: BinaryDense_0 (binary kernel,
# real input), BatchNorm_0, BinaryDense_1 (binary kernel and input),
# BatchNorm_1.
TINY = dict(hidden=(5,), input_quantizer="ste_sign", activation="hard_tanh",
            binary_first=True, binary_last=True)


def _tiny():
  model = models.get_model("binary_mlp", 3, **TINY)
  layers = models.layer_list(model, (40,))
  variables = model.init(jax.random.key(0), jnp.ones((1, 40)), train=False)
  return layers, variables


def test_summary_hand_computed():
  layers, variables = _tiny()
  rows = binary.model_summary(layers, variables)
  assert [r["name"] for r in rows] == [
      "BinaryDense_0", "BatchNorm_0", "BinaryDense_1", "BatchNorm_1", "total"]
  d0, bn0, d1, bn1, total = rows
  # 40x5 binary kernel + 5 real biases; real inputs -> float MACs.
  assert d0["params"] == {"1": 200, "32": 5}
  assert d0["memory_bytes_32"] == 4 * 205
  # 5 channels x ceil(40 / 32) = 2 words x 4 bytes + 5 biases x 4 bytes
  assert d0["memory_bytes_packed"] == 5 * 2 * 4 + 20
  assert d0["macs"] == {"binary": 0, "float": 200}
  # BN: scale, bias, mean, var of 5 channels; no MACs.
  assert bn0["params"] == {"1": 0, "32": 20}
  assert bn0["memory_bytes_32"] == bn0["memory_bytes_packed"] == 80
  assert bn0["macs"] == {"binary": 0, "float": 0}
  # 5x3 binary kernel, sign inputs: binary MACs; 3 x ceil(5/32)=1 word.
  assert d1["params"] == {"1": 15, "32": 3}
  assert d1["memory_bytes_packed"] == 3 * 4 + 12
  assert d1["macs"] == {"binary": 15, "float": 0}
  assert bn1["params"] == {"1": 0, "32": 12}
  assert total["params"] == {"1": 215, "32": 40}
  assert total["memory_bytes_32"] == 4 * 255 == 1020
  assert total["memory_bytes_packed"] == 60 + 80 + 24 + 48
  assert total["macs"] == {"binary": 15, "float": 200}
  assert all(r["remaining"] is None and r["size"] is None for r in rows)


def test_summary_with_mask_and_abstract_variables():
  layers, variables = _tiny()
  mask = {"BinaryDense_0": {"kernel": jnp.zeros((40, 5), bool).at[:10].set(
      True), "bias": None},
          "BinaryDense_1": {"kernel": jnp.ones((5, 3), bool), "bias": None},
          "BatchNorm_0": {"scale": None, "bias": None},
          "BatchNorm_1": {"scale": None, "bias": None}}
  rows = binary.model_summary(layers, variables, mask)
  assert (rows[0]["remaining"], rows[0]["size"]) == (50, 200)
  assert (rows[2]["remaining"], rows[2]["size"]) == (15, 15)
  assert rows[1]["remaining"] is None
  assert (rows[-1]["remaining"], rows[-1]["size"]) == (65, 215)
  # Counts need only shapes.
  abstract = jax.eval_shape(lambda: variables)
  no_mask = binary.model_summary(layers, variables)
  assert binary.model_summary(layers, abstract) == no_mask
  text = binary.format_model_summary(rows)
  lines = text.splitlines()
  assert len(lines) == 6
  assert lines[1].split() == ["BinaryDense_0", "dense", "200", "5", "820",
                              "60", "0", "200", "25.00"]
  assert lines[2].split()[-1] == "-"
  assert lines[-1].split()[0] == "total"
  # right-aligned numeric columns: every line ends at the same column
  assert len({len(l) for l in lines}) == 1


def test_summary_conv_magnitude_aware_and_real_layers():
  layers = [
      {"name": "c", "op": "conv", "inputs": ["input"],
       "params": {"kernel": ["params", "c", "kernel"]}, "shape": [5, 5, 4],
       "kernel_size": [3, 3], "strides": [1, 1],
       "padding": [[1, 1], [1, 1]], "feature_group_count": 1,
       "kernel_quantizer": "magnitude_aware_sign", "input_quantizer": "sign"},
      {"name": "f", "op": "flatten", "inputs": ["c"], "params": {},
       "shape": [100]},
      {"name": "d", "op": "dense", "inputs": ["f"],
       "params": {"kernel": ["params", "d", "kernel"],
                  "bias": ["params", "d", "bias"]}, "shape": [2]},
  ]
  variables = {"params": {"c": {"kernel": np.ones((3, 3, 2, 4))},
                          "d": {"kernel": np.ones((100, 2)),
                                "bias": np.ones(2)}}}
  c, d, total = binary.model_summary(layers, variables)
  assert c["params"] == {"1": 72, "32": 0}
  # fan_in 18 -> 1 word per channel, plus one 32-bit scale per channel
  assert c["memory_bytes_packed"] == 4 * 4 + 4 * 4
  assert c["macs"] == {"binary": 5 * 5 * 72, "float": 0}
  # a real dense layer (no quantizer attrs): all 32-bit, float MACs
  assert d["params"] == {"1": 0, "32": 202}
  assert d["memory_bytes_packed"] == d["memory_bytes_32"] == 808
  assert d["macs"] == {"binary": 0, "float": 200}
  assert total["macs"] == {"binary": 1800, "float": 200}


def test_summary_of_bnn_cnn_and_its_float_twin():
  def summary(**kw):
    model = models.get_model("bnn_cnn", 10, width=1 / 16, **kw)
    return binary.model_summary(models.layer_list(model, (8, 8, 3)),
                                models.abstract_variables(model, (8, 8, 3)))

  twin = summary(binarize=False)
  assert twin[-1]["params"]["1"] == 0 and twin[-1]["macs"]["binary"] == 0
  bnn = summary(input_quantizer="ste_sign")
  # Default: first and last layers real, the others binary kernel + input.
  # Binary kernels: 9*8*8 + 9*8*16 + 9*16*16 + 9*16*32 + 9*32*32 (convs
  # 1-5) + 32*64 + 64*64 (Dense_0, Dense_1).
  assert bnn[-1]["params"]["1"] == 24_000
  # Their MACs, at conv output sizes 8x8 (conv 1), 4x4, 4x4, 2x2, 2x2.
  assert bnn[-1]["macs"]["binary"] == (64 * 576 + 16 * 1152 + 16 * 2304 +
                                       4 * 4608 + 4 * 9216 + 2048 + 4096)
  assert sum(bnn[-1]["macs"].values()) == twin[-1]["macs"]["float"]
  assert sum(bnn[-1]["params"].values()) == sum(twin[-1]["params"].values())


# --------------------------------------------------------------- flips


def test_flip_ratio_hand_computed():
  prev = {"BinaryDense_0": {"kernel": jnp.array([[0.5, -0.5, 0.0],
                                                 [0.2, 0.0, -0.3]]),
                            "bias": jnp.zeros(3)},
          "Dense_1": {"kernel": jnp.array([[1.0], [-1.0]])}}
  new = {"BinaryDense_0": {"kernel": jnp.array([[0.4, 0.5, 0.0],
                                                [-0.2, 0.1, -0.3]]),
                           "bias": jnp.ones(3)},
         "Dense_1": {"kernel": jnp.array([[-1.0], [1.0]])}}
  # BinaryDense_0: 5 live (one weight 0 in both), flips at (0,1), (1,0)
  # and (1,1) (0 -> +1, a revived weight counts as changed): 3 / 5.
  out = binary.flip_ratio(prev, new, ["BinaryDense_0/kernel"])
  assert list(out) == ["BinaryDense_0/kernel"]
  assert float(out["BinaryDense_0/kernel"]) == pytest.approx(0.6)
  out = binary.flip_ratio(prev, new, models.is_binary_kernel)
  assert list(out) == ["BinaryDense_0/kernel"]
  both = binary.flip_ratio(prev, new, None)  # default: every kernel
  assert {k: round(float(v), 4) for k, v in both.items()} == {
      "BinaryDense_0/kernel": 0.6, "Dense_1/kernel": 1.0}


def test_flip_ratio_edges():
  z = {"k": {"kernel": jnp.zeros((2, 2))}}
  assert float(binary.flip_ratio(z, z, ["k/kernel"])["k/kernel"]) == 0.0
  # sign(0) never matters: 0 -> 0 is excluded, +0.0 vs -0.0 are both pruned
  a = {"k": {"kernel": jnp.array([[0.0, -0.0], [1e-8, -1e-8]])}}
  b = {"k": {"kernel": jnp.array([[-0.0, 0.0], [2.0, -3.0]])}}
  assert float(binary.flip_ratio(a, b, ["k/kernel"])["k/kernel"]) == 0.0
  with pytest.raises(ValueError, match="no such leaves"):
    binary.flip_ratio(a, b, ["k/bias"])
  with pytest.raises(ValueError, match="structure"):
    binary.flip_ratio(a, {"j": a["k"]}, ["k/kernel"])


def test_flip_ratio_jits_without_retracing():
  traces = []

  @jax.jit
  def f(a, b):
    traces.append(1)
    return binary.flip_ratio(a, b, ["k/kernel"])

  a = {"k": {"kernel": jnp.array([[0.5, -0.5]])}}
  b = {"k": {"kernel": jnp.array([[-0.5, -0.5]])}}
  assert float(f(a, b)["k/kernel"]) == 0.5
  assert float(f(b, a)["k/kernel"]) == 0.5
  assert len(traces) == 1
  assert f(a, b)["k/kernel"].dtype == jnp.float32


@pytest.mark.parametrize("module", [_flips, _summary],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
