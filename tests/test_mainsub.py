"""Main/subsidiary pure functions: the STE keep mask, penalties, controls."""
import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import binary

# The modules that define these public functions (their doctests run here).
_mainsub = inspect.getmodule(binary.bake_filter_keep)


def test_keep_forward_and_ste_gradient():
  m = jnp.array([0.3, -0.2, 0.0, 1.0, -1.0, 1.5, -3.0])
  np.testing.assert_array_equal(binary.subsidiary_keep(m),
                                [1, 0, 1, 1, 0, 1, 0])
  c = jnp.arange(1.0, 8.0)
  g = jax.grad(lambda m: jnp.sum(binary.subsidiary_keep(m) * c))(m)
  # d keep / dM = 1{|M| <= 1} / 2 (inclusive window).
  np.testing.assert_array_equal(g, [0.5, 1.0, 1.5, 2.0, 2.5, 0.0, 0.0])


def test_penalties():
  ms = {"a": jnp.array([0.5, -0.5, 2.0]), "b": jnp.array([0.0, -2.0])}
  assert float(binary.keep_count_penalty(ms)) == 3.0
  assert float(binary.l0_penalty(ms)) == 4.0
  g = jax.grad(binary.keep_count_penalty)(ms)
  np.testing.assert_array_equal(g["a"], [0.5, 0.5, 0.0])
  np.testing.assert_array_equal(g["b"], [0.5, 0.0])
  g0 = jax.grad(binary.l0_penalty)(ms)
  assert all(float(jnp.abs(x).sum()) == 0 for x in jax.tree.leaves(g0))


def test_add_mask_penalty_touches_only_masks():
  params = {"L": {"kernel": jnp.ones((2, 3))},
            "L_subsidiary": jnp.array([0.1, -0.1, 5.0])}
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.25), params)
  for kind, extra in (("count", [0.05, 0.05, 0.0]), ("l0", [0.0] * 3)):
    tx = binary.add_mask_penalty(0.1, kind)
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_allclose(out["L_subsidiary"],
                               0.25 + np.array(extra), rtol=1e-6)
    np.testing.assert_array_equal(out["L"]["kernel"], grads["L"]["kernel"])
  with pytest.raises(ValueError, match="penalty"):
    binary.add_mask_penalty(0.1, "l1")


def test_greedy_and_random_controls():
  kernel = np.zeros((1, 1, 2, 4))
  kernel[..., 0] = 0.5
  kernel[..., 1] = [[[0.1, -0.1]]]
  kernel[..., 2] = [[[-2.0, 0.0]]]
  kernel[..., 3] = 0.3
  np.testing.assert_array_equal(binary.greedy_filter_keep(kernel, 2),
                                [True, False, True, False])
  np.testing.assert_array_equal(binary.greedy_filter_keep(kernel, 0),
                                [False] * 4)
  r = binary.random_filter_keep(5, 10, 3)
  assert r.sum() == 3
  np.testing.assert_array_equal(r, binary.random_filter_keep(5, 10, 3))
  assert binary.random_filter_keep(6, 100, 50).tolist() != \
      binary.random_filter_keep(5, 100, 50).tolist()
  mask = binary.filter_mask(kernel, [True, False, True, False])
  assert mask.shape == kernel.shape and mask[..., 1].sum() == 0
  baked = binary.bake_filter_keep(jnp.asarray(kernel), [1, 0, 1, 0])
  np.testing.assert_array_equal(baked, kernel * mask)


def test_a_zero_filter_is_zero_in_the_binary_view():
  kernel = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 2, 4)))
  baked = binary.bake_filter_keep(kernel, [1, 0, 1, 1])
  view = binary.binary_kernel(baked, binary.magnitude_aware_sign)
  assert float(jnp.abs(view[..., 1]).sum()) == 0.0
  np.testing.assert_allclose(view[..., 0], binary.binary_kernel(
      kernel, binary.magnitude_aware_sign)[..., 0])


def test_docstring_examples():
  assert doctest.testmod(_mainsub).failed == 0


def test_budget_schedule_by_hand():
  # round(0.25 * 8 * min(1, t / 4)): 0, 0.5 -> 0 (half to even), 1, 1.5 -> 2, 2.
  assert [int(binary.budget_removed(8, 0.25, t, 4)) for t in range(7)] == \
      [0, 0, 1, 2, 2, 2, 2]
  # A layer always keeps one filter.
  assert int(binary.budget_removed(2, 0.9, 10, 1)) == 1
  assert int(binary.budget_removed(1, 0.5, 10, 1)) == 0
  assert int(jax.jit(binary.budget_removed, static_argnums=(0, 1, 3))(
      8, 0.25, jnp.int32(3), 4)) == 2
  for bad in ((8, 1.0, 0, 4), (8, -0.1, 0, 4), (8, 0.5, 0, 0)):
    with pytest.raises(ValueError):
      binary.budget_removed(*bad)


def test_project_to_budget_by_hand():
  m = jnp.array([0.5, -0.25, 0.25, 1.0])
  # Sorted: 1.0, 0.5, 0.25, -0.25; keep 2 -> zero at (0.5 + 0.25) / 2.
  np.testing.assert_array_equal(binary.project_to_budget(m, 2),
                                [0.125, -0.625, -0.125, 0.625])
  # Keep 3 -> zero at (0.25 - 0.25) / 2 = 0: no shift.
  np.testing.assert_array_equal(binary.project_to_budget(m, 1), m)
  # Keep 1 -> zero at 0.75.
  np.testing.assert_array_equal(binary.project_to_budget(m, 3),
                                [-0.25, -1.0, -0.5, 0.25])
  # Keep all: shift up by the most negative gate only.
  np.testing.assert_array_equal(binary.project_to_budget(m, 0),
                                [0.75, 0.0, 0.5, 1.25])
  np.testing.assert_array_equal(
      binary.project_to_budget(jnp.array([0.5, 0.25]), 0), [0.5, 0.25])


def test_mask_budget_anneals_the_kept_count():
  # Budget 0.5 of 4 filters over 2 updates: removes round(2 * t / 2) after
  # update t = 1, 2, 3: 1, 2, 2.  SGD(1) on a fixed gradient ranks the
  # gates by their summed gradient: filter 3 (largest gradient) goes
  # first, then filter 1.
  params = {"L": {"kernel": jnp.ones((2,))},
            "L_subsidiary": jnp.array([0.5, 0.5, 0.5, 0.5])}
  grads = {"L": {"kernel": jnp.ones((2,))},
           "L_subsidiary": jnp.array([0.0, 0.2, 0.1, 0.3])}
  tx = optax.chain(optax.sgd(1.0), binary.mask_budget(0.5, 2))
  state = tx.init(params)
  kept = []
  for _ in range(3):
    u, state = jax.jit(tx.update)(grads, state, params)
    np.testing.assert_array_equal(u["L"]["kernel"], -grads["L"]["kernel"])
    params = optax.apply_updates(params, u)
    kept.append((np.asarray(params["L_subsidiary"]) >= 0).tolist())
  assert kept == [[True, True, True, False], [True, False, True, False],
                  [True, False, True, False]]
  # After update 1: 0.5 - g = [0.5, 0.3, 0.4, 0.2], zero at (0.3 + 0.2) / 2.
  assert int(state[1].count) == 3
  with pytest.raises(ValueError, match="fraction"):
    binary.mask_budget(1.0, 2)
