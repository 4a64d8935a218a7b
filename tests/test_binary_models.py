"""Tests of the BinaryConnect/BNN models, their layer lists and configs."""
import doctest
import importlib
import inspect
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import binary
from experiments import config_check
from experiments import models
from experiments import optimizers
from experiments.models import layers as L
from tests import _layer_list_ref as ref

# The modules of binary's layers and of the binary zoo models (their
# doctests run here).
BINARY_LAYERS = inspect.getmodule(binary.BinaryDense)
BINARY_MODELS = inspect.getmodule(models.BinaryMLP)

MLP_SHAPE = (8, 8, 1)
CNN_SHAPE = (8, 8, 3)
TINY_MLP = {"hidden": (24, 16)}
TINY_CNN = {"width": 1 / 16}  # convs 8-8-16-16-32-32, FC 64-64
BNN = {"input_quantizer": "ste_sign", "activation": "hard_tanh",
       "binary_first": True, "binary_last": True}


random_variables = models.random_variables  # the shared test values


def _random_mask(params, seed=1):
  """Half of every kernel pruned (bool mask like sparsity.create_mask)."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda p, x: (jnp.asarray(rng.random(x.shape) < 0.5)
                    if p[-1].key == "kernel" else None), params)


def _apply_mask(variables, mask):
  params = jax.tree.map(lambda x, m: x if m is None else x * m,
                        variables["params"], mask,
                        is_leaf=lambda m: m is None)
  return {**variables, "params": params}


# ------------------------------------------------------------- registry


def test_registered_and_kernel_counts():
  assert models.MODELS["binary_mlp"] is models.BinaryMLP
  assert models.MODELS["bnn_cnn"] is models.BinaryCNN

  def kernels(model, shape):
    v = models.abstract_variables(model, shape)
    return sum(int(np.prod(l.shape))
               for p, l in jax.tree_util.tree_leaves_with_path(v)
               if p[-1].key == "kernel")

  # 784*1024 + 2*1024*1024 + 1024*10
  assert kernels(models.get_model("binary_mlp", 10), (784,)) == 2_910_208
  assert kernels(models.get_model("bnn_cnn", 10), (32, 32, 3)) == 14_022_016


def test_binary_and_real_layers_by_flags():
  def names(**kw):
    model = models.get_model("binary_mlp", 3, **TINY_MLP, **kw)
    return sorted(models.abstract_variables(model, MLP_SHAPE)["params"])

  assert names() == ["BatchNorm_0", "BatchNorm_1", "BatchNorm_2",
                     "BinaryDense_1", "Dense_0", "Dense_2"]
  assert names(binary_first=True, binary_last=True) == [
      "BatchNorm_0", "BatchNorm_1", "BatchNorm_2", "BinaryDense_0",
      "BinaryDense_1", "BinaryDense_2"]
  assert names(binarize=False, binary_first=True) == [
      "BatchNorm_0", "BatchNorm_1", "BatchNorm_2", "Dense_0", "Dense_1",
      "Dense_2"]


def test_bnn_first_layer_input_is_never_quantized():
  model = models.get_model("binary_mlp", 3, **TINY_MLP, **BNN)
  dense = [e for e in models.layer_list(model, MLP_SHAPE)
           if e["op"] == "dense"]
  assert [(e["kernel_quantizer"], e["input_quantizer"]) for e in dense] == [
      ("sign", None), ("sign", "sign"), ("sign", "sign")]
  model = models.get_model("bnn_cnn", 3, **TINY_CNN, **BNN)
  layers = models.layer_list(model, CNN_SHAPE)
  weight = [e for e in layers if e["op"] in ("dense", "conv")]
  assert weight[0]["input_quantizer"] is None
  assert all(e["input_quantizer"] == "sign" for e in weight[1:])
  # the VGG-like order: conv, pool, BN, activation
  assert [e["op"] for e in layers[3:7]] == [
      "conv", "pool", "batchnorm", "activation"]
  assert [e["shape"] for e in weight] == [
      [8, 8, 8], [8, 8, 8], [4, 4, 16], [4, 4, 16], [2, 2, 32], [2, 2, 32],
      [64], [64], [3]]
  assert layers[-1]["op"] == "batchnorm"  # BN after the output layer


def test_float_twin_has_no_quantizers():
  for name, kw, shape in (("binary_mlp", TINY_MLP, MLP_SHAPE),
                          ("bnn_cnn", TINY_CNN, CNN_SHAPE)):
    model = models.get_model(name, 3, **kw, **BNN, binarize=False)
    layers = models.layer_list(model, shape)
    assert not any("kernel_quantizer" in e or "input_quantizer" in e
                   for e in layers)
    v = models.abstract_variables(model, shape)
    assert not any(models.is_binary_kernel(
        tuple(k.key for k in p), l)
        for p, l in jax.tree_util.tree_leaves_with_path(v["params"]))
    twin = models.get_model(name, 3, **kw, **BNN)
    assert (jax.tree.leaves(jax.tree.map(lambda l: l.shape, v)) ==
            jax.tree.leaves(jax.tree.map(
                lambda l: l.shape, models.abstract_variables(twin, shape))))


# ----------------------------------------- layer list reproduces the model

CASES = {
    "mlp_bc": ("binary_mlp", MLP_SHAPE, {**TINY_MLP}),
    "mlp_bc_all_binary": ("binary_mlp", MLP_SHAPE,
                          {**TINY_MLP, "binary_first": True,
                           "binary_last": True}),
    "mlp_bnn": ("binary_mlp", MLP_SHAPE, {**TINY_MLP, **BNN}),
    "mlp_magnitude_heaviside": ("binary_mlp", MLP_SHAPE, {
        **TINY_MLP, **BNN, "kernel_quantizer": "magnitude_aware_sign",
        "input_quantizer": "ste_heaviside"}),
    "mlp_approx_swish": ("binary_mlp", MLP_SHAPE, {
        **TINY_MLP, **BNN, "kernel_quantizer": "approx_sign",
        "input_quantizer": "swish_sign"}),
    "mlp_stochastic": ("binary_mlp", MLP_SHAPE, {
        **TINY_MLP, "kernel_quantizer": "stochastic_sign",
        "binary_first": True, "binary_last": True}),
    "mlp_float": ("binary_mlp", MLP_SHAPE, {**TINY_MLP, "binarize": False}),
    "cnn_bc": ("bnn_cnn", CNN_SHAPE, {**TINY_CNN, "binary_first": True,
                                      "binary_last": True}),
    "cnn_bnn": ("bnn_cnn", CNN_SHAPE, {**TINY_CNN, **BNN}),
    "cnn_magnitude": ("bnn_cnn", CNN_SHAPE, {
        **TINY_CNN, **BNN, "kernel_quantizer": "magnitude_aware_sign"}),
    "cnn_float": ("bnn_cnn", CNN_SHAPE, {**TINY_CNN, **BNN,
                                         "binarize": False}),
}


@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_list_reproduces_model(case, masked):
  name, shape, kwargs = CASES[case]
  model = models.get_model(name, 5, **kwargs)
  x = jax.random.normal(jax.random.key(1), (3, *shape), jnp.float32)
  variables = random_variables(model, shape)
  if masked:
    variables = _apply_mask(variables, _random_mask(variables["params"]))
  out = model.apply(variables, x, train=False)
  assert out.shape == (3, 5) and out.dtype == jnp.float32

  layers = models.layer_list(model, shape)
  assert json.loads(json.dumps(layers)) == layers
  used = {tuple(p) for e in layers for p in e["params"].values()}
  assert used == {tuple(k.key for k in p) for p, _ in
                  jax.tree_util.tree_leaves_with_path(variables)}
  got = ref.run(layers, jax.tree.map(np.asarray, variables), np.asarray(x))
  out = np.asarray(out)
  scale = max(1.0, float(np.abs(out).max()))
  np.testing.assert_allclose(got, out, rtol=0, atol=1e-4 * scale)
  assert np.abs(out).max() > 1e-3


def test_reference_quantizes_conv_inputs_before_zero_padding():
  # One binary conv on a constant -1 image: with sign inputs and zero
  # padding the corner sees 4 of 9 inputs; padding with sign(0) = +1 would
  # give a different answer.
  class _One(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
      return models.binary_conv(binary.BinaryConv(
          1, (3, 3), input_quantizer="ste_sign", use_bias=False), x,
                                 train=train)

  model = _One()
  variables = {"params": {"BinaryConv_0": {"kernel": jnp.ones((3, 3, 1,
                                                               1))}}}
  x = -jnp.ones((1, 3, 3, 1))
  out = model.apply(variables, x, train=False)
  assert float(out[0, 0, 0, 0]) == -4.0
  layers = models.layer_list(model, (3, 3, 1))
  np.testing.assert_array_equal(
      ref.run(layers, jax.tree.map(np.asarray, variables), np.asarray(x)),
      out)


# -------------------------------------------------------------- stochastic


def test_stochastic_binaryconnect_train_and_test_time():
  model = models.get_model("binary_mlp", 5, **CASES["mlp_stochastic"][2])
  variables = random_variables(model, MLP_SHAPE)
  x = jax.random.normal(jax.random.key(1), (4, *MLP_SHAPE))

  def train_out(key):
    out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                         rngs={"quantize": jax.random.key(key)})
    return np.asarray(out)

  np.testing.assert_array_equal(train_out(0), train_out(0))
  assert not np.allclose(train_out(0), train_out(1))
  with pytest.raises(Exception, match="quantize"):
    model.apply(variables, x, train=True, mutable=["batch_stats"])
  # Test time: the real weights, i.e. the float twin with the same values.
  real = jax.tree_util.tree_map_with_path(lambda p, l: l, variables)
  real["params"] = {k.replace("Binary", ""): v
                    for k, v in variables["params"].items()}
  twin = models.get_model("binary_mlp", 5, **CASES["mlp_stochastic"][2],
                          binarize=False)
  np.testing.assert_allclose(model.apply(variables, x, train=False),
                             twin.apply(real, x, train=False), atol=1e-5)


def test_binary_layers_stochastic_path():
  layer = binary.BinaryDense(2, kernel_quantizer="stochastic_sign",
                             use_bias=False)
  kernel = jnp.array([[0.0, 2.0], [-2.0, 0.5]])
  params = {"params": {"kernel": kernel}}
  x = jnp.array([[1.0, 1.0]])
  np.testing.assert_allclose(layer.apply(params, x, deterministic=True),
                             [[-2.0, 2.5]])  # real weights
  rngs = {"quantize": jax.random.key(0)}
  ys = {tuple(np.asarray(layer.apply(params, x, deterministic=False,
                                     rngs={"quantize": jax.random.key(k)}))
              [0].tolist()) for k in range(20)}
  # column 0: 0 (pruned) + (-1); column 1: +1 + (+-1)
  assert ys == {(-1.0, 2.0), (-1.0, 0.0)}
  g = jax.grad(lambda p: layer.apply({"params": p}, x, deterministic=False,
                                     rngs=rngs).sum())(params["params"])
  np.testing.assert_allclose(g["kernel"], [[0.0, 0.0], [0.0, 1.0]])
  with pytest.raises(Exception, match="deterministic"):
    layer.apply(params, x)
  conv = binary.BinaryConv(1, (1, 1), kernel_quantizer="stochastic_sign",
                           deterministic=True, use_bias=False)
  y = conv.apply({"params": {"kernel": jnp.full((1, 1, 1, 1), 0.3)}},
                 jnp.ones((1, 2, 2, 1)))
  np.testing.assert_allclose(y, 0.3 * np.ones((1, 2, 2, 1)))
  with pytest.raises(ValueError, match="needs a key"):
    binary.binary_kernel(kernel, "stochastic_sign")


# ---------------------------------------------------------- training bits


def test_bn_momentum_and_epsilon_are_used():
  model = models.get_model("binary_mlp", 5, **TINY_MLP, bn_momentum=0.85)
  variables = random_variables(model, MLP_SHAPE)
  x = jax.random.normal(jax.random.key(0), (6, *MLP_SHAPE))
  _, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
  old = variables["batch_stats"]["BatchNorm_2"]["mean"]
  new = upd["batch_stats"]["BatchNorm_2"]["mean"]
  # new = 0.85 old + 0.15 batch mean  =>  batch mean recovered exactly
  batch_mean = (new - 0.85 * old) / 0.15
  assert not np.allclose(new, old)
  assert np.all(np.isfinite(batch_mean))
  layers = models.layer_list(model, MLP_SHAPE)
  assert {e["epsilon"] for e in layers if e["op"] == "batchnorm"} == {1e-4}


def test_gradients_reach_latent_binary_weights():
  model = models.get_model("binary_mlp", 5, **TINY_MLP, **BNN)
  variables = random_variables(model, MLP_SHAPE)
  x = jax.random.normal(jax.random.key(0), (6, *MLP_SHAPE))

  def loss(params):
    out, _ = model.apply({**variables, "params": params}, x, train=True,
                         mutable=["batch_stats"])
    return binary.squared_hinge_loss(out, jnp.arange(6) % 5, 5)

  g = jax.grad(loss)(variables["params"])
  for name in ("BinaryDense_0", "BinaryDense_1", "BinaryDense_2"):
    assert float(jnp.abs(g[name]["kernel"]).sum()) > 0, name


def test_dropout_only_in_training():
  model = models.get_model("binary_mlp", 5, **TINY_MLP, **BNN,
                           dropout_input=0.2, dropout_hidden=0.5)
  variables = random_variables(model, MLP_SHAPE)
  x = jax.random.normal(jax.random.key(0), (6, *MLP_SHAPE))
  layers = models.layer_list(model, MLP_SHAPE)  # dropout: identity at test
  np.testing.assert_allclose(
      ref.run(layers, jax.tree.map(np.asarray, variables), np.asarray(x)),
      model.apply(variables, x, train=False), atol=1e-3)
  out = lambda k: model.apply(variables, x, train=True,
                              mutable=["batch_stats"],
                              rngs={"dropout": jax.random.key(k)})[0]
  assert not np.allclose(out(0), out(1))


def test_is_binary_kernel_and_forward_names():
  model = models.get_model("binary_mlp", 5, **TINY_MLP)
  params = models.abstract_variables(model, MLP_SHAPE)["params"]
  chosen = [p for p, l in jax.tree_util.tree_leaves_with_path(params)
            if models.is_binary_kernel(tuple(k.key for k in p), l)]
  assert [tuple(k.key for k in p) for p in chosen] == [
      ("BinaryDense_1", "kernel")]
  fn = models.forward_name
  assert fn("ste_sign", "kernel") == fn(binary.ste_sign, "input") == "sign"
  assert fn(binary.get_quantizer("ste_sign", clip=None), "kernel") == "sign"
  assert fn("stochastic_sign", "kernel") is None
  assert fn(binary.stochastic_sign, "kernel") is None
  assert fn("identity", "input") is None
  assert fn("ste_heaviside", "input") == "heaviside"
  for bad, role in (("ste_heaviside", "kernel"),
                    ("magnitude_aware_sign", "input"),
                    ("stochastic_sign", "input"), (jnp.tanh, "kernel")):
    with pytest.raises(models.LayerListError, match="cannot describe"):
      fn(bad, role)


def test_record_validates_quantizer_attrs():
  class _Bad(nn.Module):
    attr: str
    value: object
    op: str = "dense"

    @nn.compact
    def __call__(self, x, *, train):
      if self.op == "dense":
        return L.record("dense", [x], x @ jnp.ones((x.shape[-1], 2)),
                        **{self.attr: self.value})
      return L.record("flatten", [x], x.reshape(x.shape[0], -1),
                      **{self.attr: self.value})

  with pytest.raises(models.LayerListError, match="not one of"):
    models.layer_list(_Bad("kernel_quantizer", "heaviside"), (3,))
  with pytest.raises(models.LayerListError, match="not one of"):
    models.layer_list(_Bad("input_quantizer", "magnitude_aware_sign"), (3,))
  with pytest.raises(models.LayerListError, match="dense/conv only"):
    models.layer_list(_Bad("input_quantizer", "sign", "flatten"), (3,))


@pytest.mark.parametrize("module", [BINARY_MODELS, BINARY_LAYERS],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE,
                           extraglobs={"binary": binary})
  assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- configs

CONFIGS = ("binaryconnect_digits", "binaryconnect_mnist",
           "binaryconnect_cifar10", "bnn_mnist")
INPUT = {"digits": ((8, 8, 1), 10), "mnist": ((28, 28, 1), 10),
         "cifar10": ((32, 32, 3), 10)}


def _config(name):
  return importlib.import_module(f"experiments.configs.{name}").get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_model_and_layer_list(name):
  config = _config(name)
  for field in ("binarize", "loss", "clip_weights", "glorot_lr_scale",
                "grad_clip_norm"):
    assert field in config, field
  assert config.pruning.method == "none"
  assert config.binarize is True
  config_check.validate(config)
  shape, classes = INPUT[config.dataset]
  for binarize in (True, False):
    kwargs = {**config.model_kwargs.to_dict(), "binarize": binarize}
    model = models.get_model(config.model, classes, **kwargs)
    layers = models.layer_list(model, shape)  # abstract: cheap at any size
    assert layers[-1]["shape"] == [classes]
    has_binary = any(e.get("kernel_quantizer") or e.get("input_quantizer")
                     or e["name"].startswith("Binary") for e in layers)
    assert has_binary == binarize


def test_paper_configs_hyperparameters():
  bc = _config("binaryconnect_mnist")
  assert bc.model_kwargs.hidden == (2048, 2048, 2048)
  assert bc.model_kwargs.bn_momentum == 0.85
  assert bc.model_kwargs.kernel_quantizer == "stochastic_sign"
  assert bc.batch_size == 100 and bc.loss == "squared_hinge"
  assert bc.clip_weights == 1.0 and bc.glorot_lr_scale
  cifar = _config("binaryconnect_cifar10")
  assert cifar.model == "bnn_cnn" and cifar.batch_size == 50
  assert cifar.model_kwargs.input_quantizer is None
  bnn = _config("bnn_mnist")
  assert bnn.model_kwargs.input_quantizer == "ste_sign"
  assert bnn.model_kwargs.hidden == (4096, 4096, 4096)
  # Per-epoch exponential decay (Lasagne's LR *= decay after every epoch):
  # a staircase with one decay per epoch, LR_start * decay^epochs = LR_fin.
  for c, spe, epochs, lr_fin in ((bc, 500, 250, 3e-6),
                                 (cifar, 900, 500, 2e-6),
                                 (bnn, 500, 1000, 3e-7)):
    assert c.num_steps == spe * epochs
    assert c.lr_schedule == "exponential" and c.lr_decay_every == spe
    sched = optimizers.make_schedule(c)
    assert float(sched(spe - 1)) == pytest.approx(c.learning_rate)
    assert float(sched(spe)) == pytest.approx(
        c.learning_rate * c.lr_decay_factor, rel=1e-6)
    assert c.learning_rate * c.lr_decay_factor ** epochs == pytest.approx(
        lr_fin, rel=1e-6)
