"""Per-filter redundancy scores of one layer: pure, jit-able functions.

Every score takes a kernel whose last axis is the output channel (Flax
Dense ``(in, out)``, Conv ``(kh, kw, in, out)``) and returns one value per
filter, shape ``(C_out,)``. A filter is the flattened vector
``W[f] = kernel.reshape(-1, C_out)[:, f]`` of length ``d = kh * kw * in``.

Direction differs between criteria, as in their papers:

=========================  ==========================  ===================
score                      redundant filters have      used by
=========================  ==========================  ===================
:func:`orthogonality_scores` a HIGH score (overlap)   RePr (drop top p)
:func:`max_cosine_scores`  a HIGH score                gradient-count
:func:`fpgm_scores`        a LOW score (near median)   FPGM (drop smallest)
:func:`norm_scores`        a LOW score (small norm)    L1/L2 filter pruning
=========================  ==========================  ===================
"""

from typing import Any

import jax
import jax.numpy as jnp

_EPS = 1e-12


def _rows(kernel: jax.Array) -> jax.Array:
  """Filters as rows, ``(C_out, d)`` float32."""
  kernel = jnp.asarray(kernel)
  if kernel.ndim < 2:
    raise ValueError(f"a kernel has at least 2 axes, got shape {kernel.shape}")
  return jnp.reshape(kernel, (-1, kernel.shape[-1])).T.astype(jnp.float32)


def _abs_cosines(kernel: jax.Array) -> jax.Array:
  """``|cos(W[f], W[j])|`` for ``f != j``, 0 on the diagonal, ``(C, C)``."""
  w = _rows(kernel)
  norms = jnp.sqrt(jnp.sum(w * w, axis=1, keepdims=True))
  w_hat = w / jnp.maximum(norms, _EPS)  # a zero filter stays 0
  p = jnp.abs(w_hat @ w_hat.T)
  return jnp.where(jnp.eye(w.shape[0], dtype=jnp.bool_), 0.0, p)


def orthogonality_scores(kernel: jax.Array) -> jax.Array:
  """RePr's inter-filter orthogonality score :math:`O_l^f` of every filter.

  With :math:`\\hat W` the filters as rows, each L2-normalised:

  .. math::
     P = |\\hat W \\hat W^\\top - I|, \\qquad
     O^f = \\frac{1}{J} \\sum_j P[f, j]

  i.e. the sum of the absolute cosines of filter ``f`` with the other
  filters, divided by the number of filters ``J`` (the paper's
  normalisation). The abs is inside the sum (the bug fixed in issue #4 of
  siahuat0727/RePr) and each filter is normalised on its own (not the
  whole matrix, as a circulating TF snippet does). The diagonal is set to 0
  exactly instead of computing ``1 - 1``, so an all-zero filter (e.g. a
  dropped one) scores 0, not ``1/J``. A high score means the filter
  overlaps with the others: RePr drops the highest.

  Args:
    kernel: ``(..., C_out)``.

  Returns:
    ``(C_out,)`` float32 scores in ``[0, (J - 1) / J]``.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> k = jnp.array([[1., 0., 1.], [0., 1., 1.]])  # rows: (1,0) (0,1) (1,1)
    >>> [round(float(s), 4) for s in sparsity.orthogonality_scores(k)]
    [0.2357, 0.2357, 0.4714]

  References:
    Prakash, Storer, Florencio, Zhang, "RePr: Improved Training of
    Convolutional Filters", CVPR 2019, Eqs. (1)-(2).
  """
  p = _abs_cosines(kernel)
  return jnp.sum(p, axis=1) / p.shape[0]


def max_cosine_scores(kernel: jax.Array, kept: Any = None) -> jax.Array:
  """Max absolute cosine of each filter with another (kept) filter.

  .. math:: r^f = \\max_{j \\ne f,\\ k_j} |\\cos(W[f], W[j])|

  A score near 1 means another kept filter nearly duplicates this one (up
  to sign and scale). Filters with no other kept filter score 0.

  Args:
    kernel: ``(..., C_out)``.
    kept: optional bool ``(C_out,)``: only kept filters count as the
      "other" filter (every filter still gets a score).

  Returns:
    ``(C_out,)`` float32 scores in ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> k = jnp.array([[1., 0., 1.], [0., 1., 1.]])
    >>> [round(float(s), 4) for s in sparsity.max_cosine_scores(k)]
    [0.7071, 0.7071, 0.7071]
    >>> kept = jnp.array([True, True, False])
    >>> [round(float(s), 4) for s in sparsity.max_cosine_scores(k, kept)]
    [0.0, 0.0, 0.7071]
  """
  p = _abs_cosines(kernel)
  if kept is not None:
    p = jnp.where(jnp.asarray(kept, jnp.bool_)[None, :], p, 0.0)
  return jnp.max(p, axis=1)


def fpgm_scores(kernel: jax.Array) -> jax.Array:
  """FPGM: sum of Euclidean distances of each filter to all the others.

  .. math:: s^f = \\sum_j \\lVert W[f] - W[j] \\rVert_2

  The filters with the **smallest** sum are closest to the layer's
  geometric median, hence the most replaceable, and are pruned first.
  Distances come from the Gram matrix, ``|a|^2 + |b|^2 - 2 a.b`` clamped
  at 0 (no ``(C, C, d)`` intermediate).

  Args:
    kernel: ``(..., C_out)``.

  Returns:
    ``(C_out,)`` float32.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> k = jnp.array([[1., 0., 1.], [0., 1., 1.]])
    >>> [round(float(s), 4) for s in sparsity.fpgm_scores(k)]
    [2.4142, 2.4142, 2.0]

  References:
    He, Liu, Wang, Hu, Yang, "Filter Pruning via Geometric Median for Deep
    Convolutional Neural Networks Acceleration", CVPR 2019
    (``get_filter_similar``).
  """
  w = _rows(kernel)
  sq = jnp.sum(w * w, axis=1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * (w @ w.T)
  d2 = jnp.where(jnp.eye(w.shape[0], dtype=jnp.bool_), 0.0,
                 jnp.maximum(d2, 0.0))
  return jnp.sum(jnp.sqrt(d2), axis=1)


def norm_scores(kernel: jax.Array, ord: int = 2) -> jax.Array:  # pylint: disable=redefined-builtin
  """L1 or L2 norm of each filter (the smallest are pruned first).

  .. math:: n^f = \\lVert W[f] \\rVert_{p}, \\quad p \\in \\{1, 2\\}

  Args:
    kernel: ``(..., C_out)``.
    ord: 1 or 2.

  Returns:
    ``(C_out,)`` float32.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> k = jnp.array([[3., -1.], [4., 1.]])
    >>> sparsity.norm_scores(k, 1).tolist(), sparsity.norm_scores(k).tolist()
    ([7.0, 2.0], [5.0, 1.4142135381698608])

  References:
    Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient
    ConvNets", ICLR 2017 (L1).
  """
  w = _rows(kernel)
  if ord == 1:
    return jnp.sum(jnp.abs(w), axis=1)
  if ord == 2:
    return jnp.sqrt(jnp.sum(w * w, axis=1))
  raise ValueError(f"ord must be 1 or 2, got {ord!r}")
