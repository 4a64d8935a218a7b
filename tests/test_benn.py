"""BENN event functions: bootstrap, boosting updates and alphas, votes."""
import doctest
import inspect

import numpy as np
import pytest

import binary

# The modules that define these public functions (their doctests run here).
_benn = inspect.getmodule(binary.boost_weights)

W4 = [0.25] * 4
MISS = [1, 0, 0, 0]          # eps = 0.25


def test_bootstrap_is_deterministic_and_seeded():
  a = binary.bootstrap_indices(3, 0, 1000)
  assert a.shape == (1000,) and a.min() >= 0 and a.max() < 1000
  np.testing.assert_array_equal(a, binary.bootstrap_indices(3, 0, 1000))
  assert not np.array_equal(a, binary.bootstrap_indices(3, 1, 1000))
  assert not np.array_equal(a, binary.bootstrap_indices(4, 0, 1000))
  # With replacement: about 1 - 1/e of the examples appear.
  assert 0.58 < np.unique(a).size / 1000 < 0.68


def test_resampling_follows_the_weights():
  w = np.zeros(50)
  w[7] = 1.0
  assert (binary.resample_indices(0, 2, w) == 7).all()
  w = np.r_[np.ones(25), np.zeros(25)]
  idx = binary.resample_indices(0, 2, w)
  assert idx.max() < 25 and idx.shape == (50,)
  np.testing.assert_array_equal(idx, binary.resample_indices(0, 2, w))
  with pytest.raises(ValueError, match="positive sum"):
    binary.resample_indices(0, 0, np.zeros(3))


def test_boost_a():
  w, alpha, eps = binary.boost_weights(W4, MISS, "a", num_classes=10)
  assert eps == 0.25 and alpha == pytest.approx(0.5 * np.log(3))
  # 0.25 * sqrt(3) vs 0.25 / sqrt(3), normalised: 1/2 and 1/6.
  np.testing.assert_allclose(w, [0.5, 1 / 6, 1 / 6, 1 / 6], rtol=1e-12)


def test_boost_b():
  w, alpha, _ = binary.boost_weights(W4, MISS, "b", num_classes=10)
  assert alpha == pytest.approx(0.5 * np.log(3))
  r3 = np.sqrt(3.0)
  # 1 / ((1/w - 1) e^{-alpha s} + 1) with 1/w - 1 = 3, e^alpha = sqrt 3.
  np.testing.assert_allclose(w, [1 / (3 / r3 + 1)] + [1 / (3 * r3 + 1)] * 3,
                             rtol=1e-12)
  assert w[0] > 0.25 > w[1]  # the missed example gains weight


def test_boost_c():
  w, _, _ = binary.boost_weights(W4, MISS, "c", num_classes=10,
                                 c_scale=0.4)
  # v = 0.75 e^{-alpha s}: 0.75/sqrt3 (miss), 0.75 sqrt3: shares 0.1, 0.3.
  np.testing.assert_allclose(w, [0.96, 0.88, 0.88, 0.88], rtol=1e-12)
  w_default, _, _ = binary.boost_weights(W4, MISS, "c", num_classes=10)
  np.testing.assert_allclose(w_default, w)  # N / 10 = 0.4 for N = 4


def test_boost_d_is_samme_with_shrinkage():
  w, alpha, _ = binary.boost_weights(W4, MISS, "d", num_classes=10)
  assert alpha == pytest.approx(0.1 * np.log(27.0))  # ln 3 + ln 9
  up, down = 27 ** 0.1, 27 ** -0.1
  np.testing.assert_allclose(
      w, np.array([up, down, down, down]) / (up + 3 * down), rtol=1e-12)
  _, a2, _ = binary.boost_weights(W4, MISS, "d", num_classes=2,
                                  shrinkage=1.0)
  assert a2 == pytest.approx(np.log(3.0))  # K = 2: plain AdaBoost's 2x


def test_alpha_edge_cases():
  assert binary.member_alpha(0.5, "a", num_classes=10) == 0.0
  assert binary.member_alpha(0.9, "d", num_classes=10) == pytest.approx(0.0)
  big = binary.member_alpha(0.0, "a", num_classes=10)
  assert np.isfinite(big) and big > 10
  assert binary.member_alpha(0.6, "a", num_classes=10) < 0
  with pytest.raises(ValueError, match="variant"):
    binary.member_alpha(0.2, "e", num_classes=10)


# 3 members x 2 examples x 3 classes.
SCORES = np.array([
    [[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]],
    [[0.0, 0.6, 0.4], [0.0, 0.7, 0.3]],
    [[0.0, 0.55, 0.45], [0.5, 0.0, 0.5]],
])


def test_hard_vote():
  # Example 0: votes 0, 1, 1 -> 1; example 1: 2, 1, tie 0/2 -> argmax 0:
  # votes 0, 2, 1 -> counts (1, 1, 1) -> tie -> class 0.
  np.testing.assert_array_equal(binary.hard_vote(SCORES), [1, 0])
  np.testing.assert_array_equal(
      binary.hard_vote(SCORES, [2.5, 1.0, 1.0]), [0, 2])


def test_soft_vote():
  # Sums: ex 0 (0.9, 1.25, 0.85) -> 1; ex 1 (0.5, 0.9, 1.6) -> 2.
  np.testing.assert_array_equal(binary.soft_vote(SCORES), [1, 2])
  # alpha (3, 1, 1): ex 0 (2.7, 1.45, 0.85) -> 0.
  np.testing.assert_array_equal(binary.soft_vote(SCORES, [3, 1, 1]), [0, 2])


def test_ensemble_curve():
  curve = binary.ensemble_curve(SCORES, [1, 2])
  assert [c["size"] for c in curve] == [1, 2, 3]
  assert curve[0] == {"size": 1, "hard_vote_accuracy": 0.5,
                      "soft_vote_accuracy": 0.5}
  assert curve[2]["hard_vote_accuracy"] == 0.5
  assert curve[2]["soft_vote_accuracy"] == 1.0


def test_docstring_examples():
  assert doctest.testmod(_benn).failed == 0
