"""Tests for sparsity/_nm.py: N:M structured sparsity, hand-computed."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsity
from sparsity import _nm

T, F = True, False

# A Dense kernel (in=8, out=2): two 4-groups per output unit.
W = jnp.array([[0.1, -0.8],
               [-0.5, 0.2],
               [0.3, 0.3],
               [0.2, -0.3],   # col 1: ties |0.3| with row 2 -> row 2 kept
               [1.0, 0.0],
               [-1.0, 0.5],   # col 0: tie |1.0| with row 4, both kept
               [0.0, 0.5],    # col 1: three-way tie 0.5 -> rows 5, 6 kept
               [0.7, -0.5]])
# 2:4 by hand: col 0 keeps rows {1, 2} and {4, 5}; col 1 {0, 2} and {5, 6}.
W_2_4 = np.array([[F, T], [T, F], [T, T], [F, F],
                  [T, F], [T, T], [F, T], [F, F]])


def _params(kernel=W):
  return {"Dense_0": {"kernel": kernel, "bias": jnp.zeros(kernel.shape[-1])}}


def _kernel(mask):
  return np.asarray(mask["Dense_0"]["kernel"])


def test_dense_2_4_by_hand():
  params = _params()
  mask = sparsity.prune_n_m(params, sparsity.create_mask(params), n=2, m=4)
  np.testing.assert_array_equal(_kernel(mask), W_2_4)
  assert mask["Dense_0"]["bias"] is None
  assert sparsity.is_n_m(mask["Dense_0"]["kernel"], 2, 4)


def test_other_n_and_m_by_hand():
  params = _params()
  full = sparsity.create_mask(params)
  one = _kernel(sparsity.prune_n_m(params, full, n=1, m=4))
  np.testing.assert_array_equal(one, [[F, T], [T, F], [F, F], [F, F],
                                      [T, F], [F, T], [F, F], [F, F]])
  # 4:4 keeps everything; 2:8 keeps the 2 largest of all 8 rows.
  np.testing.assert_array_equal(
      _kernel(sparsity.prune_n_m(params, full, n=4, m=4)), np.ones((8, 2)))
  np.testing.assert_array_equal(
      _kernel(sparsity.prune_n_m(params, full, n=2, m=8)),
      [[F, T], [F, F], [F, F], [F, F], [T, F], [T, T], [F, F], [F, F]])


def test_conv_groups_run_along_input_channels():
  # (kh, kw, in, out) = (1, 2, 4, 2): one 4-group per (h, w, out).
  k = np.zeros((1, 2, 4, 2), np.float32)
  k[0, 0, :, 0] = [1, 2, 3, 4]
  k[0, 0, :, 1] = [4, 3, 2, 1]
  k[0, 1, :, 0] = [-5, 0, 5, 1]
  k[0, 1, :, 1] = [0, 0, 0, 0]
  params = {"Conv_0": {"kernel": jnp.asarray(k), "bias": jnp.zeros(2)}}
  mask = sparsity.prune_n_m(params, sparsity.create_mask(params))
  got = np.asarray(mask["Conv_0"]["kernel"])
  want = np.zeros((1, 2, 4, 2), bool)
  want[0, 0, :, 0] = [F, F, T, T]
  want[0, 0, :, 1] = [T, T, F, F]
  want[0, 1, :, 0] = [T, F, T, F]
  want[0, 1, :, 1] = [T, T, F, F]
  np.testing.assert_array_equal(got, want)


def test_never_revives_and_is_idempotent():
  params = _params()
  old = np.ones((8, 2), bool)
  old[1, 0] = F   # col 0 group 0 survivors 0.1, 0.3, 0.2 -> rows 2, 3
  old[2, 1] = F   # col 1 group 0 survivors 0.8, 0.2, 0.3 -> rows 0, 3
  old[4:7, 0] = F  # col 0 group 1: only row 7 survives: unchanged
  mask = {"Dense_0": {"kernel": jnp.asarray(old), "bias": None}}
  new = _kernel(sparsity.prune_n_m(params, mask))
  want = np.array([[F, T], [F, F], [T, F], [T, T],
                   [F, F], [F, T], [F, T], [T, F]])
  np.testing.assert_array_equal(new, want)
  assert not (new & ~old).any()
  again = sparsity.prune_n_m(params, {"Dense_0": {"kernel": jnp.asarray(new),
                                                  "bias": None}})
  np.testing.assert_array_equal(_kernel(again), new)


def test_matches_a_sorting_reference():
  rng = np.random.default_rng(0)
  w = np.round(rng.normal(size=(3, 16, 5)), 1).astype(np.float32)  # ties
  alive = rng.random(w.shape) < 0.8
  got = np.asarray(sparsity.keep_n_of_m(jnp.abs(jnp.asarray(w)),
                                        jnp.asarray(alive), 3, 8))
  want = np.zeros_like(alive)
  for a in range(3):
    for o in range(5):
      for g in range(2):
        rows = range(8 * g, 8 * g + 8)
        live = [r for r in rows if alive[a, r, o]]
        # Largest |w| first, then lowest index.
        for r in sorted(live, key=lambda r: (-abs(w[a, r, o]), r))[:3]:
          want[a, r, o] = True
  np.testing.assert_array_equal(got, want)


def test_errors():
  params = {"Dense_0": {"kernel": jnp.ones((6, 4)), "bias": jnp.zeros(4)},
            "Dense_1": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}
  mask = sparsity.create_mask(params)
  with pytest.raises(ValueError, match="Dense_0/kernel.*not divisible by "
                     "m=4") as e:
    sparsity.prune_n_m(params, mask)
  assert "\n" not in str(e.value)
  # Leaving the layer out works, and leaves its mask alone.
  out = sparsity.prune_n_m(params, mask,
                           include=lambda name: name != "Dense_0/kernel")
  assert out["Dense_0"]["kernel"] is mask["Dense_0"]["kernel"]
  assert int(out["Dense_1"]["kernel"].sum()) == 4
  with pytest.raises(ValueError, match="1 <= n <= m"):
    sparsity.prune_n_m(params, mask, n=5, m=4)
  with pytest.raises(ValueError, match="1 <= n <= m"):
    sparsity.prune_n_m(params, mask, n=0, m=4)
  with pytest.raises(ValueError, match="no masked leaf"):
    sparsity.prune_n_m(params, mask, include=lambda name: False)
  with pytest.raises(ValueError, match="1 <= n <= m"):
    sparsity.n_m_schedule(0, n=3, m=2, begin=0, end=10)


def test_gradual_schedule_and_pruning():
  sched = [sparsity.n_m_schedule(t, n=2, m=4, begin=10, end=110)
           for t in (0, 10, 59, 60, 109, 110, 500)]
  assert sched == [4, 4, 4, 3, 3, 2, 2]
  assert [sparsity.n_m_schedule(t, n=1, m=8, begin=0, end=0)
          for t in (-1, 0)] == [8, 1]
  traced = jax.jit(lambda t: sparsity.n_m_schedule(t, n=2, m=4, begin=10,
                                                   end=110))
  assert [int(traced(jnp.int32(t))) for t in (0, 10, 59, 60, 109, 110, 500)
          ] == sched
  # 4:4 -> 3:4 -> 2:4 on fixed weights: nested masks, ending at one-shot 2:4.
  params = _params()
  mask = sparsity.create_mask(params)
  prev = _kernel(mask)
  for n in (4, 3, 2):
    mask = sparsity.prune_n_m(params, mask, n=n, m=4)
    cur = _kernel(mask)
    assert not (cur & ~prev).any()
    assert sparsity.is_n_m(mask["Dense_0"]["kernel"], n, 4)
    assert cur.sum() == 16 * n // 4
    prev = cur
  np.testing.assert_array_equal(prev, W_2_4)


def test_checker_report_and_summary():
  mask = {"Dense_0": {"kernel": jnp.asarray(W_2_4), "bias": None},
          "Dense_1": {"kernel": jnp.ones((6, 3), bool), "bias": None},
          "Dense_2": {"kernel": jnp.asarray(W_2_4).at[3, 1].set(True)}}
  assert sparsity.is_n_m(mask["Dense_0"]["kernel"], 2, 4)
  assert not sparsity.is_n_m(mask["Dense_0"]["kernel"], 1, 4)
  assert sparsity.is_n_m(mask["Dense_0"]["kernel"], 4, 8)
  assert not sparsity.is_n_m(mask["Dense_1"]["kernel"], 2, 4)  # 6 % 4
  assert sparsity.n_m_report(mask, 2, 4) == [
      {"name": "Dense_0/kernel", "groups": 4, "max_kept": 2, "over": 0,
       "n_m": True},
      {"name": "Dense_1/kernel", "groups": 0, "max_kept": None, "over": 0,
       "n_m": False},
      {"name": "Dense_2/kernel", "groups": 4, "max_kept": 3, "over": 1,
       "n_m": False}]
  rows = sparsity.summarize(mask)
  assert rows == [
      {"name": "Dense_0/kernel", "size": 16, "remaining": 8, "n_m": "2:4"},
      {"name": "Dense_1/kernel", "size": 18, "remaining": 18},
      {"name": "Dense_2/kernel", "size": 16, "remaining": 9}]
  lines = sparsity.format_summary_table(rows).splitlines()
  assert lines[0].split()[-1] == "n:m"
  assert lines[1].split() == ["Dense_0/kernel", "16", "8", "50.00", "2:4"]
  assert lines[2].split() == ["Dense_1/kernel", "18", "18", "100.00", "-"]
  assert lines[4].split() == ["total", "50", "35", "70.00"]
  # Exactly 4 of 8 but not 2 of every 4: "4:8".
  half = jnp.asarray(np.repeat([[T], [T], [T], [F], [T], [F], [F], [F]], 2,
                               axis=1))
  assert sparsity.n_m_patterns([half, jnp.zeros((8, 2), bool)]) == [
      "4:8", None]


def test_masked_adam_keeps_pruned_weights_and_moments_zero():
  rng = np.random.default_rng(0)  # NumPy: no PRNG compilation (CI time)
  params = {"Dense_0": {"kernel": W, "bias": jnp.zeros(2)},
            "Conv_0": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 8, 4)),
                                             jnp.float32),
                       "bias": jnp.zeros(4)}}
  mask = sparsity.prune_n_m(params, sparsity.create_mask(params), 2, 4)
  params = sparsity.apply_mask(params, mask)
  tx = sparsity.masked(optax.adamw(1e-2, weight_decay=1e-2))
  state = tx.init(params)

  @jax.jit
  def step(p, s, g, m):
    u, s = tx.update(g, s, p, mask=m)
    return optax.apply_updates(p, u), s

  for _ in range(4):
    grads = jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
    params, state = step(params, state, grads, mask)
  adam = state.inner_state[0]
  for name, m, w in sparsity.masked_leaves(mask, params):
    m = np.asarray(m)
    assert not np.asarray(w)[~m].any(), name
    assert np.asarray(w)[m].all(), name  # kept weights trained
  for moments in (adam.mu, adam.nu):
    for _, m, x in sparsity.masked_leaves(mask, moments):
      assert not np.asarray(x)[~np.asarray(m)].any()
  assert [r["n_m"] for r in sparsity.summarize(mask)] == ["2:4", "2:4"]


def test_jit_does_not_retrace_when_n_changes():
  traces = []

  @jax.jit
  def select(w, alive, n):
    traces.append(1)
    return sparsity.keep_n_of_m(jnp.abs(w), alive, n, 4)

  alive = jnp.ones(W.shape, bool)
  got = [np.asarray(select(W, alive, jnp.int32(n))) for n in (4, 3, 2)]
  assert len(traces) == 1
  np.testing.assert_array_equal(got[-1], W_2_4)
  # The event reuses one compiled selection for every n.
  params = _params()
  sparsity.prune_n_m(params, sparsity.create_mask(params), 3, 4)
  compiled = _nm._keep_n_of_m  # pylint: disable=protected-access
  size = compiled._cache_size()  # pylint: disable=protected-access
  sparsity.prune_n_m(params, sparsity.create_mask(params), 1, 4)
  assert compiled._cache_size() == size  # pylint: disable=protected-access


def test_bfloat16_and_nan_scores():
  params = _params(W.astype(jnp.bfloat16))
  mask = sparsity.prune_n_m(params, sparsity.create_mask(params))
  np.testing.assert_array_equal(_kernel(mask), W_2_4)
  s = jnp.array([[0.1], [jnp.nan], [0.3], [0.2]])
  keep = sparsity.keep_n_of_m(s, jnp.ones((4, 1), bool), 2, 4)
  assert keep[:, 0].tolist() == [F, T, T, F]  # NaN counts as largest


def test_docstring_examples():
  result = doctest.testmod(_nm, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0
  assert result.failed == 0
