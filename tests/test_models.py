"""Tests of the model zoo (experiments.models) and its layer lists."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import models
from experiments.models import layers as L
from tests import _layer_list_ref as ref

CIFAR = (32, 32, 3)

# name -> per-example input shape used for that model in these tests.
INPUT_SHAPES = {
    "mlp": (28, 28, 1),          # NHWC input: the MLP flattens it
    "lenet_300_100": (784,),
    "conv2": CIFAR, "conv4": CIFAR, "conv6": CIFAR,
    "resnet20": CIFAR, "resnet56": CIFAR,
    "vgg11": CIFAR, "vgg16": CIFAR, "vgg19": CIFAR,
    "binary_mlp": (28, 28, 1), "bnn_cnn": CIFAR,
    "vanilla_cnn": CIFAR,  # RePr's 3 x 32 conv + FC 512 -> classes
    "nin": CIFAR, "binary_resnet18": CIFAR,  # BENN / main-subsidiary
    "fbs_cnn": CIFAR, "fbs_digits_cnn": (8, 8, 1),  # FBS (dynamic gating)
}
BN_MODELS = ("resnet20", "resnet56", "vgg11", "vgg16", "vgg19")


def _kernel_count(model, input_shape):
  variables = models.abstract_variables(model, input_shape)
  return sum(int(np.prod(leaf.shape))
             for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
             if path[-1].key == "kernel")


def _leaf_paths(tree):
  return {tuple(k.key for k in path)
          for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


_random_variables = models.random_variables  # the shared test values


# ---------------------------------------------------------------- counts


@pytest.mark.parametrize("name,input_shape,expected", [
    ("lenet_300_100", (784,), 266_200),   # 784*300 + 300*100 + 100*10
    ("mlp", (28, 28, 1), 266_200),
    ("conv2", CIFAR, 4_300_992),          # Frankle & Carbin Fig. 2: 4.3M
    ("conv4", CIFAR, 2_425_024),          # 2.4M
    ("conv6", CIFAR, 2_261_184),          # paper prints 1.7M (typo)
    ("resnet20", CIFAR, 270_896),         # 270,256 conv + 640 dense
    ("resnet56", CIFAR, 851_504),
    ("vgg11", CIFAR, 9_222_848),
    ("vgg16", CIFAR, 14_715_584),
    ("vgg19", CIFAR, 20_024_000),         # LTH paper: 20.0M
])
def test_kernel_weight_counts(name, input_shape, expected):
  assert _kernel_count(models.get_model(name, 10), input_shape) == expected


def test_resnet20_kernel_count_is_about_270k():
  # Exactly 270,896 with 1x1 projection shortcuts (16*32 + 32*64 = 2,560 of
  # them); the LTH paper's table says 274K all / 270K conv.
  n = _kernel_count(models.get_model("resnet20", 10), CIFAR)
  assert 260_000 <= n <= 280_000


def test_conv_net_conv_counts_match_paper():
  for name, conv in (("conv2", 38_592), ("conv4", 259_776),
                     ("conv6", 1_144_512)):
    v = models.abstract_variables(models.get_model(name, 10), CIFAR)
    n = sum(int(np.prod(l.shape))
            for p, l in jax.tree_util.tree_leaves_with_path(v)
            if p[-1].key == "kernel" and p[-2].key.startswith("Conv"))
    assert n == conv, name


# ------------------------------------------------------------ registry


def test_get_model_registry():
  # Segmentation models (per-pixel logits) are tested in
  # tests/test_segmentation.py.
  segmentation = {"unet_tiny", "unet_small", "mobilenet_v3_small_seg",
                  "mobilenet_v3_small_seg32"}
  assert set(models.MODELS) - segmentation == set(INPUT_SHAPES)
  for name, cls in models.MODELS.items():
    model = models.get_model(name, 7)
    assert isinstance(model, cls) and model.num_classes == 7
  mlp = models.get_model("mlp", 3, hidden=(20,))
  assert mlp.hidden == (20,)
  assert models.get_model("vgg16", 10).depth == 16
  assert models.get_model("resnet56", 10).depth == 56


def test_get_model_unknown_name():
  with pytest.raises(ValueError, match="unknown model 'x'; choose one of: "
                     "mlp, lenet_300_100, conv2"):
    models.get_model("x", 10)


# ----------------------------------------- layer list reproduces the model


@pytest.mark.parametrize("name", sorted(INPUT_SHAPES))
def test_layer_list_reproduces_model(name):
  num_classes = 7
  input_shape = INPUT_SHAPES[name]
  model = models.get_model(name, num_classes)
  x = jax.random.normal(jax.random.key(1), (2, *input_shape), jnp.float32)
  variables = _random_variables(model, input_shape)
  out = model.apply(variables, x, train=False)
  assert out.shape == (2, num_classes) and out.dtype == jnp.float32

  layers = models.layer_list(model, input_shape)
  assert json.loads(json.dumps(layers)) == layers
  assert layers[-1]["shape"] == [num_classes]
  # Every variable is used by some entry, and every path exists.
  used = {tuple(p) for e in layers for p in e["params"].values()}
  assert used == _leaf_paths(variables)

  np_vars = jax.tree_util.tree_map(np.asarray, variables)
  got = ref.run(layers, np_vars, np.asarray(x))
  out = np.asarray(out)
  scale = max(1.0, float(np.abs(out).max()))
  np.testing.assert_allclose(got, out, rtol=0, atol=1e-4 * scale)
  assert np.abs(out).max() > 1e-3  # not a trivially zero comparison


def test_layer_list_format_invariants():
  layers = models.layer_list(models.get_model("resnet20", 10), CIFAR)
  seen = {"input"}
  for e in layers:
    assert list(e)[:4] == ["name", "op", "inputs", "params"]
    assert "shape" in e and e["op"] in L.OPS
    assert e["name"] not in seen
    assert e["inputs"] and all(i in seen for i in e["inputs"])
    seen.add(e["name"])
  ops = {e["op"] for e in layers}
  assert ops == {"conv", "batchnorm", "activation", "add", "pool", "dense"}
  proj = [e for e in layers if e["name"] == "BasicBlock_3/Conv_2"][0]
  assert proj["kernel_size"] == [1, 1] and proj["strides"] == [2, 2]
  assert proj["padding"] == [[0, 0], [0, 0]] and proj["shape"] == [16, 16, 32]
  assert layers[-1]["name"] == "Dense_0" and layers[-1]["inputs"] == ["pool_0"]
  mlp = models.layer_list(models.get_model("lenet_300_100", 10), (784,))
  assert [e["name"] for e in mlp] == [
      "Dense_0", "relu_0", "Dense_1", "relu_1", "Dense_2"]
  assert mlp[0]["inputs"] == ["input"]


class _AllOps(nn.Module):
  """Touches every op and option the zoo does not (yet) use."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    bn = nn.BatchNorm(use_running_average=not train, use_scale=False)
    x = L.conv(nn.Conv(8, (3, 3), strides=2, padding="SAME"), x)   # (0, 1)
    x = L.batchnorm(bn, x)
    x = L.activation(x, "hard_swish")
    d = L.conv(nn.Conv(8, (3, 3), padding=1, feature_group_count=8,
                       use_bias=False), x)                          # depthwise
    d = L.activation(d, "relu6")
    s = L.global_avg_pool(L.activation(x, "abs"))   # hard_swish has x < 0
    s = L.relu(L.dense(nn.Dense(4), s))
    s = L.activation(L.dense(nn.Dense(8, use_bias=False), s), "hard_sigmoid")
    x = L.gate(d, L.wta(s, 0.5))                     # 4 of 8 channels kept
    a = L.avg_pool(x, (3, 3), (1, 1), padding="SAME", count_include_pad=False)
    b = L.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    m = L.max_pool(x, (3, 3), (2, 2), padding="SAME")
    m = L.upsample(m, 2)
    x = L.concat([a, b, L.add(a, b, m)], axis=-1)
    x = L.activation(x, "tanh")
    y = L.activation(L.conv(nn.Conv(4, (1, 1)), x), "sigmoid")
    z = L.sign(L.conv(nn.Conv(4, (1, 1)), x))
    z = L.activation(z, "hard_tanh")
    x = L.concat([y, z], axis=3)
    g = L.global_max_pool(x)
    x = L.flatten(L.max_pool(x, (2, 2), (2, 2)))
    x = L.concat([x, g])
    return L.dense(nn.Dense(3), x)


def test_layer_list_all_ops_reproduce():
  model = _AllOps()
  x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
  variables = _random_variables(model, (8, 8, 3), seed=4)
  out = np.asarray(model.apply(variables, x, train=False))
  layers = models.layer_list(model, (8, 8, 3))
  ops = {e["op"] for e in layers}
  assert ops == set(L.OPS)
  assert {e.get("kind") for e in layers if e["op"] == "activation"} == set(
      L.ACTIVATIONS)
  stride2 = layers[0]
  assert stride2["padding"] == [[0, 1], [0, 1]]
  assert [e["feature_group_count"] for e in layers if e["op"] == "conv"][1] == 8
  assert "scale" not in layers[1]["params"]
  got = ref.run(layers, jax.tree_util.tree_map(np.asarray, variables),
                np.asarray(x))
  np.testing.assert_allclose(got, out, rtol=0, atol=1e-4)


def test_sign_of_zero_is_plus_one():
  x = jnp.array([[-1.0, 0.0, 2.0]])
  np.testing.assert_array_equal(L.sign(x), [[-1.0, 1.0, 1.0]])


# ------------------------------------------------- drift is not silent


class _Unrecorded(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    x = L.relu(L.dense(nn.Dense(4), x))
    x = x * 2.0  # not in the layer list
    return L.dense(nn.Dense(2), x)


class _UnrecordedOutput(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    return nn.relu(L.dense(nn.Dense(2), x))


class _Dangling(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    L.relu(x)
    return L.dense(nn.Dense(2), x)


class _TrainModeBN(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    return L.batchnorm(nn.BatchNorm(use_running_average=False), x)


@pytest.mark.parametrize("module,match", [
    (_Unrecorded(), "not produced by a recorded op"),
    (_UnrecordedOutput(), "not produced by a recorded op"),
    (_Dangling(), "not used by the output"),
    (_TrainModeBN(), "inference form"),
])
def test_layer_list_refuses_unrecorded_computation(module, match):
  with pytest.raises(models.LayerListError, match=match):
    models.layer_list(module, (5,))


# ---------------------------------------------------- train vs eval, BN


def test_resnet20_train_vs_eval():
  model = models.get_model("resnet20", 10)
  x = jax.random.normal(jax.random.key(0), (2, *CIFAR)) * 2.0 + 0.5
  variables = _random_variables(model, CIFAR)
  params, stats = variables["params"], variables["batch_stats"]

  out_train, updates = model.apply(variables, x, train=True,
                                   mutable=["batch_stats"])
  assert out_train.shape == (2, 10)
  new_stats = updates["batch_stats"]
  assert jax.tree.structure(new_stats) == jax.tree.structure(stats)
  changed = jax.tree.leaves(jax.tree.map(
      lambda a, b: bool(jnp.any(a != b)), stats, new_stats))
  assert all(changed)

  # Flax momentum 0.9 (= PyTorch 0.1): new = 0.9 * old + 0.1 * batch stat.
  h = nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)), use_bias=False).apply(
      {"params": params["Conv_0"]}, x)
  old, new = stats["BatchNorm_0"], new_stats["BatchNorm_0"]
  np.testing.assert_allclose(
      new["mean"], 0.9 * old["mean"] + 0.1 * h.mean(axis=(0, 1, 2)),
      rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      new["var"], 0.9 * old["var"] + 0.1 * h.var(axis=(0, 1, 2)),
      rtol=1e-5, atol=1e-5)

  # Eval uses the running stats: per-example, unlike train mode.
  out_eval = model.apply(variables, x, train=False)
  assert not np.allclose(out_eval, out_train, atol=1e-3)
  np.testing.assert_allclose(model.apply(variables, x[:1], train=False),
                             out_eval[:1], rtol=1e-5, atol=1e-5)
  # train=True without mutable batch_stats is an error, not a silent no-op.
  with pytest.raises(Exception, match="batch_stats"):
    model.apply(variables, x, train=True)


def test_bn_models_have_batch_stats_and_no_conv_bias():
  for name in BN_MODELS:
    v = models.abstract_variables(models.get_model(name, 10), CIFAR)
    assert "batch_stats" in v
    conv_bias = [p for p in _leaf_paths(v["params"])
                 if p[-1] == "bias" and p[-2].startswith("Conv")]
    assert not conv_bias, name


def test_vgg11_train_mode_updates_stats():
  model = models.get_model("vgg11", 10)
  x = jax.random.normal(jax.random.key(0), (2, *CIFAR))
  variables = _random_variables(model, CIFAR)
  out, updates = model.apply(variables, x, train=True,
                             mutable=["batch_stats"])
  assert out.shape == (2, 10)
  changed = jax.tree.leaves(jax.tree.map(
      lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"],
      updates["batch_stats"]))
  assert len(changed) == 16 and all(changed)  # 8 BN x (mean, var)


def test_mlp_flattens_images_like_vectors():
  # Also the one real `model.init` here (the others use abstract shapes).
  model = models.get_model("lenet_300_100", 10)
  x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
  variables = model.init(jax.random.key(1), x, train=False)
  np.testing.assert_allclose(
      model.apply(variables, x, train=False),
      model.apply(variables, x.reshape(2, 784), train=False), atol=1e-6)


def test_models_are_pure_pytrees():
  # params are plain nested dicts with `kernel` leaves for prunable weights.
  v = models.abstract_variables(models.get_model("conv2", 10), CIFAR)
  assert isinstance(v["params"], dict)
  assert {p[-1] for p in _leaf_paths(v["params"])} == {"kernel", "bias"}
