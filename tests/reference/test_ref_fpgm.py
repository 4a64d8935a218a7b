"""FPGM / SFP filter selection vs ``sparsity.fpgm_keep`` / ``fpgm_filter_masks``.

Reference: he-y/filter-pruning-geometric-median, ``pruning_cifar10.py``,
class ``Mask``: ``get_filter_similar`` (FPGM, with the norm step
``rate_norm < 1``) and ``get_filter_codebook`` (the L2-norm criterion), and
``do_grad_mask`` / ``init_mask`` (the final mask is ``mat * similar_matrix``),
commit 44fbab47b246e8b11bc8008a7bebfe06c0e391b8; transcribed into NumPy
below (torch ``view``/``norm``/``index_select`` -> NumPy; the prints and
``.cuda()`` dropped). PyTorch weights are ``(C_out, C_in, kh, kw)``; the
project's kernels are ``(kh, kw, C_in, C_out)``: the transpose permutes the
entries of every filter the same way, so norms and distances are unchanged.

Pinned departures (documented in ``sparsity/_fpgm.py``):

* counts: the reference computes ``int(C * rate_dist)`` and
  ``int(C * (1 - rate_norm))`` in floating point, so ``C = 100, rate_dist =
  0.29`` prunes ``int(28.999999999999996) = 28`` filters by distance and
  ``C = 10, rate_norm = 0.8`` prunes ``int(1.9999999999999996) = 1`` by
  norm; the project takes the floor of the real product (29 and 2);
* the project keeps at least one filter per layer; the reference can prune
  every filter when ``floor(C (1 - rate_norm)) + floor(C rate_dist) >= C``.

Not compared: the reference's ``dist_type`` switch is inert (``if
dist_type == "l2" or "cos"`` and ``if dist_type == "l2" or "l1"`` are always
true, so it always uses the L2 norm and the Euclidean distance); the
project's ``criterion="l1"`` is an L1-norm control with no counterpart.
"""

import numpy as np
import pytest
from scipy.spatial import distance

import sparsity


# ---------------------------------------------------------------------------
# Transcription: pruning_cifar10.py, class Mask
# ---------------------------------------------------------------------------

def get_filter_codebook(weight_torch, compress_rate, length):
  codebook = np.ones(length)
  if len(weight_torch.shape) == 4:
    filter_pruned_num = int(weight_torch.shape[0] * (1 - compress_rate))
    weight_vec = weight_torch.reshape(weight_torch.shape[0], -1)
    norm2 = np.linalg.norm(weight_vec, 2, 1)      # torch.norm(weight_vec, 2, 1)
    norm2_np = norm2
    filter_index = norm2_np.argsort()[:filter_pruned_num]
    kernel_length = (weight_torch.shape[1] * weight_torch.shape[2]
                     * weight_torch.shape[3])
    for x in range(0, len(filter_index)):
      codebook[filter_index[x] * kernel_length:
               (filter_index[x] + 1) * kernel_length] = 0
  return codebook


def get_filter_similar(weight_torch, compress_rate, distance_rate, length,
                       dist_type="l2"):
  codebook = np.ones(length)
  if len(weight_torch.shape) == 4:
    filter_pruned_num = int(weight_torch.shape[0] * (1 - compress_rate))
    similar_pruned_num = int(weight_torch.shape[0] * distance_rate)
    weight_vec = weight_torch.reshape(weight_torch.shape[0], -1)

    if dist_type == "l2" or "cos":   # always true, as in the released code
      norm = np.linalg.norm(weight_vec, 2, 1)
      norm_np = norm
    elif dist_type == "l1":
      norm = np.linalg.norm(weight_vec, 1, 1)
      norm_np = norm
    filter_large_index = norm_np.argsort()[filter_pruned_num:]

    weight_vec_after_norm = weight_vec[filter_large_index]   # index_select
    if dist_type == "l2" or "l1":    # always true, as in the released code
      similar_matrix = distance.cdist(weight_vec_after_norm,
                                      weight_vec_after_norm, "euclidean")
    elif dist_type == "cos":
      similar_matrix = 1 - distance.cdist(weight_vec_after_norm,
                                          weight_vec_after_norm, "cosine")
    similar_sum = np.sum(np.abs(similar_matrix), axis=0)

    similar_small_index = similar_sum.argsort()[:similar_pruned_num]
    similar_index_for_filter = [filter_large_index[i]
                                for i in similar_small_index]
    kernel_length = (weight_torch.shape[1] * weight_torch.shape[2]
                     * weight_torch.shape[3])
    for x in range(0, len(similar_index_for_filter)):
      codebook[similar_index_for_filter[x] * kernel_length:
               (similar_index_for_filter[x] + 1) * kernel_length] = 0
  return codebook


def reference_keep(weight_torch, rate_norm, rate_dist):
  """Kept filters of ``init_mask``: ``mat`` (norm) times ``similar_matrix``."""
  length = weight_torch.size
  mat = get_filter_codebook(weight_torch, rate_norm, length)
  similar = get_filter_similar(weight_torch, rate_norm, rate_dist, length)
  codebook = (mat * similar).reshape(weight_torch.shape[0], -1)
  return codebook.min(axis=1) == 1


# ---------------------------------------------------------------------------

def _weight(c_out, c_in=3, k=3, seed=0):
  w = np.random.default_rng(seed).standard_normal((c_out, c_in, k, k))
  return w.astype(np.float32)


def _kernel(weight_torch):
  return np.transpose(weight_torch, (2, 3, 1, 0))   # (kh, kw, C_in, C_out)


@pytest.mark.parametrize("c_out,rate_norm,rate_dist,seed", [
    (10, 1.0, 0.3, 0),     # FPGM only (the CIFAR default rate_norm = 1)
    (16, 1.0, 0.4, 1),
    (10, 0.7, 0.3, 2),     # norm step first: 3 by L2 norm, then 3 by distance
    (16, 0.7, 0.1, 3),
])
def test_fpgm_selection_matches_get_filter_similar(c_out, rate_norm,
                                                   rate_dist, seed):
  w = _weight(c_out, seed=seed)
  ref = reference_keep(w, rate_norm, rate_dist)
  ours = sparsity.fpgm_keep(_kernel(w), rate_dist, rate_norm)
  np.testing.assert_array_equal(ours, ref)
  pruned = int(c_out * (1 - rate_norm) + 1e-9) + int(c_out * rate_dist)
  assert int((~ref).sum()) == pruned
  masks = sparsity.fpgm_filter_masks({"Conv_0": _kernel(w)},
                                     {"Conv_0": rate_dist}, rate_norm)
  np.testing.assert_array_equal(masks["Conv_0"], ref)


@pytest.mark.parametrize("c_out,rate,seed", [(10, 0.3, 4), (16, 0.25, 5)])
def test_l2_control_matches_get_filter_codebook(c_out, rate, seed):
  # The norm criterion: get_filter_codebook with compress_rate = 1 - rate.
  w = _weight(c_out, seed=seed)
  ref = get_filter_codebook(w, 1 - rate, w.size).reshape(c_out, -1)
  ref = ref.min(axis=1) == 1
  ours = sparsity.fpgm_keep(_kernel(w), rate, criterion="l2")
  np.testing.assert_array_equal(ours, ref)


def test_count_floor_departure():
  # 100 filters, rate_dist = 0.29: the reference prunes int(28.999...) = 28
  # filters by distance, the project floor(100 * 0.29) = 29; the extra one
  # is the 29th of the reference's distance ranking.
  w = _weight(100, c_in=4, k=1, seed=6)
  ref = reference_keep(w, 1.0, 0.29)
  ours = sparsity.fpgm_keep(_kernel(w), 0.29)
  assert int((~ref).sum()) == 28 and int((~ours).sum()) == 29
  sums = distance.cdist(w.reshape(100, -1), w.reshape(100, -1)).sum(axis=0)
  extra = np.argsort(sums)[28]
  expected = ref.copy()
  expected[extra] = False
  np.testing.assert_array_equal(ours, expected)


def test_norm_count_floor_departure():
  # 10 filters, rate_norm = 0.8: the reference's norm step prunes
  # int(10 * (1 - 0.8)) = int(1.9999999999999996) = 1 filter, the project
  # floor(10 * 0.2) = 2; the distance step (3 filters) then runs on
  # different candidates. The project's result is the reference evaluated
  # at a rate_norm whose float product floors to 2 (0.79).
  w = _weight(10, seed=2)
  ref = reference_keep(w, 0.8, 0.3)
  ours = sparsity.fpgm_keep(_kernel(w), 0.3, 0.8)
  assert int((~ref).sum()) == 1 + 3 and int((~ours).sum()) == 2 + 3
  np.testing.assert_array_equal(ours, reference_keep(w, 0.79, 0.3))


def test_at_least_one_filter_kept():
  # 4 filters, rate_norm = 0.5 (2 by norm), rate_dist = 0.75 (3 by
  # distance, only 2 candidates left): the reference prunes all 4, the
  # project keeps the candidate farthest from the others.
  w = _weight(4, seed=7)
  ref = reference_keep(w, 0.5, 0.75)
  ours = sparsity.fpgm_keep(_kernel(w), 0.75, 0.5)
  assert not ref.any()
  assert int(ours.sum()) == 1
