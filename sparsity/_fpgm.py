r"""FPGM: filter pruning via the geometric median, as soft masks.

He, Liu, Wang, Hu, Yang, "Filter Pruning via Geometric Median for Deep
Convolutional Neural Networks Acceleration", CVPR 2019 (released code
``pruning_cifar10.py``: ``get_filter_similar``, ``do_mask``,
``do_grad_mask``).

For a conv layer with filters :math:`F_1 \dots F_C` (kernel columns),
``rate_norm`` :math:`r_n` and ``rate_dist`` :math:`r_d`:

1. norm step: the :math:`\lfloor C (1 - r_n) \rfloor` filters of smallest
   L2 norm are pruned (``rate_norm = 1``, the default, prunes none);
2. among the others (set :math:`S`), every filter gets the distance sum

   .. math:: s_j = \sum_{k \in S} \lVert F_j - F_k \rVert_2,

   and the :math:`\lfloor C\, r_d \rfloor` filters with the **smallest**
   :math:`s_j` (nearest the geometric median of :math:`S`, hence most
   replaceable by the others) are pruned.

The masks are recomputed from the current weights after every epoch
(soft pruning: a filter pruned at one epoch may be kept at the next and
grow back from 0) and the gradients of the currently pruned filters are
zeroed in between (the masked optimizer does that); the last mask is the
hard result.  ``criterion="l2"`` / ``"l1"`` replaces step 2 by the
smallest norms (soft filter pruning, He et al. IJCAI 2018: the norm-based
control at equal FLOPs).  Ties are broken by the lower filter index
(stable sorts).  At least one filter per layer is always kept.

Departures from the released code (pinned by
``tests/reference/test_ref_fpgm.py``): the counts here are the floors of
the real products, while the code's ``int(C * rate_dist)`` and
``int(C * (1 - rate_norm))`` are taken in floating point and can be one
less (``C = 100, rate_dist = 0.29``: 28 instead of 29; ``C = 10, rate_norm
= 0.8``: 1 instead of 2 by norm); and the code can prune every filter of a
layer (when the two counts add up to ``C``), which the guard above prevents.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.spatial import distance

from sparsity import _redundancy

CRITERIA = ("geometric_median", "l2", "l1")

__all__ = ["CRITERIA", "fpgm_keep", "fpgm_filter_masks"]


def fpgm_keep(kernel: Any, rate_dist: float, rate_norm: float = 1.0,
              criterion: str = "geometric_median") -> np.ndarray:
  """Filters kept by one FPGM selection on a kernel ``(..., C_out)``.

  Args:
    kernel: the layer's kernel; filters are its last-axis columns.
    rate_dist: fraction of the C filters pruned by distance (floor(C r)).
    rate_norm: fraction kept by the norm step (floor(C (1 - r)) pruned).
    criterion: "geometric_median" (FPGM), or "l2"/"l1" (smallest norms).

  Returns:
    ``(C_out,)`` bool, True = kept.

  Example:
    >>> import numpy as np, sparsity
    >>> k = np.array([[0., 1., 2., 10.]])   # one input, 4 filters
    >>> sparsity.fpgm_keep(k, 0.25).tolist()   # 1 is nearest the median
    [True, False, True, True]
    >>> sparsity.fpgm_keep(k, 0.25, criterion="l2").tolist()
    [False, True, True, True]
  """
  if criterion not in CRITERIA:
    raise ValueError(f"criterion must be one of {CRITERIA}, got "
                     f"{criterion!r}")
  if not (0.0 <= rate_dist < 1.0 and 0.0 < rate_norm <= 1.0):
    raise ValueError(f"need 0 <= rate_dist < 1 and 0 < rate_norm <= 1, got "
                     f"{rate_dist}, {rate_norm}")
  w = np.asarray(kernel, np.float64)
  c = w.shape[-1]
  w = w.reshape(-1, c)
  n_norm = int(c * (1.0 - rate_norm) + 1e-9)
  n_dist = int(c * rate_dist + 1e-9)
  n_dist = max(0, min(n_dist, c - 1 - n_norm))
  keep = np.ones((c,), bool)
  norms = np.asarray(_redundancy.norm_scores(w, 2), np.float64)
  order = np.argsort(norms, kind="stable")
  keep[order[:n_norm]] = False
  candidates = np.sort(order[n_norm:])
  if n_dist:
    sub = w[:, candidates]
    if criterion == "geometric_median":
      # Sum of Euclidean distances to the other filters, as the authors'
      # code computes it (`pruning_cifar10.py`, `get_filter_similar`:
      # `distance.cdist(w, w, "euclidean")` summed): C x C memory, never
      # the C x C x fan_in differences (4.8e9 floats for a 512-filter
      # 3x3x512 conv).
      scores = distance.cdist(sub.T, sub.T, "euclidean").sum(axis=1)
    else:
      scores = np.asarray(_redundancy.norm_scores(
          sub, 2 if criterion == "l2" else 1), np.float64)
    keep[candidates[np.argsort(scores, kind="stable")[:n_dist]]] = False
  return keep


def fpgm_filter_masks(kernels: Mapping[str, Any], rates: Mapping[str, float],
                      rate_norm: float = 1.0,
                      criterion: str = "geometric_median"
                      ) -> dict[str, np.ndarray]:
  """``{layer: keep}`` for every layer of ``rates`` (``{layer: rate_dist}``).

  ``kernels`` maps the same layer names to their kernels (host arrays).
  Pure function of the current weights: call it after every epoch and pass
  the result to :func:`sparsity.expand_filter_masks`.
  """
  return {name: fpgm_keep(kernels[name], float(r), rate_norm, criterion)
          for name, r in rates.items()}
