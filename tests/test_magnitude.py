"""Tests for sparsity/_magnitude.py and sparsity/_schedules.py.

Expected masks are written out by hand; a NumPy reference (stable argsort
over the survivors) checks the exact selection on random, tied and bfloat16
inputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsity

T, F = True, False


def _kernel(values):
  return {"kernel": jnp.asarray(values, jnp.float32)}


def _reference_remove(scores, alive, k):
  """Stable-argsort reference: remove the k smallest surviving scores."""
  s = np.asarray(scores, np.float32).ravel()
  a = np.asarray(alive).ravel()
  idx = np.nonzero(a)[0]
  order = idx[np.argsort(s[idx], kind="stable")]
  out = a.copy()
  out[order[:k]] = False
  return out.reshape(np.shape(alive))


# ---------------------------------------------------------------------------
# Layer-wise pruning
# ---------------------------------------------------------------------------

def test_prune_layerwise_hand_computed():
  params = {"Dense_0": _kernel([[0.5, -0.1, 0.3], [0.2, -0.4, 0.05]])}
  mask = sparsity.create_mask(params)
  new = sparsity.prune_layerwise(params, mask, 0.5)  # k = 3 of 6
  np.testing.assert_array_equal(new["Dense_0"]["kernel"],
                                [[T, F, T], [F, T, F]])


def test_prune_layerwise_ties_lower_index_first():
  params = {"Dense_0": _kernel([[1.0, -1.0, 2.0], [1.0, 2.0, -1.0]])}
  new = sparsity.prune_layerwise(params, sparsity.create_mask(params), 0.5)
  # |w| == 1 at flat indices 0, 1, 3, 5: the first three go.
  np.testing.assert_array_equal(new["Dense_0"]["kernel"],
                                [[F, F, T], [F, T, T]])


def test_prune_layerwise_rate_applies_to_survivors_and_never_revives():
  # The dead weights are tiny and NOT pre-masked: they are still no
  # candidates, and they stay dead.
  params = {"Dense_0": _kernel([[0.01, 0.5, 0.02], [0.3, 0.2, 0.4]])}
  mask = {"Dense_0": {"kernel": jnp.array([[F, T, F], [T, T, T]])}}
  new = sparsity.prune_layerwise(params, mask, 0.25)  # k = round(0.25*4) = 1
  np.testing.assert_array_equal(new["Dense_0"]["kernel"],
                                [[F, T, F], [T, F, T]])


@pytest.mark.parametrize("rate,alive,k", [
    (0.5, 5, 2),   # round(2.5) = 2 (Python rounds halves to even)
    (0.3, 5, 2),   # round(1.5) = 2
    (0.1, 5, 0),   # round(0.5) = 0
    (0.2, 5, 1),
    (1.0, 5, 5),
    (0.0, 5, 0),
])
def test_prune_layerwise_removes_round_rate_times_alive(rate, alive, k):
  params = {"Dense_0": _kernel([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5]])}
  mask = {"Dense_0": {"kernel": jnp.array([[T] * alive + [F] * (6 - alive)])}}
  new = sparsity.prune_layerwise(params, mask, rate)
  assert sparsity.count(new)[0] == alive - k


def test_prune_layerwise_per_layer_rates():
  params = {
      "Dense_0": _kernel([[4.0, 3.0, 2.0, 1.0]]),
      "Dense_1": _kernel([[4.0, 3.0, 2.0, 1.0]]),
      "Dense_10": _kernel([[4.0, 3.0, 2.0, 1.0]]),
      "block": {"Conv_0": _kernel([[4.0, 3.0, 2.0, 1.0]]),
                "Conv_1": _kernel([[4.0, 3.0, 2.0, 1.0]])},
  }
  rates = {"Dense_0/kernel": 0.25, "Dense_1": 0.5, "block": 0.75,
           "block/Conv_1": 0.25, "default": 0.0}
  new = sparsity.prune_layerwise(params, sparsity.create_mask(params), rates)
  np.testing.assert_array_equal(new["Dense_0"]["kernel"], [[T, T, T, F]])
  np.testing.assert_array_equal(new["Dense_1"]["kernel"], [[T, T, F, F]])
  # "Dense_1" is not a prefix of "Dense_10": the default applies.
  np.testing.assert_array_equal(new["Dense_10"]["kernel"], [[T, T, T, T]])
  np.testing.assert_array_equal(new["block"]["Conv_0"]["kernel"],
                                [[T, F, F, F]])
  # The longest matching prefix wins.
  np.testing.assert_array_equal(new["block"]["Conv_1"]["kernel"],
                                [[T, T, T, F]])
  # A callable works too.
  new = sparsity.prune_layerwise(
      params, sparsity.create_mask(params),
      lambda name: 0.5 if name.startswith("Dense_0") else 0.0)
  assert sparsity.count(new) == (18, 20)


def test_resolve_rate_errors():
  with pytest.raises(KeyError, match="default"):
    sparsity.resolve_rate({"Dense_0": 0.5}, "Dense_1/kernel")
  params = {"Dense_0": _kernel([[1.0, 2.0]])}
  with pytest.raises(ValueError, match="rate"):
    sparsity.prune_layerwise(params, sparsity.create_mask(params), 1.5)
  with pytest.raises(ValueError, match="sparsity"):
    sparsity.prune_global_to(params, sparsity.create_mask(params), -0.1)


def test_prune_layerwise_to_targets_whole_leaf_sparsity():
  params = {"Dense_0": _kernel([[8.0, -1.0, 6.0, 3.0], [-5.0, 2.0, 7.0, 4.0]]),
            "Dense_1": _kernel([[1.0, 2.0]])}
  mask = sparsity.create_mask(params)
  m50 = sparsity.prune_layerwise_to(params, mask,
                                    {"Dense_0": 0.5, "default": 0.0})
  np.testing.assert_array_equal(m50["Dense_0"]["kernel"],
                                [[T, F, T, F], [T, F, T, F]])
  np.testing.assert_array_equal(m50["Dense_1"]["kernel"], [[T, T]])
  # Already sparser than the target: unchanged. Same target: idempotent.
  for s in (0.25, 0.5):
    again = sparsity.prune_layerwise_to(params, m50,
                                        {"Dense_0": s, "default": 0.0})
    np.testing.assert_array_equal(again["Dense_0"]["kernel"],
                                  m50["Dense_0"]["kernel"])
  m75 = sparsity.prune_layerwise_to(params, m50, 0.75)
  np.testing.assert_array_equal(m75["Dense_0"]["kernel"],
                                [[T, F, F, F], [F, F, T, F]])
  # Dense_1 keeps round(0.25 * 2) = round(0.5) = 0 (halves round to even).
  np.testing.assert_array_equal(m75["Dense_1"]["kernel"], [[F, F]])


# ---------------------------------------------------------------------------
# Global pruning
# ---------------------------------------------------------------------------

def _two_layers():
  return {"a": _kernel([[0.1, 0.2, 0.3, 0.4]]),
          "b": _kernel([[1.0, 2.0], [3.0, 4.0]])}


def test_global_vs_layerwise():
  params = _two_layers()
  mask = sparsity.create_mask(params)
  g = sparsity.prune_global(params, mask, 0.5)  # k = 4 over 8
  np.testing.assert_array_equal(g["a"]["kernel"], [[F, F, F, F]])
  np.testing.assert_array_equal(g["b"]["kernel"], [[T, T], [T, T]])
  lw = sparsity.prune_layerwise(params, mask, 0.5)
  np.testing.assert_array_equal(lw["a"]["kernel"], [[F, F, T, T]])
  np.testing.assert_array_equal(lw["b"]["kernel"], [[F, F], [T, T]])


def test_global_ties_by_leaf_order_then_index():
  params = {"b": _kernel([[1.0, 1.0]]), "a": _kernel([[1.0, 1.0]])}
  new = sparsity.prune_global(params, sparsity.create_mask(params), 0.75)
  # Flattening order is sorted keys: "a" before "b".
  np.testing.assert_array_equal(new["a"]["kernel"], [[F, F]])
  np.testing.assert_array_equal(new["b"]["kernel"], [[F, T]])


def test_global_include_and_dead_weights():
  params = _two_layers()
  mask = sparsity.create_mask(params)
  new = sparsity.prune_global(params, mask, 0.5,
                              include=lambda name: name.startswith("b"))
  np.testing.assert_array_equal(new["a"]["kernel"], [[T, T, T, T]])
  np.testing.assert_array_equal(new["b"]["kernel"], [[F, F], [T, T]])
  # Dead weights are no candidates and the rate applies to survivors:
  # 4 alive -> k = 2.
  mask["a"]["kernel"] = jnp.array([[F, F, F, T]])
  mask["b"]["kernel"] = jnp.array([[F, T], [T, F]])
  new = sparsity.prune_global(params, mask, 0.5)
  np.testing.assert_array_equal(new["a"]["kernel"], [[F, F, F, F]])
  np.testing.assert_array_equal(new["b"]["kernel"], [[F, F], [T, F]])


def test_prune_global_to():
  params = _two_layers()
  mask = sparsity.create_mask(params)
  new = sparsity.prune_global_to(params, mask, 0.625)  # keep round(3) of 8
  np.testing.assert_array_equal(new["a"]["kernel"], [[F, F, F, F]])
  np.testing.assert_array_equal(new["b"]["kernel"], [[F, T], [T, T]])
  again = sparsity.prune_global_to(params, new, 0.5)  # already sparser
  assert sparsity.count(again) == (3, 8)
  same = sparsity.prune_global_to(params, new, 0.625)
  np.testing.assert_array_equal(same["b"]["kernel"], new["b"]["kernel"])


def test_none_leaves_are_left_alone():
  params = {"Dense_0": {"kernel": jnp.array([[1.0, 2.0]]),
                        "bias": jnp.array([0.0, 0.0])}}
  mask = sparsity.create_mask(params)
  for new in (sparsity.prune_layerwise(params, mask, 0.5),
              sparsity.prune_layerwise_to(params, mask, 0.5),
              sparsity.prune_global(params, mask, 0.5),
              sparsity.prune_global_to(params, mask, 0.5),
              sparsity.random_mask_like(
                  jax.random.key(0),
                  sparsity.prune_layerwise(params, mask, 0.5))):
    assert new["Dense_0"]["bias"] is None
    assert sparsity.count(new) == (1, 2)


# ---------------------------------------------------------------------------
# Exactness against a reference, and at scale
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["normal", "integers", "equal", "bfloat16"])
def test_layerwise_and_global_match_reference(kind):
  rng = np.random.default_rng(0)
  shapes = [(3, 17), (1, 30), (6, 5)]  # fixed, so each compiles once
  for trial in range(12):
    params, mask = {}, {}
    for i, shape in enumerate(shapes):
      if kind == "normal":
        w = rng.normal(size=shape)
      elif kind == "integers":
        w = rng.integers(-3, 4, size=shape)
      elif kind == "equal":
        w = np.full(shape, -0.5)
      else:
        w = rng.normal(size=shape)
      dtype = jnp.bfloat16 if kind == "bfloat16" else jnp.float32
      params[f"L{i}"] = {"kernel": jnp.asarray(w, dtype)}
      mask[f"L{i}"] = {"kernel": jnp.asarray(rng.random(shape) < 0.7)}
    rate = float(rng.random())
    names = sorted(params)
    absw = [np.abs(np.asarray(params[n]["kernel"], np.float32))
            for n in names]
    alive = [np.asarray(mask[n]["kernel"]) for n in names]

    new = sparsity.prune_layerwise(params, mask, rate)
    for n, w, a in zip(names, absw, alive):
      expected = _reference_remove(w, a, round(rate * int(a.sum())))
      np.testing.assert_array_equal(new[n]["kernel"], expected,
                                    err_msg=f"{kind} {trial} {n}")

    new = sparsity.prune_global(params, mask, rate)
    flat_w = np.concatenate([w.ravel() for w in absw])
    flat_a = np.concatenate([a.ravel() for a in alive])
    expected = _reference_remove(flat_w, flat_a, round(rate * flat_a.sum()))
    got = np.concatenate([np.asarray(new[n]["kernel"]).ravel()
                          for n in names])
    np.testing.assert_array_equal(got, expected, err_msg=f"{kind} {trial}")


@pytest.mark.parametrize("already_pruned", [0.0, 0.5])
def test_exactly_k_on_1m_random_weights(already_pruned):
  key = jax.random.key(0)
  w = jax.random.normal(key, (1000, 1000))
  alive = jax.random.uniform(jax.random.fold_in(key, 1), w.shape) >= (
      already_pruned)
  params, mask = {"L": {"kernel": w}}, {"L": {"kernel": alive}}
  n_alive = int(alive.sum())
  new = sparsity.prune_layerwise(params, mask, 0.2)["L"]["kernel"]
  removed = np.asarray(alive & ~new)
  assert removed.sum() == round(0.2 * n_alive)
  assert not np.any(np.asarray(new & ~alive))  # never revives
  absw = np.abs(np.asarray(w))
  assert absw[removed].max() <= absw[np.asarray(new)].min()


def test_exactly_k_on_1m_equal_weights():
  params = {"L": {"kernel": jnp.full((1000, 1000), 0.25)}}
  mask = sparsity.create_mask(params)
  new = np.asarray(sparsity.prune_layerwise(params, mask, 0.3)["L"]["kernel"])
  flat = new.ravel()
  assert flat.sum() == 700_000
  assert not flat[:300_000].any() and flat[300_000:].all()  # by flat index


def test_exactly_k_global_large_with_ties():
  key = jax.random.key(3)
  # Coarse values: many ties at the threshold, across two leaves.
  params = {
      "a": {"kernel": jnp.round(jax.random.normal(key, (500, 1000)) * 4) / 4},
      "b": {"kernel": jnp.round(
          jax.random.normal(jax.random.fold_in(key, 1), (300, 700)) * 4) / 4},
  }
  mask = sparsity.create_mask(params)
  new = sparsity.prune_global(params, mask, 0.37)
  total = 500_000 + 210_000
  assert sparsity.count(new) == (total - round(0.37 * total), total)


def test_remove_smallest_general_scores_and_no_recompile():
  scores = jnp.array([[-1.0, 2.0], [-3.0, 0.0]])
  alive = jnp.ones((2, 2), bool)
  np.testing.assert_array_equal(sparsity.remove_smallest(scores, alive, 2),
                                [[F, T], [F, T]])
  # NaN counts as the largest score; k is clipped to the survivors.
  s = jnp.array([jnp.nan, 1.0, -jnp.inf, jnp.inf])
  np.testing.assert_array_equal(
      sparsity.remove_smallest(s, jnp.ones(4, bool), 3), [T, F, F, F])
  np.testing.assert_array_equal(
      sparsity.remove_smallest(s, jnp.array([T, F, T, T]), 10), [F, F, F, F])
  np.testing.assert_array_equal(
      sparsity.remove_smallest(s, jnp.ones(4, bool), 0), [T, T, T, T])

  traces = []

  @jax.jit
  def f(s, a, k):
    traces.append(1)
    return sparsity.remove_smallest(s, a, k)

  for k in range(4):
    assert int(f(jnp.arange(4.0), jnp.ones(4, bool), k).sum()) == 4 - k
  assert len(traces) == 1


# ---------------------------------------------------------------------------
# Random control
# ---------------------------------------------------------------------------

def test_random_mask_like_keeps_per_leaf_counts():
  key = jax.random.key(0)
  params = {"a": {"kernel": jnp.ones((50, 40)), "bias": jnp.ones(40)},
            "b": {"kernel": jnp.ones((3, 3, 4, 8))}}
  mask = sparsity.prune_layerwise(
      jax.tree.map(lambda x: jax.random.normal(key, x.shape), params),
      sparsity.create_mask(params), {"a": 0.8, "b": 0.3})
  rnd = sparsity.random_mask_like(jax.random.key(1), mask)
  assert sparsity.summarize(rnd) == sparsity.summarize(mask)
  assert rnd["a"]["bias"] is None
  assert rnd["a"]["kernel"].dtype == jnp.bool_
  # Random positions: not the magnitude mask, and differs across keys, but
  # reproducible from the key.
  assert not np.array_equal(rnd["a"]["kernel"], mask["a"]["kernel"])
  other = sparsity.random_mask_like(jax.random.key(2), mask)
  assert not np.array_equal(rnd["a"]["kernel"], other["a"]["kernel"])
  same = sparsity.random_mask_like(jax.random.key(1), mask)
  np.testing.assert_array_equal(rnd["a"]["kernel"], same["a"]["kernel"])


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------

def test_polynomial_sparsity_begin_middle_end():
  kw = dict(final=0.8, begin=100, end=300)
  assert sparsity.polynomial_sparsity(0, **kw) == 0.0
  assert sparsity.polynomial_sparsity(100, **kw) == 0.0
  # Middle: 0.8 + (0 - 0.8) * (1 - 0.5)^3 = 0.7
  assert sparsity.polynomial_sparsity(200, **kw) == pytest.approx(0.7)
  # A quarter in: 0.8 - 0.8 * 0.75^3 = 0.4625
  assert sparsity.polynomial_sparsity(150, **kw) == pytest.approx(0.4625)
  assert sparsity.polynomial_sparsity(300, **kw) == 0.8
  assert sparsity.polynomial_sparsity(10_000, **kw) == 0.8
  # initial and exponent
  assert sparsity.polynomial_sparsity(
      200, final=0.9, initial=0.5, begin=100, end=300, exponent=1
  ) == pytest.approx(0.7)
  assert sparsity.polynomial_sparsity(50, final=0.9, initial=0.5, begin=100,
                                      end=300) == 0.5
  # One-shot when begin == end.
  assert sparsity.polynomial_sparsity(99, final=0.9, begin=100, end=100) == 0
  assert sparsity.polynomial_sparsity(100, final=0.9, begin=100,
                                      end=100) == 0.9
  with pytest.raises(ValueError):
    sparsity.polynomial_sparsity(0, final=0.9, begin=10, end=5)


def test_polynomial_sparsity_traced_matches_python():
  kw = dict(final=0.8, begin=100, end=300)
  steps = [0, 100, 150, 200, 299, 300, 400]
  f = jax.jit(lambda t: sparsity.polynomial_sparsity(t, **kw))
  got = [float(f(jnp.int32(t))) for t in steps]
  expected = [sparsity.polynomial_sparsity(t, **kw) for t in steps]
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
  assert f(jnp.int32(0)).dtype == jnp.float32
  np.testing.assert_allclose(
      sparsity.polynomial_sparsity(jnp.arange(0, 401, 100), **kw),
      [0.0, 0.0, 0.7, 0.8, 0.8], rtol=1e-6)


def test_prune_steps():
  assert sparsity.prune_steps(0, 100, 25) == [0, 25, 50, 75, 100]
  assert sparsity.prune_steps(10, 40, 20) == [10, 30, 40]
  assert sparsity.prune_steps(5, 5, 3) == [5]
  with pytest.raises(ValueError):
    sparsity.prune_steps(0, 10, 0)
  with pytest.raises(ValueError):
    sparsity.prune_steps(10, 0, 1)


def test_gradual_schedule_drives_layerwise_pruning():
  w = jax.random.normal(jax.random.key(0), (40, 50))
  params = {"Dense_0": {"kernel": w}}
  mask = sparsity.create_mask(params)
  remaining = []
  for step in sparsity.prune_steps(0, 100, 25):
    s = sparsity.polynomial_sparsity(step, final=0.9, begin=0, end=100)
    mask = sparsity.prune_layerwise_to(params, mask, s)
    remaining.append(sparsity.count(mask)[0])
  expected = [round((1 - sparsity.polynomial_sparsity(
      t, final=0.9, begin=0, end=100)) * 2000) for t in (0, 25, 50, 75, 100)]
  assert remaining == expected
  assert remaining[-1] == 200
