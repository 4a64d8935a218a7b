"""Tests for sparsity/_masked.py (the cross-transform checks live in
test_conformance.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsity

T, F = True, False


def _setup():
  params = {"Dense_0": {"kernel": jnp.array([[1.0, 0.0], [0.0, 2.0]]),
                        "bias": jnp.array([0.5, -0.5])}}
  mask = sparsity.create_mask(params)
  mask["Dense_0"]["kernel"] = jnp.array([[T, F], [F, T]])
  grads = {"Dense_0": {"kernel": jnp.array([[1.0, 2.0], [3.0, 4.0]]),
                       "bias": jnp.array([1.0, 1.0])}}
  return params, mask, grads


def test_sgd_momentum_hand_computed():
  params, mask, grads = _setup()
  tx = sparsity.masked(optax.sgd(0.1, momentum=0.9))
  state = tx.init(params)
  assert isinstance(state, sparsity.MaskedState)
  updates, state = tx.update(grads, state, params, mask=mask)
  np.testing.assert_allclose(updates["Dense_0"]["kernel"],
                             [[-0.1, 0.0], [0.0, -0.4]])
  np.testing.assert_allclose(updates["Dense_0"]["bias"], [-0.1, -0.1])
  trace = state.inner_state[0].trace
  np.testing.assert_array_equal(trace["Dense_0"]["kernel"],
                                [[1.0, 0.0], [0.0, 4.0]])
  updates, state = tx.update(grads, state, params, mask=mask)
  # trace = g + 0.9 * trace on kept entries.
  np.testing.assert_allclose(updates["Dense_0"]["kernel"],
                             [[-0.19, 0.0], [0.0, -0.76]], rtol=1e-6)


def test_stale_moments_are_cleared_when_the_mask_changes():
  params, _, grads = _setup()
  full = sparsity.create_mask(params)
  tx = sparsity.masked(optax.adam(1e-2))
  state = tx.init(params)
  _, state = tx.update(grads, state, params, mask=full)
  mu = state.inner_state[0].mu["Dense_0"]["kernel"]
  assert bool(jnp.all(mu != 0))
  pruned = sparsity.create_mask(params)
  pruned["Dense_0"]["kernel"] = jnp.array([[T, T], [F, T]])
  params = sparsity.apply_mask(params, pruned)
  updates, state = tx.update(grads, state, params, mask=pruned)
  adam = state.inner_state[0]
  for moment in (adam.mu, adam.nu):
    assert float(moment["Dense_0"]["kernel"][1, 0]) == 0.0
    assert bool(jnp.all(moment["Dense_0"]["bias"] != 0))  # not masked
  assert float(updates["Dense_0"]["kernel"][1, 0]) == 0.0
  # Reviving the weight later starts it from zero moments.
  _, state2 = tx.update(jax.tree.map(jnp.zeros_like, grads), state, params,
                        mask=full)
  assert float(state2.inner_state[0].mu["Dense_0"]["kernel"][1, 0]) == 0.0


def test_adamw_weight_decay_keeps_pruned_weights_at_zero():
  params, mask, grads = _setup()
  params = sparsity.apply_mask(params, mask)
  tx = sparsity.masked(optax.adamw(0.1, weight_decay=0.5))
  state = tx.init(params)
  for _ in range(5):
    updates, state = tx.update(grads, state, params, mask=mask)
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params["Dense_0"]["kernel"] == 0,
                                [[F, T], [T, F]])


def test_mask_is_a_required_keyword():
  params, _, grads = _setup()
  tx = sparsity.masked(optax.sgd(0.1))
  with pytest.raises(TypeError):
    tx.update(grads, tx.init(params), params)  # pylint: disable=missing-kwoa


def test_extra_args_are_forwarded_to_inner():
  seen = {}

  def init(params):
    del params  # unused
    return optax.EmptyState()

  def update(updates, state, params=None, *, scale=1.0, **extra):
    del params  # unused
    seen.update(extra, scale=scale)
    return jax.tree.map(lambda u: u * scale, updates), state

  inner = optax.GradientTransformationExtraArgs(init, update)
  params, mask, grads = _setup()
  tx = sparsity.masked(inner)
  updates, _ = tx.update(grads, tx.init(params), params, mask=mask, scale=2.0)
  assert seen == {"scale": 2.0}  # the mask is consumed, not forwarded
  np.testing.assert_array_equal(updates["Dense_0"]["kernel"],
                                [[2.0, 0.0], [0.0, 8.0]])
  # An inner optimizer without extra-args support ignores them.
  tx = sparsity.masked(optax.sgd(1.0))
  updates, _ = tx.update(grads, tx.init(params), params, mask=mask,
                         unused=3)
  np.testing.assert_array_equal(updates["Dense_0"]["kernel"],
                                [[-1.0, 0.0], [0.0, -4.0]])


def test_chains_with_other_transforms():
  params, mask, grads = _setup()
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   sparsity.masked(optax.sgd(1.0, momentum=0.9)))
  state = tx.init(params)
  updates, state = jax.jit(
      lambda g, s, p, m: tx.update(g, s, p, mask=m))(grads, state, params,
                                                     mask)
  kernel = np.asarray(updates["Dense_0"]["kernel"])
  assert kernel[0, 1] == 0.0 and kernel[1, 0] == 0.0
  assert kernel[0, 0] < 0.0 and kernel[1, 1] < 0.0


def test_factored_state_of_other_shape_is_left_alone():
  params = {"Dense_0": {"kernel": jnp.ones((4, 6)), "bias": jnp.ones(6)}}
  mask = sparsity.create_mask(params)
  mask["Dense_0"]["kernel"] = mask["Dense_0"]["kernel"].at[0].set(False)
  params = sparsity.apply_mask(params, mask)
  tx = sparsity.masked(optax.adafactor(1e-2, min_dim_size_to_factor=2))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params, mask=mask)
    params = optax.apply_updates(params, updates)
  assert not bool(jnp.any(params["Dense_0"]["kernel"][0]))
  assert bool(jnp.all(params["Dense_0"]["kernel"][1:] != 1.0))


@pytest.mark.parametrize("make_inner", [
    lambda: optax.masked(optax.adam(1e-2),
                         {"Dense_0": {"kernel": True, "bias": False}}),
    lambda: optax.partition(
        {"k": optax.adam(1e-2), "b": optax.sgd(1e-2, momentum=0.9)},
        {"Dense_0": {"kernel": "k", "bias": "b"}}),
    lambda: optax.contrib.muon(1e-2),
    optax.lbfgs,  # its init cannot run on optax's placeholder: fallback
], ids=["optax.masked", "partition", "muon", "lbfgs"])
def test_composite_and_unusual_inner_optimizers(make_inner):
  params, mask, grads = _setup()
  params = sparsity.apply_mask(params, mask)
  tx = sparsity.masked(make_inner())
  state = tx.init(params)
  extra = {}
  if "LBFGS" in repr(jax.tree.structure(state)):
    extra = dict(value=jnp.float32(1.0), grad=grads,
                 value_fn=lambda p: jnp.float32(1.0))
  for _ in range(2):
    updates, state = tx.update(grads, state, params, mask=mask, **extra)
    params = optax.apply_updates(params, updates)
  pruned = ~mask["Dense_0"]["kernel"]
  assert not bool(jnp.any(params["Dense_0"]["kernel"][pruned]))
  for leaf in jax.tree.leaves(state):
    if getattr(leaf, "shape", None) == pruned.shape:
      assert not bool(jnp.any(leaf[pruned]))


_ZERO_PRESERVING = {
    "sgd": lambda: optax.sgd(0.05),
    "momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "nesterov": lambda: optax.sgd(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-2),
    "sgd_l2_clipped": lambda: optax.chain(
        optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-3),
        optax.sgd(optax.cosine_decay_schedule(0.1, 50), momentum=0.9)),
}


@pytest.mark.parametrize("name", list(_ZERO_PRESERVING))
def test_on_entry_is_bit_identical_to_per_step(name):
  """For zero-preserving inners the fast form computes the same values
  (params, updates, state; bit for bit op by op) as the default, across
  mask changes that prune and revive weights, with pruned params and
  moments exactly 0 after every update."""
  key = jax.random.key(0)
  params = {"Dense_0": {"kernel": jax.random.normal(key, (6, 5)),
                        "bias": jnp.ones(5)},
            "Dense_1": {"kernel": jax.random.normal(key, (5, 3)),
                        "bias": jnp.ones(3)}}
  tx_a = sparsity.masked(_ZERO_PRESERVING[name]())
  tx_b = sparsity.masked(_ZERO_PRESERVING[name](), mask_moments="on_entry")
  # Op by op (not jitted): one program may contract a*b+c into an FMA where
  # the other does not, a difference of XLA's, not of the two forms.
  step_a = lambda g, s, p, m: tx_a.update(g, s, p, mask=m)
  step_b = lambda g, s, p, m: tx_b.update(g, s, p, mask=m)
  mask = None
  pa = pb = params
  sa, sb = tx_a.init(params), tx_b.init(params)
  for i in range(12):
    if i % 4 == 0:  # a mask change (an event): new mask, params re-masked
      mask = sparsity.create_mask(params)
      mask = jax.tree.map(
          lambda m, k=jax.random.fold_in(key, i): None if m is None else
          jax.random.bernoulli(k, 0.5, m.shape), mask,
          is_leaf=lambda m: m is None)
      pa, pb = sparsity.apply_mask(pa, mask), sparsity.apply_mask(pb, mask)
    grads = jax.tree.map(
        lambda x, k=jax.random.fold_in(key, 100 + i):
        jax.random.normal(k, x.shape), params)
    ua, sa = step_a(grads, sa, pa, mask)
    ub, sb = step_b(grads, sb, pb, mask)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
    for a, b in zip(jax.tree.leaves((pa, ua, sa)), jax.tree.leaves((pb, ub,
                                                                  sb))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # pruned params and every parameter-shaped moment are exactly 0
    masked_state = sparsity.mask_opt_state(sb, mask)
    for a, b in zip(jax.tree.leaves(sb), jax.tree.leaves(masked_state)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(pb),
                    jax.tree.leaves(sparsity.apply_mask(pb, mask))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_on_entry_without_the_event_keeps_state_zero_for_adam():
  """No event function is needed: the update after a mask change clears
  the stale moments of newly pruned weights."""
  params, _, grads = _setup()
  full = sparsity.create_mask(params)
  tx = sparsity.masked(optax.adam(1e-2), mask_moments="on_entry")
  state = tx.init(params)
  _, state = tx.update(grads, state, params, mask=full)
  pruned = sparsity.create_mask(params)
  pruned["Dense_0"]["kernel"] = jnp.array([[T, T], [F, T]])
  params = sparsity.apply_mask(params, pruned)
  updates, state = tx.update(grads, state, params, mask=pruned)
  adam = state.inner_state[0]
  for moment in (adam.mu, adam.nu):
    assert float(moment["Dense_0"]["kernel"][1, 0]) == 0.0
    assert bool(jnp.all(moment["Dense_0"]["kernel"][pruned["Dense_0"][
        "kernel"]] != 0))
  assert float(updates["Dense_0"]["kernel"][1, 0]) == 0.0


def test_unknown_mask_moments_is_refused():
  with pytest.raises(ValueError, match="mask_moments"):
    sparsity.masked(optax.sgd(0.1), mask_moments="on_change")
