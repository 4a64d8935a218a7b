"""Tests for sparsity/_redundancy.py against hand-computed filters."""

import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsity

# The modules that define these public functions (their doctests run here).
_redundancy = inspect.getmodule(sparsity.fpgm_scores)

R2 = np.sqrt(2.0)


def _conv(rows):
  """A (1, 1, d, C) conv kernel whose filters are the given rows."""
  w = np.asarray(rows, np.float32).T  # (d, C)
  return jnp.asarray(w[None, None])


def test_orthogonality_hand_computed_3_filters():
  # Filters (1,0), (0,1), (1,1): |cos| = 0, 1/sqrt2, 1/sqrt2.
  k = _conv([[1, 0], [0, 1], [1, 1]])
  o = np.asarray(sparsity.orthogonality_scores(k))
  np.testing.assert_allclose(o, [(1 / R2) / 3, (1 / R2) / 3, (2 / R2) / 3],
                             rtol=1e-6)


def test_orthogonality_is_per_filter_normalised_with_abs_inside():
  # Scaling a filter or flipping its sign changes nothing (per-row
  # normalisation, abs inside the sum); filters (1,0) and (-3,0) are
  # parallel (|cos| 1), (0,2) is orthogonal to both.
  k = _conv([[1, 0], [-3, 0], [0, 2]])
  o = np.asarray(sparsity.orthogonality_scores(k))
  np.testing.assert_allclose(o, [1 / 3, 1 / 3, 0.0], atol=1e-7)
  # A matrix-wide normalisation with abs outside the mean (the circulating
  # TF snippet) would give a different, sign-dependent value.
  w = np.array([[1, 0], [-3, 0], [0, 2]], np.float64)
  wrong = np.abs(np.mean((w / np.linalg.norm(w)) @ (w / np.linalg.norm(w)).T
                         - np.eye(3), axis=1))
  assert not np.allclose(o, wrong, atol=1e-3)


def test_orthogonality_4d_kernel_matches_numpy_formula():
  k = jax.random.normal(jax.random.key(0), (3, 3, 2, 5))
  w = np.asarray(k, np.float64).reshape(-1, 5).T
  w_hat = w / np.linalg.norm(w, axis=1, keepdims=True)
  p = np.abs(w_hat @ w_hat.T - np.eye(5))
  np.testing.assert_allclose(np.asarray(sparsity.orthogonality_scores(k)),
                             p.sum(1) / 5, rtol=1e-5, atol=1e-6)


def test_orthogonal_filters_score_zero_and_zero_filter_scores_zero():
  k = _conv([[1, 0, 0], [0, 2, 0], [0, 0, 0]])
  np.testing.assert_array_equal(
      np.asarray(sparsity.orthogonality_scores(k)), [0.0, 0.0, 0.0])


def test_max_cosine_hand_computed_and_kept():
  k = _conv([[1, 0], [0, 1], [1, 1], [-2, 0]])
  np.testing.assert_allclose(np.asarray(sparsity.max_cosine_scores(k)),
                             [1.0, 1 / R2, 1 / R2, 1.0], rtol=1e-6)
  kept = jnp.array([True, True, True, False])
  np.testing.assert_allclose(
      np.asarray(sparsity.max_cosine_scores(k, kept)),
      [1 / R2, 1 / R2, 1 / R2, 1.0], rtol=1e-6)


def test_fpgm_hand_computed():
  # (0,0), (1,0), (0,1): distances 1, 1, sqrt2.
  k = _conv([[0, 0], [1, 0], [0, 1]])
  np.testing.assert_allclose(np.asarray(sparsity.fpgm_scores(k)),
                             [2.0, 1 + R2, 1 + R2], rtol=1e-6)


def test_norm_scores_and_bad_ord():
  k = _conv([[3, -4], [1, 1]])
  np.testing.assert_allclose(np.asarray(sparsity.norm_scores(k, 1)), [7, 2])
  np.testing.assert_allclose(np.asarray(sparsity.norm_scores(k, 2)), [5, R2],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="ord"):
    sparsity.norm_scores(k, 3)
  with pytest.raises(ValueError, match="at least 2 axes"):
    sparsity.norm_scores(jnp.ones(3))


def test_scores_jit():
  k = jax.random.normal(jax.random.key(1), (3, 3, 4, 6))
  for fn in (sparsity.orthogonality_scores, sparsity.max_cosine_scores,
             sparsity.fpgm_scores, sparsity.norm_scores):
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(k)), np.asarray(fn(k)),
                               rtol=1e-5)
    assert fn(k).shape == (6,)


def test_doctests():
  result = doctest.testmod(_redundancy,
                           optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
