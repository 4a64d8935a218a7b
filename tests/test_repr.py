"""Tests for sparsity/_repr.py: RePr selection, drop and orthogonal re-init."""

import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsity

# The modules that define these public functions (their doctests run here).
_repr = inspect.getmodule(sparsity.repr_drop)

T, F = True, False


def _rows(kernel):
  k = np.asarray(kernel, np.float64)
  return k.reshape(-1, k.shape[-1]).T


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _layer(key, shape, bn=False):
  k1, k2 = jax.random.split(key)
  out = {"Conv_1": {"kernel": jax.random.normal(k1, shape),
                    "bias": jax.random.normal(k2, shape[-1:])}}
  if bn:
    out["BatchNorm_1"] = {"scale": jnp.full(shape[-1:], 2.0),
                          "bias": jnp.full(shape[-1:], 0.5)}
  return out


def test_select_global_top_p_with_exclusion_and_ties():
  scores = {"Conv_0": np.array([9.0, 9.0]),
            "Conv_1": np.array([0.1, 0.5, 0.3, 0.5]),
            "Conv_2": np.array([0.4, 0.2])}
  sel = sparsity.repr_select(scores, 0.5, exclude=["Conv_0"])
  # 6 ranked filters, k = 3: 0.5 (Conv_1[1]), 0.5 (Conv_1[3]), 0.4.
  assert sel["Conv_0"].tolist() == [F, F]
  assert sel["Conv_1"].tolist() == [F, T, F, T]
  assert sel["Conv_2"].tolist() == [T, F]
  # Without exclusion the first layer's high scores go first.
  sel = sparsity.repr_select(scores, 0.25)
  assert sel["Conv_0"].tolist() == [T, F]  # min_keep=1 keeps one
  assert sel["Conv_1"].tolist() == [F, T, F, F]


def test_select_random_drops_exactly_k_and_is_seeded():
  scores = {f"Conv_{i}": np.zeros(10) for i in range(3)}
  a = sparsity.repr_select(scores, 0.3, exclude=["Conv_0"],
                           key=jax.random.key(0), random=True)
  b = sparsity.repr_select(scores, 0.3, exclude=["Conv_0"],
                           key=jax.random.key(0), random=True)
  c = sparsity.repr_select(scores, 0.3, exclude=["Conv_0"],
                           key=jax.random.key(1), random=True)
  assert sum(int(v.sum()) for v in a.values()) == 6
  assert not a["Conv_0"].any()
  assert all((a[n] == b[n]).all() for n in a)
  assert any((a[n] != c[n]).any() for n in a)
  with pytest.raises(ValueError, match="key"):
    sparsity.repr_select(scores, 0.3, random=True)
  with pytest.raises(ValueError, match="fraction"):
    sparsity.repr_select(scores, 1.0)


def test_scores_orthogonality_and_magnitude():
  params = {"Conv_1": {"kernel": jnp.array([[1., 0., 1.], [0., 1., 1.]])},
            "Conv_2": {"kernel": jnp.array([[3., 0.1], [0., 0.]])}}
  s = sparsity.repr_scores(params, ["Conv_1", "Conv_2"])
  np.testing.assert_allclose(s["Conv_1"], np.array([1, 1, 2]) / np.sqrt(2) / 3,
                             rtol=1e-6)
  m = sparsity.repr_scores(params, ["Conv_1", "Conv_2"], "magnitude")
  np.testing.assert_allclose(m["Conv_2"], [-1.5, -0.05], rtol=1e-6)
  sel = sparsity.repr_select(m, 0.2)  # 1 of 5: the smallest filter
  assert sel["Conv_2"].tolist() == [F, T] and not sel["Conv_1"].any()
  with pytest.raises(ValueError, match="ranking"):
    sparsity.repr_scores(params, ["Conv_1"], "bogus")


def test_drop_zeroes_filter_bias_and_bn_and_saves_rows():
  params = _layer(jax.random.key(0), (3, 3, 2, 5), bn=True)
  sel = {"Conv_1": np.array([F, T, F, F, T])}
  groups = {"Conv_1": ["BatchNorm_1"]}
  dropped, saved = sparsity.repr_drop(params, sel, groups)
  np.testing.assert_array_equal(saved["Conv_1"],
                                _rows(params["Conv_1"]["kernel"])[[1, 4]])
  k = np.asarray(dropped["Conv_1"]["kernel"])
  assert np.all(k[..., [1, 4]] == 0) and np.all(k[..., [0, 2, 3]] != 0)
  assert np.asarray(dropped["Conv_1"]["bias"])[[1, 4]].tolist() == [0, 0]
  assert np.asarray(dropped["BatchNorm_1"]["scale"]).tolist() == [2, 0, 2, 2, 0]
  assert np.asarray(dropped["BatchNorm_1"]["bias"]).tolist() == [
      .5, 0, .5, .5, 0]
  mask = sparsity.repr_mask(params, sel, groups)
  assert mask["BatchNorm_1"]["scale"].tolist() == [T, F, T, T, F]


def _check_orthogonal_reinit(params, sel, saved, new):
  rows_new = _rows(new["Conv_1"]["kernel"])
  rows_old = _rows(params["Conv_1"]["kernel"])
  d = np.asarray(sel, bool)
  kept = rows_old[~d]
  fresh = rows_new[d]
  # Kept filters are unchanged.
  np.testing.assert_array_equal(rows_new[~d], kept)
  # Orthogonal (cosine < 1e-5) to the kept ones, the saved ones and each
  # other.
  assert np.abs(_unit(fresh) @ _unit(kept).T).max() < 1e-5
  assert np.abs(_unit(fresh) @ _unit(saved).T).max() < 1e-5
  gram = _unit(fresh) @ _unit(fresh).T
  assert np.abs(gram - np.eye(len(fresh))).max() < 1e-5
  # Rescaled to the mean L2 norm of the kept filters.
  np.testing.assert_allclose(np.linalg.norm(fresh, axis=1),
                             np.linalg.norm(kept, axis=1).mean(), rtol=1e-5)


def test_reinit_orthogonal_to_kept_and_pre_drop_filters():
  params = _layer(jax.random.key(1), (3, 3, 4, 8))  # d = 36, J = 8
  sel = {"Conv_1": np.array([T, F, F, T, F, T, F, F])}
  dropped, saved = sparsity.repr_drop(params, sel)
  new, info = sparsity.repr_reinit(jax.random.key(2), dropped, sel, saved)
  assert info == {"Conv_1": {"dropped": 3, "null_space": 3, "random": 0}}
  _check_orthogonal_reinit(params, sel["Conv_1"], saved["Conv_1"], new)
  assert np.asarray(new["Conv_1"]["bias"])[[0, 3, 5]].tolist() == [0, 0, 0]
  # Deterministic in the key; another key gives other directions.
  again, _ = sparsity.repr_reinit(jax.random.key(2), dropped, sel, saved)
  other, _ = sparsity.repr_reinit(jax.random.key(3), dropped, sel, saved)
  np.testing.assert_array_equal(again["Conv_1"]["kernel"],
                                new["Conv_1"]["kernel"])
  assert not np.allclose(other["Conv_1"]["kernel"], new["Conv_1"]["kernel"])


def test_reinit_hand_made_null_space():
  # d = 3; kept filter e1, the dropped filter was e2: the only direction
  # orthogonal to both is +-e3, scaled to |kept| = 2.
  params = {"Conv_1": {"kernel": jnp.array([[2., 0.], [0., 1.], [0., 0.]])}}
  sel = {"Conv_1": np.array([F, T])}
  dropped, saved = sparsity.repr_drop(params, sel)
  new, info = sparsity.repr_reinit(jax.random.key(0), dropped, sel, saved)
  assert info["Conv_1"]["null_space"] == 1
  col = np.asarray(new["Conv_1"]["kernel"])[:, 1]
  np.testing.assert_allclose(np.abs(col), [0, 0, 2], atol=1e-6)


def test_reinit_random_fallback_when_null_space_is_too_small():
  # d = 5, J = 4, 2 dropped: rank([saved; current]) = 4, one null direction.
  params = _layer(jax.random.key(4), (1, 1, 5, 4))
  sel = {"Conv_1": np.array([T, F, T, F])}
  dropped, saved = sparsity.repr_drop(params, sel)
  new, info = sparsity.repr_reinit(jax.random.key(5), dropped, sel, saved)
  assert info["Conv_1"] == {"dropped": 2, "null_space": 1, "random": 1}
  rows = _rows(new["Conv_1"]["kernel"])
  kept = rows[[1, 3]]
  # The first new filter comes from the null space ...
  assert np.abs(_unit(rows[0]) @ _unit(np.concatenate(
      [kept, saved["Conv_1"]])).T).max() < 1e-5
  # ... the second is random (not orthogonal to the kept ones), same scale.
  assert np.abs(_unit(rows[2]) @ _unit(kept).T).max() > 1e-3
  np.testing.assert_allclose(np.linalg.norm(rows[[0, 2]], axis=1),
                             np.linalg.norm(kept, axis=1).mean(), rtol=1e-5)
  # No null space at all (1x1 conv, d = 2 < J): every filter is random.
  params = _layer(jax.random.key(6), (1, 1, 2, 4))
  sel = {"Conv_1": np.array([T, F, F, F])}
  dropped, saved = sparsity.repr_drop(params, sel)
  _, info = sparsity.repr_reinit(jax.random.key(7), dropped, sel, saved)
  assert info["Conv_1"] == {"dropped": 1, "null_space": 0, "random": 1}


def test_reinit_random_method_and_bn_reset():
  params = _layer(jax.random.key(8), (3, 3, 4, 8), bn=True)
  sel = {"Conv_1": np.array([F, T, F, F, F, F, F, T])}
  groups = {"Conv_1": ["BatchNorm_1"]}
  dropped, saved = sparsity.repr_drop(params, sel, groups)
  new, info = sparsity.repr_reinit(jax.random.key(9), dropped, sel, saved,
                                   groups, method="random")
  assert info["Conv_1"] == {"dropped": 2, "null_space": 0, "random": 2}
  rows = _rows(new["Conv_1"]["kernel"])
  assert np.abs(_unit(rows[[1, 7]]) @ _unit(rows[[0, 2]]).T).max() > 1e-3
  assert np.asarray(new["BatchNorm_1"]["scale"]).tolist() == [2, 1, 2, 2, 2,
                                                             2, 2, 1]
  assert np.asarray(new["BatchNorm_1"]["bias"])[[1, 7]].tolist() == [0, 0]
  with pytest.raises(ValueError, match="re-init"):
    sparsity.repr_reinit(jax.random.key(9), dropped, sel, saved,
                         method="bogus")


def test_reset_moments_of_reinitialised_filters():
  params = _layer(jax.random.key(10), (3, 3, 2, 4), bn=True)
  tx = optax.adam(1e-2)
  state = tx.init(params)
  g = jax.tree.map(jnp.ones_like, params)
  _, state = tx.update(g, state, params)
  sel = {"Conv_1": np.array([F, T, F, F])}
  out = sparsity.repr_reset_moments(state, params, sel,
                                    {"Conv_1": ["BatchNorm_1"]})
  mu = out[0].mu
  assert float(jnp.abs(mu["Conv_1"]["kernel"][..., 1]).max()) == 0.0
  assert float(jnp.abs(mu["Conv_1"]["kernel"][..., 0]).min()) > 0.0
  assert np.asarray(out[0].nu["BatchNorm_1"]["scale"] == 0).tolist() == [
      F, T, F, F]
  assert int(out[0].count) == 1


def test_doctests():
  result = doctest.testmod(_repr, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
