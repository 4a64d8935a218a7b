"""RePr orthogonality ranking vs ``sparsity.orthogonality_scores`` /
``repr_scores`` / ``repr_select``.

RePr has no official code; METHODS.md cites two re-implementations, both
transcribed into NumPy below:

* siahuat0727/RePr, ``main.py``, ``pruning`` (commit
  88a976fd240085e86c621c4a39e1ff1487e3306c): ``F.normalize`` each filter
  (eps 1e-12), ``P = |W W^T - I|``, ``O = P.sum(1) / C_out``, one global
  ``threshold = np.percentile(ranks, 100 * (1 - prune_ratio))`` over all
  conv layers, drop ``O > threshold``;
* SweetWind1996/implementation-of-RePr, ``prunefilters.py``,
  ``prunefilters`` (commit e7790138da44dbef0f893a6b98c3ca322a77ae47): the
  same score with the norm floored at float32 eps and a hard-coded ``/ 32``,
  ranked globally by ``sorted``, dropping ``ranking[int(n * 0.8):]`` (a
  hard-coded 20 %).

Pinned departures (documented in ``sparsity/_redundancy.py`` and
``sparsity/_repr.py``):

* the project sets the diagonal of ``P`` to 0 exactly, so an all-zero
  filter scores 0; both references give it ``|0 - 1| / C = 1 / C``;
* counts: the project drops ``k = round(p n)``; siahuat's percentile rule
  drops the scores above the linearly interpolated percentile, ``ceil((n -
  1) p)`` of distinct scores (n = 10, p = 0.25: 3 against the project's
  round(2.5) = 2); SweetWind drops ``n - int(0.8 n)`` (n = 96: 20 against
  round(19.2) = 19). In both cases the extra filter is the highest-scored
  one the project keeps.
"""

import numpy as np
import pytest

import sparsity


# ---------------------------------------------------------------------------
# Transcriptions (torch weights (C_out, C_in, kh, kw); Keras kernels for
# SweetWind are (kh, kw, C_in, C_out), used there as ``kernel.T``).
# ---------------------------------------------------------------------------

def siahuat_pruning(conv_weights, prune_ratio):
  inter_filter_ortho = {}
  for name, W in conv_weights:
    size = W.shape
    W2d = W.reshape(size[0], -1)
    W2d = W2d / np.maximum(np.linalg.norm(W2d, 2, axis=1, keepdims=True),
                           1e-12)                   # F.normalize(p=2, dim=1)
    W_WT = W2d @ W2d.T
    I = np.eye(W_WT.shape[0], dtype=np.float32)
    P = np.abs(W_WT - I)
    P = P.sum(axis=1) / size[0]
    inter_filter_ortho[name] = P
  # the ranking is computed overall the filters in the network
  ranks = np.concatenate([v.flatten() for v in inter_filter_ortho.values()])
  threshold = np.percentile(ranks, 100 * (1 - prune_ratio))
  prune = {}
  for name, W in conv_weights:
    prune[name] = inter_filter_ortho[name] > threshold
  return prune, inter_filter_ortho


def sweetwind_prunefilters(kernels):
  """``kernels``: list of Keras kernels; returns (drop set, scores)."""
  rank = dict()
  count = 0
  scores = []
  for kernel in kernels:
    weight = kernel.T
    filternum = weight.shape[0]
    W = np.zeros((weight.shape[0],
                  weight.shape[2] * weight.shape[3] * weight.shape[1]),
                 dtype="float32")
    for x in range(filternum):
      filt = weight[x, :, :, :].flatten()
      filter_length = np.linalg.norm(filt)
      eps = np.finfo(filter_length.dtype).eps
      filter_length = max([filter_length, eps])
      W[x, :] = filt / filter_length
    I = np.identity(filternum)
    P = abs(np.dot(W, W.T) - I)
    O = P.sum(axis=1) / 32
    scores.append(O)
    for index, o in enumerate(O):
      rank.update({index + count: o})
    count = filternum + count
  ranking = sorted(rank.items(), key=lambda x: x[1])
  drop = [ranking[t][0] for t in range(int(len(ranking) * 0.8),
                                       len(ranking))]
  return set(drop), scores


# ---------------------------------------------------------------------------

def _vanilla(seed=0, c=32):
  """RePr's vanilla CNN: three 3x3 convs of 32 filters (3 -> 32 -> 32)."""
  rng = np.random.default_rng(seed)
  shapes = [(3, 3, 3, c), (3, 3, c, c), (3, 3, c, c)]
  return {f"Conv_{i}": {"kernel": rng.normal(size=s).astype(np.float32)}
          for i, s in enumerate(shapes)}


def _torch(kernel):
  return np.transpose(kernel, (3, 2, 0, 1))


LAYERS = ["Conv_0", "Conv_1", "Conv_2"]


def test_scores_match_both_references():
  params = _vanilla()
  ours = sparsity.repr_scores(params, LAYERS)
  _, siahuat = siahuat_pruning(
      [(n, _torch(params[n]["kernel"])) for n in LAYERS], 0.3)
  _, sweet = sweetwind_prunefilters([params[n]["kernel"] for n in LAYERS])
  for i, name in enumerate(LAYERS):
    np.testing.assert_allclose(
        np.asarray(sparsity.orthogonality_scores(params[name]["kernel"])),
        siahuat[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[name], siahuat[name], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ours[name], sweet[i], rtol=1e-5, atol=1e-6)


def test_selection_matches_siahuat_at_p_03():
  # n = 96, p = 0.3: percentile rank 66.5, 29 scores above it;
  # round(28.8) = 29.
  params = _vanilla(seed=1)
  prune, _ = siahuat_pruning(
      [(n, _torch(params[n]["kernel"])) for n in LAYERS], 0.3)
  ours = sparsity.repr_select(sparsity.repr_scores(params, LAYERS), 0.3)
  for name in LAYERS:
    np.testing.assert_array_equal(ours[name], prune[name])
  assert sum(int(v.sum()) for v in ours.values()) == 29


def _extra_filter(scores, ours):
  """The highest-scored filter the project keeps, as (layer, index)."""
  best = max(((s, name, i) for name in scores
              for i, s in enumerate(scores[name]) if not ours[name][i]))
  return best[1], best[2]


def test_selection_count_departure_siahuat():
  # Two layers of 5 filters (n = 10), p = 0.25: the percentile lies between
  # the 7th and 8th smallest scores, so the reference drops 3; the project
  # drops round(2.5) = 2 (Python rounds halves to even).
  rng = np.random.default_rng(2)
  params = {f"Conv_{i}": {"kernel": rng.normal(size=(3, 3, 4, 5)).astype(
      np.float32)} for i in range(2)}
  layers = ["Conv_0", "Conv_1"]
  prune, _ = siahuat_pruning(
      [(n, _torch(params[n]["kernel"])) for n in layers], 0.25)
  scores = sparsity.repr_scores(params, layers)
  ours = sparsity.repr_select(scores, 0.25)
  assert sum(int(v.sum()) for v in prune.values()) == 3
  assert sum(int(v.sum()) for v in ours.values()) == 2
  name, i = _extra_filter(scores, ours)
  expected = {n: v.copy() for n, v in ours.items()}
  expected[name][i] = True
  for n in layers:
    np.testing.assert_array_equal(prune[n], expected[n])


def test_selection_count_departure_sweetwind():
  params = _vanilla(seed=3)
  drop, _ = sweetwind_prunefilters([params[n]["kernel"] for n in LAYERS])
  scores = sparsity.repr_scores(params, LAYERS)
  ours = sparsity.repr_select(scores, 0.2)
  assert len(drop) == 20
  assert sum(int(v.sum()) for v in ours.values()) == 19
  name, i = _extra_filter(scores, ours)
  ours[name][i] = True
  flat = np.concatenate([ours[n] for n in LAYERS])
  assert set(np.flatnonzero(flat)) == drop


def test_zero_filter_scores_zero_not_one_over_c():
  params = _vanilla(seed=4, c=8)
  params["Conv_1"]["kernel"][..., 3] = 0.0
  ours = np.asarray(sparsity.orthogonality_scores(params["Conv_1"]["kernel"]))
  _, ref = siahuat_pruning([("Conv_1", _torch(params["Conv_1"]["kernel"]))],
                           0.3)
  assert ours[3] == 0.0
  np.testing.assert_allclose(ref["Conv_1"][3], 1.0 / 8)
  others = np.arange(8) != 3
  np.testing.assert_allclose(ours[others], ref["Conv_1"][others], rtol=1e-5,
                             atol=1e-6)
