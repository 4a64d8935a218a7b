"""BENN boosting and voting vs ``binary.boost_weights`` / ``member_alpha``.

Reference: XinDongol/BENN-PyTorch (commit
e57f0173c06014265fdebb8d787997e430ba7d96), ``cifar/{AB,SB}/boosting/*.py``,
``update_weights`` (one per script), ``most_common_element`` (hard vote)
and ``combine_softmax_output`` (soft vote); transcribed into NumPy below
(``torch.Tensor`` is float32, so the transcription computes in float32).

What the released scripts do (``update_weights``; ``miss2`` = s = +1 for a
misclassified example, -1 otherwise; eps = sum(w miss) / sum(w)):

============================  ===================================  =========
script                        alpha                                update
============================  ===================================  =========
boostA_{AB_indp,AB_seq,SB_seq}  0.5 ln((1-eps)/eps)                  A
boostB_{AB_seq,SB_seq}        0.5 ln((1-eps)/eps)                  B
boostB_AB_indp                0.1 (ln((1-eps)/eps) + ln 9)         B
boostC_{AB_seq,SB_indp,SB_seq}  0.5 ln((1-eps)/eps)                  C
boostD_{AB_indp,SB_seq}       0.1 (ln((1-eps)/eps) + ln 9)         A
============================  ===================================  =========

A: ``w * exp(alpha s)``; B: ``1 / ((1/w - 1) exp(-alpha s) + 1)``; C:
``1 - 5000 v / sum|v|`` with ``v = (1 - w) exp(-alpha s)``. No script
normalises the weights (``WeightedRandomSampler`` does when sampling).

Pinned departures:

* variants A and D: the project divides the new weights by their sum (same
  proportions, hence the same eps, alphas and sampling distribution);
* variant C: the code's literal 5000 is the project's ``c_scale`` (default
  N / 10, = 5000 for CIFAR-10's N = 50000);
* eps is clipped to [1e-10, 1 - 1e-10]: a perfect member gets alpha =
  0.5 ln(1e10 - 1) where the reference gets +inf (and zero weights);
* ``boostB_AB_indp`` uses variant D's alpha with B's update; the project's
  ``"b"`` has the 0.5 ln alpha of the two ``boostB_*_seq`` scripts only;
* variant D is not SAMME's update ``w exp(alpha 1[miss])``: with s = +-1 and
  after normalising it is ``w exp(2 alpha 1[miss])``; ``ln 9`` is hard-coded
  (K = 10 classes), the project's ``ln(num_classes - 1)``.
"""

import numpy as np
import pytest

import binary


# ---------------------------------------------------------------------------
# Transcription: update_weights of the boosting scripts. ``pred`` and
# ``target`` are (N,) class indices, ``sample_weights`` (N, 1) float32.
# ---------------------------------------------------------------------------

def _miss(pred, target):
  miss = np.array([int(x) for x in (pred != target)], np.float32)
  miss2 = np.array([x if x == 1 else -1 for x in miss], np.float32)
  miss = miss[:, None]
  return miss, miss2


def _err(sample_weights, miss):
  return (sample_weights.T @ miss) / np.sum(sample_weights)     # (1, 1)


# ``float(err_m)`` of a one-element torch tensor is ``err_m.item()`` here.
def _alpha_half(err_m):       # boostA_*, boostB_*_seq, boostC_*
  return np.float32(0.5) * np.log((1 - err_m) / np.float32(err_m.item()))


def _alpha_samme(err_m):      # boostD_*, boostB_AB_indp
  return np.float32(0.1) * (np.log((1 - err_m) / np.float32(err_m.item()))
                            + np.log(np.array([9], np.float32)))


def update_weights(pred, target, sample_weights, script):
  miss, miss2 = _miss(pred, target)
  err_m = _err(sample_weights, miss)
  alpha_m = (_alpha_samme(err_m) if script in ("D", "B_AB_indp")
             else _alpha_half(err_m))
  prior_exp = (alpha_m * miss2).T          # torch.t(torch.Tensor(...))
  if script in ("A", "D"):
    sample_weights_new = sample_weights * np.exp(prior_exp)
  elif script in ("B_seq", "B_AB_indp"):
    sample_weights_new = 1 / ((1 / sample_weights - 1) * np.exp(-prior_exp)
                              + 1)
  else:                                    # "C"
    sample_weights_new = (1 - sample_weights) * np.exp(-prior_exp)
    sample_weights_new = (C_CONSTANT * sample_weights_new
                          / np.sum(np.abs(sample_weights_new)))
    sample_weights_new = 1 - sample_weights_new
  return sample_weights_new, alpha_m


# The released code's literal 5000 (N = 50000); the small tests below use
# N / 10 in both implementations (the project's default c_scale).
C_CONSTANT = 5000


def most_common_element(pred_mat, alpha_m_mat, num_boost, n, classes):
  """Hard vote; the code's ``range(1000)`` / ``range(10)`` are n / classes."""
  pred_most = []
  pred_mat = pred_mat.astype(int)
  for i in range(n):
    best_value = -1000
    best_pred = -1
    for j in range(classes):
      mask = [int(x) for x in
              (pred_mat[i, :] == j * np.ones((num_boost,), dtype=int))]
      if np.sum(mask * alpha_m_mat[0][0:0 + num_boost]) > best_value:
        best_value = np.sum(mask * alpha_m_mat[0][0:0 + num_boost])
        best_pred = j
    pred_most = np.append(pred_most, best_pred)
  return pred_most


def combine_softmax_output(pred_test_i, pred_test, alpha_m_mat, i):
  return pred_test + alpha_m_mat[0][i] * pred_test_i


# ---------------------------------------------------------------------------

N, CLASSES = 50, 10
RNG = np.random.default_rng(0)
TARGET = RNG.integers(0, CLASSES, N)
# Three members' predictions, wrong on 30 %, 40 %, 20 % of the examples.
PREDS = [np.where(RNG.random(N) < r, (TARGET + 1 + RNG.integers(0, 9, N))
                  % CLASSES, TARGET) for r in (0.3, 0.4, 0.2)]


@pytest.mark.parametrize("script,variant", [
    ("A", "a"), ("B_seq", "b"), ("C", "c"), ("D", "d")])
def test_three_rounds_match(script, variant, monkeypatch):
  monkeypatch.setitem(globals(), "C_CONSTANT", N // 10)
  ref_w = np.ones((N, 1), np.float32) / np.float32(N)
  ours_w = np.ones(N) / N
  for pred in PREDS:
    ref_w, ref_alpha = update_weights(pred, TARGET, ref_w, script)
    ours_w, alpha, eps = binary.boost_weights(
        ours_w, (pred != TARGET).astype(int), variant, num_classes=CLASSES)
    np.testing.assert_allclose(alpha, float(ref_alpha[0, 0]), rtol=1e-5)
    np.testing.assert_allclose(
        binary.member_alpha(eps, variant, num_classes=CLASSES), alpha)
    ref_flat = ref_w[:, 0].astype(np.float64)
    if variant in ("a", "d"):   # the project normalises; the code does not
      np.testing.assert_allclose(ours_w, ref_flat / ref_flat.sum(),
                                 rtol=1e-5)
    else:
      np.testing.assert_allclose(ours_w, ref_flat, rtol=1e-5, atol=1e-6)


def test_c_scale_default_is_the_code_constant():
  w = np.ones(50000) / 50000
  miss = (np.arange(50000) % 4 == 0).astype(int)
  ref, _ = update_weights(np.where(miss, 1, 0), np.zeros(50000),
                          w[:, None].astype(np.float32), "C")
  ours, _, _ = binary.boost_weights(w, miss, "c", num_classes=10)
  np.testing.assert_allclose(ours, ref[:, 0], rtol=1e-5)


def test_boost_b_indp_script_uses_the_d_alpha():
  pred = PREDS[0]
  ref_w, ref_alpha = update_weights(
      pred, TARGET, np.ones((N, 1), np.float32) / np.float32(N), "B_AB_indp")
  miss = (pred != TARGET).astype(int)
  ours_w, alpha, eps = binary.boost_weights(np.ones(N) / N, miss, "b",
                                            num_classes=CLASSES)
  d_alpha = binary.member_alpha(eps, "d", num_classes=CLASSES)
  np.testing.assert_allclose(float(ref_alpha[0, 0]), d_alpha, rtol=1e-5)
  assert abs(alpha - d_alpha) > 0.1          # the project's "b": 0.5 ln
  # B's update with the D alpha reproduces the script:
  s = np.where(miss > 0, 1.0, -1.0)
  w = np.ones(N) / N
  np.testing.assert_allclose(
      1 / ((1 / w - 1) * np.exp(-d_alpha * s) + 1), ref_w[:, 0], rtol=1e-5)
  assert not np.allclose(ours_w, ref_w[:, 0], rtol=1e-3)


def test_d_is_samme_with_a_doubled_update():
  pred = PREDS[1]
  miss = (pred != TARGET).astype(int)
  ref_w, ref_alpha = update_weights(
      pred, TARGET, np.ones((N, 1), np.float32) / np.float32(N), "D")
  alpha = float(ref_alpha[0, 0])
  eps = miss.mean()
  assert np.isclose(alpha, 0.1 * (np.log((1 - eps) / eps) + np.log(9)),
                    rtol=1e-5)
  samme_2a = np.exp(2 * alpha * miss) / np.exp(2 * alpha * miss).sum()
  samme_a = np.exp(alpha * miss) / np.exp(alpha * miss).sum()
  ref = ref_w[:, 0] / ref_w[:, 0].sum()
  np.testing.assert_allclose(ref, samme_2a, rtol=1e-5)
  assert not np.allclose(ref, samme_a, rtol=1e-3)
  ours, _, _ = binary.boost_weights(np.ones(N) / N, miss, "d",
                                    num_classes=CLASSES)
  np.testing.assert_allclose(ours, samme_2a, rtol=1e-5)


def test_perfect_member_alpha_is_finite():
  target = np.arange(8) % 3
  with np.errstate(divide="ignore"):
    _, ref_alpha = update_weights(target, target,
                                  np.ones((8, 1), np.float32) / 8, "A")
  assert np.isinf(ref_alpha[0, 0])
  w, alpha, eps = binary.boost_weights(np.ones(8) / 8, np.zeros(8), "a",
                                       num_classes=3)
  assert eps == 0.0 and np.isfinite(alpha)
  assert np.isclose(alpha, 0.5 * np.log((1 - 1e-10) / 1e-10))
  np.testing.assert_allclose(w, np.ones(8) / 8)


def test_votes_match():
  rng = np.random.default_rng(1)
  m, n = 4, 30
  scores = rng.random((m, n, CLASSES)).astype(np.float32)
  alphas = np.array([[0.7, 0.2, 0.45, -0.1]], np.float32)
  pred_store = np.argmax(scores, -1).T.astype(np.float32)   # (n, m)
  hard = most_common_element(pred_store, alphas, m, n, CLASSES)
  np.testing.assert_array_equal(binary.hard_vote(scores, alphas[0]), hard)
  pred_test = np.zeros((n, CLASSES), np.float32)
  for i in range(m):
    pred_test = combine_softmax_output(scores[i], pred_test, alphas, i)
  np.testing.assert_array_equal(binary.soft_vote(scores, alphas[0]),
                                np.argmax(pred_test, 1))
  # Ties go to the lowest class in both (strict '>' in the code's loop).
  tie = np.zeros((2, 1, 3), np.float32)
  tie[0, 0, 2] = tie[1, 0, 1] = 1.0
  ab = np.array([[1.0, 1.0]], np.float32)
  assert most_common_element(np.argmax(tie, -1).T, ab, 2, 1, 3)[0] == 1
  assert binary.hard_vote(tie, ab[0])[0] == 1
