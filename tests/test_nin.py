"""The binary NIN: variants, binary layers, layer list vs the model."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import binary
from experiments import models
from tests import _layer_list_ref as ref
from tests.test_binary_models import random_variables

SHAPE = (8, 8, 2)


def _convs(model, shape=(32, 32, 3)):
  params = models.abstract_variables(model, shape)["params"]
  return {k: v["kernel"].shape for k, v in params.items() if "Conv" in k}


def test_benn_nin_matches_the_official_widths():
  convs = _convs(models.get_model("nin", 10))
  assert convs == {
      "Conv_0": (5, 5, 3, 192), "BinaryConv_1": (1, 1, 192, 96),
      "BinaryConv_2": (5, 5, 96, 192), "BinaryConv_3": (1, 1, 192, 192),
      "BinaryConv_4": (3, 3, 192, 192), "BinaryConv_5": (1, 1, 192, 192),
      "Conv_6": (1, 1, 192, 10)}
  ab = _convs(models.get_model("nin", 10, binary_first=True,
                               binary_last=True))
  assert sorted(ab) == [f"BinaryConv_{i}" for i in range(7)]
  assert list(_convs(models.get_model("nin", 10, binarize=False))) == [
      f"Conv_{i}" for i in range(7)]


def test_xnor_nin_has_seven_binary_layers():
  m = models.get_model("nin", 10, variant="xnor")
  convs = _convs(m)
  assert convs["BinaryConv_1"] == (1, 1, 192, 160)
  assert convs["BinaryConv_2"] == (1, 1, 160, 96)
  assert models.binary_conv_names(m) == [f"BinaryConv_{i}"
                                         for i in range(1, 8)]
  assert all(models.is_binary_kernel((k, "kernel"), np.zeros(s))
             == k.startswith("Binary") for k, s in convs.items())


@pytest.mark.parametrize("kwargs", [
    {}, {"binary_first": True, "binary_last": True}, {"binarize": False},
    {"variant": "xnor", "use_bias": False}],
    ids=["sb", "ab", "float", "xnor"])
def test_layer_list_reproduces_model(kwargs):
  model = models.get_model("nin", 5, width=1 / 16, **kwargs)
  variables = random_variables(model, SHAPE)
  x = jax.random.normal(jax.random.key(1), (3, *SHAPE), jnp.float32)
  out = np.asarray(model.apply(variables, x, train=False))
  layers = models.layer_list(model, SHAPE)
  assert json.loads(json.dumps(layers)) == layers
  ops = [e["op"] for e in layers]
  assert ops[-1] == "pool" and layers[-1]["global"]
  binary_convs = [e for e in layers if e.get("kernel_quantizer")]
  assert all(e["kernel_quantizer"] == "magnitude_aware_sign"
             for e in binary_convs)
  if kwargs.get("binarize", True):
    assert binary_convs and ops.count("sign") == len(binary_convs)
  else:
    assert not binary_convs and "sign" not in ops
  got = ref.run(layers, jax.tree.map(np.asarray, variables), np.asarray(x))
  np.testing.assert_allclose(got, out, rtol=0,
                             atol=1e-4 * max(1.0, np.abs(out).max()))
  assert np.abs(out).max() > 1e-3


def test_subsidiary_gate_removes_filters_and_has_no_layer_list():
  base = models.get_model("nin", 5, variant="xnor", width=1 / 16,
                          use_bias=False)
  gated = base.clone(subsidiary=("BinaryConv_2",))
  v = gated.init(jax.random.key(0), jnp.ones((1, *SHAPE)), train=False)
  m = v["params"]["BinaryConv_2_subsidiary"]
  assert m.shape == (6,) and float(jnp.abs(m).max()) <= 1e-4
  # Gate (1, 0, 1, 0, 1, 0) == baking the keep vector into the kernel.
  params = dict(v["params"])
  params["BinaryConv_2_subsidiary"] = jnp.array([1., -1.] * 3)
  keep = np.array([1., 0.] * 3)
  baked = {k: val for k, val in params.items() if "subsidiary" not in k}
  baked["BinaryConv_2"] = {"kernel": binary.bake_filter_keep(
      params["BinaryConv_2"]["kernel"], keep)}
  x = jax.random.normal(jax.random.key(1), (2, *SHAPE))
  a = gated.apply({**v, "params": params}, x, train=False)
  b = base.apply({**v, "params": baked}, x, train=False)
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  with pytest.raises(models.LayerListError, match="bake"):
    models.layer_list(gated, SHAPE)
