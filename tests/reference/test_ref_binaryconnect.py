"""BinaryConnect vs ``binary.hard_sigmoid`` / ``stochastic_sign`` /
``scale_by_glorot`` / ``clip_params``.

Reference: MatthieuCourbariaux/BinaryConnect, ``binary_connect.py`` (commit
2f97a8f80f6dcd30c06bc738461da9b7ab220287): ``hard_sigmoid``,
``binarization``, the ``H`` / ``W_LR_scale`` logic of ``DenseLayer`` and
``Conv2DLayer.__init__`` and ``clipping_scaling``; transcribed into NumPy
below. Theano's ``MRG_RandomStreams.binomial(n=1, p)`` is ``cast(uniform <
p)`` (Theano/Theano ``theano/sandbox/rng_mrg.py``), so the transcription
takes the uniform draw as an argument and is fed the project's draw.

Findings pinned here:

* the Glorot scale and H match; ``clipping_scaling`` (``W + s (W_adam -
  W)``, then ``clip(-H, H)``) equals ``chain(scale_by_glorot(),
  clip_params(H))`` after the optimizer;
* the code's non-Glorot learning-rate scale is a literal number (``#
  W_LR_scale = 1.`` in ``mnist.py``, ``cifar10.py``, ``svhn.py``), not
  ``1/H``: ``scale_by_glorot(H=h)`` scales by ``1/h``, which equals the
  code only for ``h = 1`` (the scripts' fixed ``H = 1.``) or for the code's
  ``H = "Glorot"`` (whose Glorot ``W_LR_scale`` is exactly ``1/H``);
* deterministic binarization: ``T.round(hard_sigmoid(0)) = round(0.5)`` is
  ``+H`` with half-away-from-zero rounding (Theano's default at the time;
  Theano later changed ``T.round``'s default to half-to-even, which would
  give ``-H``); the project's ``ste_sign(0) = +1`` agrees, and its
  ``binary_kernel`` maps an exactly-0 (pruned) weight to 0;
* gradients: the code applies ``dL/dWb`` to ``W`` unchanged (identity);
  ``stochastic_sign`` passes it inside ``|W| <= H`` only, which agrees on
  the clipped weights the code keeps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import binary


# ---------------------------------------------------------------------------
# Transcription: binary_connect.py
# ---------------------------------------------------------------------------

def hard_sigmoid(x):
  return np.clip((x + 1.) / 2., 0, 1)


def _round_half_away_from_zero(x):
  return np.sign(x) * np.floor(np.abs(x) + 0.5)


def binarization(W, H, binary=True, deterministic=False, stochastic=False,
                 uniform=None):
  # (deterministic == True) <-> test-time <-> inference-time
  if not binary or (deterministic and stochastic):
    Wb = W
  else:
    # [-1,1] -> [0,1]
    Wb = hard_sigmoid(W / H)
    if stochastic:
      # srng.binomial(n=1, p=Wb) = cast(uniform < p)
      Wb = (uniform < Wb).astype(np.float32)
    else:
      Wb = _round_half_away_from_zero(Wb)       # T.round (see docstring)
    # 0 or 1 -> -1 or 1
    Wb = np.where(Wb, H, -H).astype(np.float32)   # T.switch(Wb, H, -H)
  return Wb


def dense_h_and_scale(num_inputs, num_units, H=1., W_LR_scale="Glorot"):
  if H == "Glorot":
    H = np.float32(np.sqrt(1.5 / (num_inputs + num_units)))
  if W_LR_scale == "Glorot":
    W_LR_scale = np.float32(1. / np.sqrt(1.5 / (num_inputs + num_units)))
  return H, W_LR_scale


def conv_h_and_scale(filter_size, in_channels, num_filters, H=1.,
                     W_LR_scale="Glorot"):
  if H == "Glorot":
    num_inputs = int(np.prod(filter_size) * in_channels)
    num_units = int(np.prod(filter_size) * num_filters)
    H = np.float32(np.sqrt(1.5 / (num_inputs + num_units)))
  if W_LR_scale == "Glorot":
    num_inputs = int(np.prod(filter_size) * in_channels)
    num_units = int(np.prod(filter_size) * num_filters)
    W_LR_scale = np.float32(1. / np.sqrt(1.5 / (num_inputs + num_units)))
  return H, W_LR_scale


def clipping_scaling(param, updated, W_LR_scale, H):
  """``updates[param]`` for one binary weight (``updated`` = Adam's value)."""
  new = param + W_LR_scale * (updated - param)
  return np.clip(new, -H, H)


# ---------------------------------------------------------------------------

def test_hard_sigmoid():
  x = np.linspace(-3, 3, 61, dtype=np.float32)
  np.testing.assert_array_equal(np.asarray(binary.hard_sigmoid(x)),
                                hard_sigmoid(x))


@pytest.mark.parametrize("H", [1.0, 0.5])
def test_stochastic_binarization(H):
  x = np.random.default_rng(0).uniform(-1.5 * H, 1.5 * H, 400)
  x = x.astype(np.float32)
  key = jax.random.key(7)
  u = np.asarray(jax.random.uniform(key, x.shape, jnp.float32))
  ref = binarization(x, np.float32(H), stochastic=True, uniform=u)
  ours = np.asarray(binary.stochastic_sign(key, jnp.asarray(x), H)) * H
  np.testing.assert_array_equal(ours, ref)
  # Test time: the stochastic code uses the real weights (Wb = W), as the
  # project's layers do.
  np.testing.assert_array_equal(
      binarization(x, H, deterministic=True, stochastic=True), x)


def test_deterministic_binarization_and_zero():
  x = np.array([-2., -1., -0.3, 0., 0.3, 1., 2.], np.float32)
  ref = binarization(x, 1.0)
  np.testing.assert_array_equal(np.asarray(binary.ste_sign(x)), ref)
  assert ref[3] == 1.0                       # W = 0 -> +H
  assert np.where(np.round(hard_sigmoid(0.0)), 1, -1) == -1  # half-to-even
  # The project's binary view keeps a pruned (exactly 0) weight at 0.
  assert float(binary.binary_kernel(jnp.asarray(x), "ste_sign")[3]) == 0.0


def test_gradient_identity_inside_the_clip_range():
  x = np.array([-1.5, -1.0, -0.4, 0.0, 0.7, 1.0, 1.2], np.float32)
  g = np.arange(1, 8, dtype=np.float32)
  key = jax.random.key(1)
  ours = np.asarray(jax.grad(
      lambda w: jnp.sum(g * binary.stochastic_sign(key, w)))(jnp.asarray(x)))
  ref = g                                   # dL/dWb applied to W unchanged
  inside = np.abs(x) <= 1.0
  np.testing.assert_array_equal(ours[inside], ref[inside])
  np.testing.assert_array_equal(ours[~inside], 0.0)


def test_glorot_scale_and_h():
  for shape, (h, s) in [
      ((784, 1024), dense_h_and_scale(784, 1024, "Glorot")),
      ((20, 12), dense_h_and_scale(20, 12, "Glorot")),
      ((3, 3, 4, 6), conv_h_and_scale((3, 3), 4, 6, "Glorot")),
      ((5, 5, 3, 8), conv_h_and_scale((5, 5), 3, 8, "Glorot"))]:
    assert np.float32(binary.glorot_lr_scale(shape)) == s
    # With H = "Glorot" the code's Glorot W_LR_scale is exactly 1 / H.
    np.testing.assert_allclose(s, 1.0 / h, rtol=1e-6)


def _run_chain(tx, params, updated):
  u = jax.tree.map(lambda a, b: jnp.asarray(a) - jnp.asarray(b),
                   updated, params)
  out, _ = tx.update(u, tx.init(params), params)
  return optax.apply_updates(params, out)


def _fixture(seed=0):
  rng = np.random.default_rng(seed)
  params = {"Dense_0": {"kernel": rng.uniform(-1, 1, (20, 12)),
                        "bias": rng.normal(size=12)},
            "Conv_0": {"kernel": rng.uniform(-1, 1, (3, 3, 4, 6))}}
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  # An optimizer's new values: small steps, some crossing +-1 once scaled.
  updated = jax.tree.map(
      lambda a: a + jnp.asarray(rng.normal(scale=0.02, size=a.shape),
                                jnp.float32), params)
  return params, updated


def test_clipping_scaling_matches_chain_glorot():
  params, updated = _fixture()
  ours = _run_chain(optax.chain(binary.scale_by_glorot(),
                                binary.clip_params(1.0)), params, updated)
  _, s_dense = dense_h_and_scale(20, 12)
  _, s_conv = conv_h_and_scale((3, 3), 4, 6)
  ref_dense = clipping_scaling(np.asarray(params["Dense_0"]["kernel"]),
                               np.asarray(updated["Dense_0"]["kernel"]),
                               s_dense, np.float32(1.))
  ref_conv = clipping_scaling(np.asarray(params["Conv_0"]["kernel"]),
                              np.asarray(updated["Conv_0"]["kernel"]),
                              s_conv, np.float32(1.))
  np.testing.assert_allclose(ours["Dense_0"]["kernel"], ref_dense,
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(ours["Conv_0"]["kernel"], ref_conv,
                             rtol=1e-6, atol=1e-7)
  assert np.any(np.abs(ref_conv) == 1.0)      # the clip was active
  # Biases are not binary: neither scaled nor clipped.
  np.testing.assert_array_equal(ours["Dense_0"]["bias"],
                                updated["Dense_0"]["bias"])


def test_fixed_h_scale_is_a_literal_not_one_over_h():
  params, updated = _fixture(seed=1)
  p = np.asarray(params["Dense_0"]["kernel"]) * 0.5
  q = np.asarray(updated["Dense_0"]["kernel"]) * 0.5
  params = {"Dense_0": {"kernel": jnp.asarray(p)}}
  updated = {"Dense_0": {"kernel": jnp.asarray(q)}}
  # H = 1 with the commented alternative W_LR_scale = 1.: same as 1/H.
  h, s = dense_h_and_scale(20, 12, H=1., W_LR_scale=1.)
  ours = _run_chain(optax.chain(binary.scale_by_glorot(H=1.0),
                                binary.clip_params(1.0)), params, updated)
  np.testing.assert_allclose(ours["Dense_0"]["kernel"],
                             clipping_scaling(p, q, s, h), rtol=1e-6)
  # H = 0.5 with W_LR_scale = 1.: the code scales by 1, the project by 2.
  h, s = dense_h_and_scale(20, 12, H=0.5, W_LR_scale=1.)
  ref = clipping_scaling(p, q, s, h)
  ours = _run_chain(optax.chain(binary.scale_by_glorot(H=0.5),
                                binary.clip_params(0.5)), params, updated)
  ours_lit = _run_chain(binary.clip_params(0.5), params, updated)
  np.testing.assert_allclose(ours_lit["Dense_0"]["kernel"], ref, rtol=1e-6)
  np.testing.assert_allclose(
      ours["Dense_0"]["kernel"], clipping_scaling(p, q, 2.0, h), rtol=1e-6)
  assert not np.allclose(ours["Dense_0"]["kernel"], ref)
