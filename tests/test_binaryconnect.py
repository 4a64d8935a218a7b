"""Tests for binary/_binaryconnect.py on hand-computed arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import binary


def test_hard_sigmoid():
  np.testing.assert_allclose(
      binary.hard_sigmoid(jnp.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])),
      [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_squared_hinge_loss():
  logits = jnp.array([[0.5, -2.0, 1.5], [0.2, 0.0, -0.5]])
  labels = jnp.array([2, 0])
  # Targets [[-1, -1, 1], [1, -1, -1]]; max(0, 1 - t y)^2 =
  # [[2.25, 0, 0], [0.64, 1, 0.25]]; mean over all 6 entries.
  np.testing.assert_allclose(
      binary.squared_hinge_loss(logits, labels, 3), 4.14 / 6, rtol=1e-6)
  np.testing.assert_allclose(
      binary.squared_hinge_loss(jnp.array([[1.0, -1.0]]), jnp.array([0]), 2),
      0.0)


def test_glorot_lr_scale_values():
  # METHODS 4.5: a 784 -> 1024 dense layer: 1/sqrt(1.5/1808) = 34.7179.
  assert binary.glorot_lr_scale((784, 1024)) == pytest.approx(34.71791084)
  # Conv (3, 3, 16, 32): fan_in 144, fan_out 288 -> sqrt(432/1.5) = sqrt(288).
  assert binary.glorot_lr_scale((3, 3, 16, 32)) == pytest.approx(
      16.97056275)
  with pytest.raises(ValueError):
    binary.glorot_lr_scale((5,))


def test_scale_by_glorot_scales_kernels_only():
  params = {"Dense_0": {"kernel": jnp.zeros((784, 1024)),
                        "bias": jnp.zeros((1024,))},
            "Conv_0": {"kernel": jnp.zeros((3, 3, 16, 32))}}
  ones = jax.tree.map(jnp.ones_like, params)
  tx = binary.scale_by_glorot()
  u, _ = tx.update(ones, tx.init(params), params)
  np.testing.assert_allclose(u["Dense_0"]["kernel"][0, :3], 34.71791084,
                             rtol=1e-6)
  np.testing.assert_allclose(u["Conv_0"]["kernel"][0, 0, 0, :3], 16.97056275,
                             rtol=1e-6)
  np.testing.assert_array_equal(u["Dense_0"]["bias"], 1.0)
  tx = binary.scale_by_glorot(H=0.5)
  u, _ = tx.update(ones, tx.init(params), params, mask=None)  # extra args ok
  np.testing.assert_array_equal(u["Dense_0"]["kernel"], 2.0)
  np.testing.assert_array_equal(u["Dense_0"]["bias"], 1.0)


def test_clip_params_hand_computed():
  params = {"Dense_0": {"kernel": jnp.array([[0.5, -0.9], [0.0, 1.0]]),
                        "bias": jnp.array([0.9, 0.0])}}
  grads = {"Dense_0": {"kernel": jnp.array([[-1.0, 0.5], [0.0, -0.1]]),
                       "bias": jnp.array([-1.0, 0.0])}}
  tx = optax.chain(optax.sgd(1.0), binary.clip_params(1.0))
  u, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, u)
  # Kernel 1.5 -> 1, -1.4 -> -1, 0 stays 0, 1.1 -> 1; the bias is not clipped.
  np.testing.assert_allclose(new["Dense_0"]["kernel"], [[1.0, -1.0],
                                                         [0.0, 1.0]])
  np.testing.assert_allclose(new["Dense_0"]["bias"], [1.9, 0.0])
  tx = optax.chain(optax.sgd(1.0), binary.clip_params(0.25))
  u, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(
      optax.apply_updates(params, u)["Dense_0"]["kernel"],
      [[0.25, -0.25], [0.0, 0.25]])


def test_clip_params_needs_params():
  tx = binary.clip_params()
  p = {"kernel": jnp.zeros((2, 2))}
  with pytest.raises(ValueError, match="needs params"):
    tx.update(p, tx.init(p))
  with pytest.raises(ValueError, match="H > 0"):
    binary.clip_params(0.0)


@pytest.mark.parametrize("H,dtype", [(1.0, jnp.float32),
                                     (0.3, jnp.bfloat16)])
def test_weights_stay_in_range_after_every_update(H, dtype):
  key = jax.random.key(0)
  rng = np.random.default_rng(0)
  params = {"Dense_0": {"kernel": jnp.asarray(
                rng.uniform(-H, H, (7, 5)), dtype),
                        "bias": jnp.zeros((5,), dtype)},
            "Conv_0": {"kernel": jnp.asarray(
                rng.uniform(-H, H, (3, 3, 2, 4)), dtype)}}
  tx = optax.chain(optax.adam(0.05), binary.scale_by_glorot(),
                   binary.clip_params(H))

  def body(carry, i):
    p, s = carry
    g = jax.tree.map(
        lambda x: jax.random.normal(jax.random.fold_in(key, i), x.shape
                                    ).astype(x.dtype), p)
    u, s = tx.update(g, s, p)
    p = optax.apply_updates(p, u)
    worst = jnp.maximum(jnp.max(jnp.abs(p["Dense_0"]["kernel"])),
                        jnp.max(jnp.abs(p["Conv_0"]["kernel"])))
    return (p, s), worst.astype(jnp.float32)

  (p, _), worst = jax.lax.scan(body, (params, tx.init(params)),
                               jnp.arange(200))
  h = float(jnp.asarray(H, dtype))  # H as the params' dtype holds it
  assert float(jnp.max(worst)) <= h  # after every one of the 200 steps
  assert float(jnp.max(worst)) == h  # and it did clip
  assert p["Dense_0"]["kernel"].dtype == dtype
  # Values drawn near the bound: p + u' never overshoots by a rounding.
  p = {"kernel": jnp.asarray(rng.uniform(-H, H, (64, 64)), dtype)}
  g = {"kernel": jnp.asarray(3 * H * rng.normal(size=(64, 64)), dtype)}
  tx = binary.clip_params(H)
  new = optax.apply_updates(p, tx.update(g, tx.init(p), p)[0])["kernel"]
  assert float(jnp.max(jnp.abs(new.astype(jnp.float32)))) == h
