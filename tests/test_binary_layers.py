"""Tests for binary/_layers.py: hand-computed binary matmuls and convs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import binary
import sparsity

# Latent kernel (3 -> 2): one exact zero (pruned), one outside the window.
KERNEL = jnp.array([[0.3, -0.2], [-0.7, 0.0], [0.1, 1.5]])
BIAS = jnp.array([0.5, -0.5])


def _dense_params():
  return {"params": {"kernel": KERNEL, "bias": BIAS}}


def test_dense_forward_hand_computed():
  layer = binary.BinaryDense(2)
  # Binary kernel [[1, -1], [-1, 0], [1, 1]].
  y = layer.apply(_dense_params(), jnp.array([[1.0, 2.0, 3.0]]))
  np.testing.assert_allclose(y, [[2.5, 1.5]])
  layer = binary.BinaryDense(2, input_quantizer="ste_sign")
  y = layer.apply(_dense_params(), jnp.array([[0.5, -2.0, 0.0]]))
  np.testing.assert_allclose(y, [[3.5, -0.5]])  # inputs [1, -1, 1]
  layer = binary.BinaryDense(2, kernel_quantizer=None, use_bias=False)
  y = layer.apply({"params": {"kernel": KERNEL}}, jnp.array([[1.0, 0, 0]]))
  np.testing.assert_allclose(y, [[0.3, -0.2]])


def test_dense_params_are_latent_kernels_found_by_sparsity():
  layer = binary.BinaryDense(4)
  params = layer.init(jax.random.key(0), jnp.ones((1, 3)))["params"]
  assert set(params) == {"kernel", "bias"}
  k = params["kernel"]
  assert k.shape == (3, 4) and float(jnp.max(jnp.abs(k))) <= 1.0
  assert len(set(np.asarray(k).ravel().tolist())) == 12  # real, not +-1
  mask = sparsity.create_mask(params)
  assert mask["kernel"] is not None and mask["bias"] is None


def test_dense_gradient_reaches_latent_weights_through_ste():
  layer = binary.BinaryDense(2)
  x = jnp.array([[1.0, 2.0, 3.0]])

  def loss(params):
    return jnp.sum(layer.apply({"params": params}, x))

  g = jax.grad(loss)({"kernel": KERNEL, "bias": BIAS})
  # dL/dW_b[i, j] = x_i; times 1{|W| <= 1}; 0 at the pruned (zero) weight.
  np.testing.assert_allclose(g["kernel"], [[1, 1], [2, 0], [3, 0]])
  np.testing.assert_allclose(g["bias"], [1, 1])


def test_zeroed_weight_contributes_nothing():
  layer = binary.BinaryDense(2, use_bias=False)
  kernel = jnp.zeros((3, 2)).at[0, 0].set(-0.4)
  y = layer.apply({"params": {"kernel": kernel}}, jnp.array([[5.0, 7., 9.]]))
  np.testing.assert_allclose(y, [[-5.0, 0.0]])
  np.testing.assert_array_equal(
      binary.binary_kernel(jnp.array([0.0, -0.0, 1e-30, -0.2]), "ste_sign"),
      [0.0, 0.0, 1.0, -1.0])


def _conv_params():
  # (kh, kw, in, out) = (2, 2, 1, 1); binary [[1, -1], [0, 1]].
  return {"params": {"kernel": jnp.array([[0.5, -0.5], [0.0, 2.0]]
                                         ).reshape(2, 2, 1, 1)}}


X_IMG = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)


def test_conv_forward_hand_computed():
  layer = binary.BinaryConv(1, (2, 2), padding="VALID", use_bias=False)
  y = layer.apply(_conv_params(), X_IMG)
  # out[i, j] = x[i, j] - x[i, j + 1] + x[i + 1, j + 1]
  np.testing.assert_allclose(y[0, :, :, 0], [[4.0, 5.0], [7.0, 8.0]])
  layer = binary.BinaryConv(1, (2, 2), strides=2, padding="VALID",
                            use_bias=False)
  np.testing.assert_allclose(layer.apply(_conv_params(), X_IMG)[0, :, :, 0],
                             [[4.0]])


def test_conv_gradient_reaches_latent_weights_through_ste():
  layer = binary.BinaryConv(1, (2, 2), padding="VALID", use_bias=False)

  def loss(params):
    return jnp.sum(layer.apply({"params": params}, X_IMG))

  g = jax.grad(loss)(_conv_params()["params"])["kernel"][:, :, 0, 0]
  # dL/dW_b[a, b] = sum of the window at offset (a, b): [[12, 16], [24, 28]];
  # 0 at the zero weight and outside |W| <= 1.
  np.testing.assert_allclose(g, [[12.0, 16.0], [0.0, 0.0]])


def test_conv_matches_flax_conv_on_the_binary_kernel():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
  layer = binary.BinaryConv(4, (3, 3), strides=(2, 1), padding="SAME",
                            input_quantizer="ste_sign")
  kernel = jnp.asarray(rng.uniform(-1, 1, size=(3, 3, 3, 4)), jnp.float32)
  kernel = kernel.at[0, 0].set(0.0)  # some pruned weights
  params = {"kernel": kernel, "bias": jnp.arange(4.0)}
  y = layer.apply({"params": params}, x)
  ref = nn.Conv(4, (3, 3), strides=(2, 1), padding="SAME").apply(
      {"params": {"kernel": jnp.where(kernel == 0, 0, jnp.where(
          kernel >= 0, 1.0, -1.0)), "bias": params["bias"]}},
      jnp.where(x >= 0, 1.0, -1.0))
  assert y.shape == (2, 3, 6, 4)
  np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-5)


def test_layers_jit_and_magnitude_aware_quantizer():
  layer = binary.BinaryDense(2, kernel_quantizer="magnitude_aware_sign",
                             use_bias=False)
  kernel = jnp.array([[0.5, -1.0], [-0.25, 3.0]])
  y = jax.jit(layer.apply)({"params": {"kernel": kernel}},
                           jnp.array([[1.0, 1.0]]))
  np.testing.assert_allclose(y, [[0.0, 0.0]])
  y = jax.jit(layer.apply)({"params": {"kernel": kernel}},
                           jnp.array([[1.0, 0.0]]))
  np.testing.assert_allclose(y, [[0.375, -2.0]])


def test_conv_rank_error():
  layer = binary.BinaryConv(1, (2, 2))
  with pytest.raises(ValueError, match="rank 4"):
    layer.init(jax.random.key(0), jnp.ones((3, 3, 1)))
