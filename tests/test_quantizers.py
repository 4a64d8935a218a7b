"""Tests for binary/_quantizers.py: forwards and gradients on literal arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import binary

X = jnp.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
SIGN_X = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]


def _grad(fn, x):
  """Gradient of sum(fn(x)), i.e. the VJP with cotangent ones (eager)."""
  return np.asarray(jax.grad(lambda v: jnp.sum(fn(v)))(x))


def _jit_grad(fn, x):
  return np.asarray(jax.jit(jax.grad(lambda v: jnp.sum(fn(v))))(x))


def _vjp(fn, x, g):
  return np.asarray(jax.vjp(fn, x)[1](g)[0])


def test_ste_sign_forward_sign_of_zero_is_plus_one():
  np.testing.assert_array_equal(binary.ste_sign(X), SIGN_X)
  np.testing.assert_array_equal(binary.ste_sign(X, clip=None), SIGN_X)
  np.testing.assert_array_equal(binary.ste_sign(jnp.array(-0.0)), 1.0)


def test_ste_sign_gradient_window_is_inclusive():
  np.testing.assert_array_equal(_grad(binary.ste_sign, X),
                                [0, 1, 1, 1, 1, 1, 0])
  np.testing.assert_array_equal(
      _grad(lambda x: binary.ste_sign(x, clip=0.5), X), [0, 0, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(
      _grad(lambda x: binary.ste_sign(x, clip=None), X), [1] * 7)
  # The cotangent is passed through, not replaced.
  g = jnp.arange(1.0, 8.0)
  np.testing.assert_array_equal(_vjp(binary.ste_sign, X, g),
                                [0, 2, 3, 4, 5, 6, 0])


def test_approx_sign():
  np.testing.assert_array_equal(binary.approx_sign(X), SIGN_X)
  np.testing.assert_allclose(_grad(binary.approx_sign, X),
                             [0, 0, 1, 2, 1, 0, 0])
  np.testing.assert_allclose(
      _grad(binary.approx_sign, jnp.array([0.25, -0.75])), [1.5, 0.5])


def test_swish_sign():
  np.testing.assert_array_equal(binary.swish_sign(X), SIGN_X)
  x = jnp.array([0.0, 0.2, -0.2, 0.5, 1.0, 50.0])
  np.testing.assert_allclose(
      _grad(binary.swish_sign, x),
      [5.0, 3.023661188100153, 3.023661188100153, -0.0846215652336886,
       -0.194992254900325, 0.0], rtol=1e-5, atol=1e-7)
  # beta: peak value beta at 0.
  np.testing.assert_allclose(
      _grad(lambda v: binary.swish_sign(v, beta=10.0), jnp.array([0.0])),
      [10.0])

  # Cross-check: the derivative of the SignSwish function itself.
  def sign_swish(v, beta=5.0):
    s = jax.nn.sigmoid(beta * v)
    return 2 * s * (1 + beta * v * (1 - s)) - 1

  xs = jnp.linspace(-1.5, 1.5, 31)
  np.testing.assert_allclose(_jit_grad(binary.swish_sign, xs),
                             _jit_grad(sign_swish, xs), rtol=1e-4, atol=1e-5)


def test_magnitude_aware_sign():
  w = jnp.array([[0.5, -1.0], [-0.25, 3.0]])
  np.testing.assert_allclose(binary.magnitude_aware_sign(w),
                             [[0.375, -2.0], [-0.375, 2.0]])
  # g * alpha * 1{|w| <= 1}, alpha a constant (stop_gradient).
  np.testing.assert_allclose(_grad(binary.magnitude_aware_sign, w),
                             [[0.375, 2.0], [0.375, 0.0]])
  # Conv kernel (kh, kw, in, out): one alpha per output channel.
  k = jnp.array([0.5, -0.5, 1.0, 0.0, 2.0, -2.0, -1.0, 0.0]).reshape(
      2, 1, 2, 2)
  # channel 0: 0.5, 1.0, 2.0, -1.0 -> 1.125; channel 1: -.5, 0, -2, 0 -> .625
  np.testing.assert_allclose(
      binary.magnitude_aware_sign(k).reshape(-1),
      [1.125, -0.625, 1.125, 0.625, 1.125, -0.625, -1.125, 0.625])
  # 1-D: one alpha.
  np.testing.assert_allclose(
      binary.magnitude_aware_sign(jnp.array([1.0, -3.0])), [2.0, -2.0])


def test_ste_heaviside():
  x = jnp.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0])
  np.testing.assert_array_equal(binary.ste_heaviside(x), [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(_grad(binary.ste_heaviside, x),
                                [0, 1, 1, 1, 1, 0])
  np.testing.assert_array_equal(
      _grad(lambda v: binary.ste_heaviside(v, clip=None), x), [1] * 6)


def test_stochastic_sign_saturates_and_has_hard_sigmoid_mean():
  key = jax.random.key(0)
  x = jnp.array([-3.0, -1.0, 1.0, 3.0])
  draws = jax.vmap(lambda k: binary.stochastic_sign(k, x))(
      jax.random.split(key, 50))
  np.testing.assert_array_equal(draws, np.tile([-1, -1, 1, 1], (50, 1)))
  # p = hard_sigmoid(x / H): E[q] = 2p - 1 = clip(x / H, -1, 1).
  mean = jax.jit(lambda k, v, h: jnp.mean(binary.stochastic_sign(k, v, h)),
                 static_argnums=2)
  x = jnp.full((20000,), 0.5)
  assert abs(float(mean(key, x, 1.0)) - 0.5) < 0.03
  assert abs(float(mean(key, x, 2.0)) - 0.25) < 0.03
  q = binary.stochastic_sign(key, jnp.zeros((100,)))
  assert set(np.unique(np.asarray(q)).tolist()) <= {-1.0, 1.0}


def test_stochastic_sign_gradient():
  key = jax.random.key(1)
  x = jnp.array([-2.0, -1.0, 0.0, 1.0, 2.0])
  np.testing.assert_array_equal(
      _grad(lambda v: binary.stochastic_sign(key, v), x), [0, 1, 1, 1, 0])
  np.testing.assert_array_equal(
      _grad(lambda v: binary.stochastic_sign(key, v, H=2.0), x), [1] * 5)


def test_dtype_is_kept():
  x = jnp.array([-1.5, 0.0, 0.5], dtype=jnp.bfloat16)
  for name in binary.QUANTIZERS:
    q = binary.get_quantizer(name)
    assert q(x).dtype == jnp.bfloat16, name
    assert jax.grad(lambda v, q=q: jnp.sum(q(v)).astype(jnp.float32))(
        x).dtype == jnp.bfloat16, name


def test_jit():
  f = jax.jit(lambda v: binary.ste_sign(v, clip=0.5))
  np.testing.assert_array_equal(f(X), SIGN_X)
  g = jax.jit(jax.grad(lambda v: jnp.sum(binary.ste_sign(v, clip=0.5))))
  np.testing.assert_array_equal(g(X), [0, 0, 1, 1, 1, 0, 0])
  for name in binary.QUANTIZERS:
    q = binary.get_quantizer(name)
    np.testing.assert_array_equal(jax.jit(q)(X), q(X))
    np.testing.assert_allclose(_jit_grad(q, X), _grad(q, X), rtol=1e-5)
  s = jax.jit(binary.stochastic_sign)
  np.testing.assert_array_equal(s(jax.random.key(0), X),
                                binary.stochastic_sign(jax.random.key(0), X))


def test_registry():
  assert sorted(binary.QUANTIZERS) == sorted(
      ["identity", "ste_sign", "ste_identity_sign", "approx_sign",
       "swish_sign", "magnitude_aware_sign", "ste_heaviside"])
  np.testing.assert_array_equal(binary.get_quantizer("identity")(X), X)
  q = binary.get_quantizer("ste_identity_sign")  # the unclipped STE
  np.testing.assert_array_equal(q(X), np.where(X >= 0, 1.0, -1.0))
  np.testing.assert_array_equal(_grad(q, X), [1] * 7)
  np.testing.assert_array_equal(
      _grad(binary.get_quantizer("ste_sign", clip=None), X), [1] * 7)
  np.testing.assert_array_equal(
      _grad(binary.get_quantizer("ste_heaviside", clip=0.5), X),
      [0, 0, 1, 1, 1, 0, 0])
  with pytest.raises(ValueError, match="unknown quantizer 'nope'.*ste_sign"):
    binary.get_quantizer("nope")
