"""larq quantizers vs the project's ``binary`` quantizers, forward and gradient.

Reference: larq/larq (commit fe3ce52171aca19da649571bd541e68f758469f0),
``larq/math.py`` (``sign``, ``heaviside``) and ``larq/quantizers.py``
(``_clipped_gradient``, ``ste_sign``, ``approx_sign``, ``swish_sign``,
``ste_heaviside``, ``MagnitudeAwareSign.call``); the ``tf.custom_gradient``
forward and ``grad(dy)`` functions are transcribed into NumPy below.
Project gradients come from ``jax.vjp`` with the same cotangent ``dy``.

Conventions (all match unless noted): ``sign(0) = sign(-0.0) = +1``
(larq's ``tf.sign(tf.sign(x) + 0.1)``); heaviside(0) = 0; the clip window is
inclusive (``tf.math.less_equal(tf.math.abs(x), clip_value)``), also at
``|x| = clip_value``; ``clip_value=None`` passes ``dy`` unchanged.

Pinned departures:

* ``magnitude_aware_sign`` of a 1-D input: larq's ``reduce_mean`` over
  ``axis=list(range(ndim - 1)) = []`` reduces nothing (the scale is ``|x|``
  itself, so the output is ``x``); the project uses one mean over all of a
  1-D ``w``. Kernels (ndim >= 2) match. larq's ``clip_value`` is an
  argument of ``MagnitudeAwareSign``; the project's is fixed at 1.
* NaN: larq's sign gives NaN (``tf.sign(NaN)``); the project's gives -1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import binary


# ---------------------------------------------------------------------------
# Transcription: larq/math.py and larq/quantizers.py (tf -> NumPy)
# ---------------------------------------------------------------------------

def larq_sign(x):                          # math.sign
  return np.sign(np.sign(x) + 0.1)


def larq_heaviside(x):                     # math.heaviside
  return np.sign(np.maximum(x, 0))         # tf.sign(tf.nn.relu(x))


def _clipped_gradient(x, dy, clip_value):
  if clip_value is None:
    return dy
  zeros = np.zeros_like(dy)
  mask = np.less_equal(np.abs(x), clip_value)
  return np.where(mask, dy, zeros)


def ste_sign(x, dy, clip_value=1.0):
  return larq_sign(x), _clipped_gradient(x, dy, clip_value)


def approx_sign(x, dy):
  abs_x = np.abs(x)
  zeros = np.zeros_like(dy)
  mask = np.less_equal(abs_x, 1.0)
  return larq_sign(x), np.where(mask, (1 - abs_x) * 2 * dy, zeros)


def swish_sign(x, dy, beta=5.0):
  b_x = beta * x
  return larq_sign(x), dy * beta * (2 - b_x * np.tanh(b_x * 0.5)) / (
      1 + np.cosh(b_x))


def ste_heaviside(x, dy, clip_value=1.0):
  return larq_heaviside(x), _clipped_gradient(x, dy, clip_value)


def magnitude_aware_sign(x, dy, clip_value=1.0):
  # MagnitudeAwareSign.call: scale_factor = stop_gradient(reduce_mean(|x|,
  # axis=list(range(len(x.shape) - 1)))); outputs = scale * ste_sign(x).
  axis = tuple(range(x.ndim - 1))          # () reduces nothing, as tf's []
  scale_factor = np.mean(np.abs(x), axis=axis) if axis else np.abs(x)
  out, grad = ste_sign(x, dy, clip_value)
  return scale_factor * out, scale_factor * grad


# ---------------------------------------------------------------------------

def _inputs(seed=0):
  x = np.random.default_rng(seed).normal(scale=1.2, size=40)
  special = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e-8, -1e-8, 3.0]
  x = np.concatenate([special, x]).astype(np.float32)
  dy = np.random.default_rng(seed + 1).normal(size=x.shape)
  return x, dy.astype(np.float32)


def _vjp(fn, x, dy):
  out, pullback = jax.vjp(fn, jnp.asarray(x))
  return np.asarray(out), np.asarray(pullback(jnp.asarray(dy))[0])


@pytest.mark.parametrize("clip", [1.0, 0.5, None])
def test_ste_sign(clip):
  x, dy = _inputs()
  ref_out, ref_grad = ste_sign(x, dy, clip)
  out, grad = _vjp(lambda v: binary.ste_sign(v, clip=clip), x, dy)
  np.testing.assert_array_equal(out, ref_out)
  np.testing.assert_array_equal(grad, ref_grad)
  assert out[0] == 1.0 and out[1] == 1.0           # sign(0) = sign(-0) = +1
  if clip is not None:                             # inclusive at |x| = clip
    edge = np.abs(x) == clip
    np.testing.assert_array_equal(grad[edge], dy[edge])


def test_approx_sign():
  x, dy = _inputs(2)
  ref_out, ref_grad = approx_sign(x, dy)
  out, grad = _vjp(binary.approx_sign, x, dy)
  np.testing.assert_array_equal(out, ref_out)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("beta", [5.0, 2.0])
def test_swish_sign(beta):
  x, dy = _inputs(4)
  ref_out, ref_grad = swish_sign(x, dy, beta)
  out, grad = _vjp(lambda v: binary.swish_sign(v, beta=beta), x, dy)
  np.testing.assert_array_equal(out, ref_out)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_ste_heaviside():
  x, dy = _inputs(6)
  ref_out, ref_grad = ste_heaviside(x, dy)
  out, grad = _vjp(binary.ste_heaviside, x, dy)
  np.testing.assert_array_equal(out, ref_out)
  np.testing.assert_array_equal(grad, ref_grad)
  assert out[0] == 0.0                              # heaviside(0) = 0


@pytest.mark.parametrize("shape", [(5, 4), (3, 3, 2, 4)])
def test_magnitude_aware_sign_kernels(shape):
  rng = np.random.default_rng(8)
  x = rng.normal(scale=0.8, size=shape).astype(np.float32)
  x.ravel()[:3] = [0.0, 1.0, -1.0]
  dy = rng.normal(size=shape).astype(np.float32)
  ref_out, ref_grad = magnitude_aware_sign(x, dy)
  out, grad = _vjp(binary.magnitude_aware_sign, x, dy)
  np.testing.assert_allclose(out, ref_out, rtol=1e-6)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-6)


def test_magnitude_aware_sign_1d_departure():
  x = np.array([0.5, -2.0, 0.25, 1.0], np.float32)
  dy = np.ones_like(x)
  ref_out, ref_grad = magnitude_aware_sign(x, dy)
  out, grad = _vjp(binary.magnitude_aware_sign, x, dy)
  np.testing.assert_array_equal(ref_out, x)        # larq: |x| * sign(x)
  np.testing.assert_allclose(out, 0.9375 * np.sign(x))   # mean |x| = 0.9375
  np.testing.assert_array_equal(ref_grad, [0.5, 0.0, 0.25, 1.0])
  np.testing.assert_allclose(grad, [0.9375, 0.0, 0.9375, 0.9375])


def test_nan_sign_departure():
  x = np.array([np.nan], np.float32)
  assert np.isnan(larq_sign(x)[0])
  assert float(binary.ste_sign(jnp.asarray(x))[0]) == -1.0
