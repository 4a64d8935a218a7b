"""N:M patterns of masks: detection and checking (NumPy on the host).

Split from ``sparsity/_nm.py`` (which re-exports these names) because
``sparsity.summarize`` (``_masks.py``) reports N:M layers while ``_nm``
builds on ``_masks``: this module imports neither, so the import graph
stays acyclic. See ``_nm.py`` for the maths and the references.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

INPUT_AXIS = -2  # the input axis of Dense (in, out) and Conv (..., in, out)


def check_n_m(n: int, m: int) -> tuple[int, int]:
  if isinstance(n, bool) or isinstance(m, bool):
    raise TypeError(f"n and m must be ints, got n={n!r}, m={m!r}")
  n, m = int(n), int(m)
  if m < 1:
    raise ValueError(f"N:M needs m >= 1, got m={m}")
  if not 1 <= n <= m:
    raise ValueError(f"N:M needs 1 <= n <= m, got n={n}, m={m}")
  return n, m


def axis_of(shape: Sequence[int], axis: int) -> int | None:
  """``axis`` as a non-negative index into ``shape``, or None if none."""
  ndim = len(shape)
  if not -ndim <= axis < ndim:
    return None
  return axis % ndim


def group_counts(mask_leaf: Any, m: int, axis: int) -> np.ndarray | None:
  """Kept weights per ``m``-group along ``axis``, on the host (NumPy: no
  compilation per leaf shape); None if the axis is not a multiple of m."""
  shape = tuple(np.shape(mask_leaf))
  ax = axis_of(shape, axis) if len(shape) >= 2 else None
  if ax is None or shape[ax] % m:
    return None
  x = np.moveaxis(np.asarray(mask_leaf, bool), ax, -1)
  return x.reshape(x.shape[:-1] + (x.shape[-1] // m, m)).sum(
      axis=-1, dtype=np.int64)


def groupable(leaf: Any, ms: Sequence[int], axis: int) -> bool:
  shape = tuple(np.shape(leaf)) if leaf is not None else ()
  ax = axis_of(shape, axis) if len(shape) >= 2 else None
  return ax is not None and any(shape[ax] % int(m) == 0 for m in ms)


def is_n_m(mask_leaf: Any, n: int, m: int, axis: int = INPUT_AXIS) -> bool:
  """Whether every ``m``-group along ``axis`` keeps at most ``n`` weights.

  Args:
    mask_leaf: one bool mask array (at least 2 dimensions).
    n: the most kept weights allowed per group.
    m: the group size.
    axis: the grouped axis (default ``-2``, the input axis).

  Returns:
    A Python bool; False when ``mask_leaf.shape[axis]`` is not a multiple
    of ``m`` (or the leaf has fewer than 2 dimensions).

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> k = jnp.array([[1], [0], [1], [0], [1], [1], [0], [0]], bool)
    >>> sparsity.is_n_m(k, 2, 4), sparsity.is_n_m(k, 1, 4)
    (True, False)
  """
  n, m = check_n_m(n, m)
  counts = group_counts(jax.device_get(mask_leaf), m, axis)
  if counts is None:
    return False
  return bool(counts.max(initial=0) <= n)


def n_m_patterns(leaves: Sequence[Any], ms: Sequence[int] = (4, 8),
                 axis: int = INPUT_AXIS) -> list[str | None]:
  """The exact N:M pattern of each mask leaf, e.g. ``"2:4"``, or None.

  A leaf is reported as ``"N:M"`` when EVERY group of ``M`` along ``axis``
  keeps exactly ``N`` weights with ``1 <= N < M``, for the first (smallest)
  ``M`` of ``ms`` for which that holds (a 2:4 mask is also 4:8; it is
  reported as 2:4). A mask with at most (not exactly) N per group, e.g.
  an N:M mask over weights pruned before, is not reported (check it with
  :func:`is_n_m`): "at most N" would also call any very sparse
  unstructured mask N:M. This is what :func:`summarize` uses.

  Args:
    leaves: mask leaves (bool arrays; ``None`` and 1-d leaves give None).
    ms: the group sizes to try, in order.
    axis: the grouped axis (default ``-2``, the input axis).

  Returns:
    One ``"N:M"`` string or None per leaf (the leaves that can be
    grouped come to the host in one transfer; counted with NumPy).

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> k = jnp.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool)
    >>> sparsity.n_m_patterns([k, jnp.ones((4, 2), bool), None])
    ['2:4', None, None]
  """
  # Leaves that can have groups come to the host in one transfer.
  host = jax.device_get([leaf if groupable(leaf, ms, axis) else None
                         for leaf in leaves])
  out = []
  for leaf in host:
    found = None
    for m in ([] if leaf is None else ms):
      counts = group_counts(leaf, int(m), axis)
      if counts is not None and counts.size:
        lo, hi = int(counts.min()), int(counts.max())
        if lo == hi and 1 <= hi < int(m):
          found = f"{hi}:{int(m)}"
          break
    out.append(found)
  return out


__all__ = ["INPUT_AXIS", "axis_of", "check_n_m", "group_counts",
           "groupable", "is_n_m", "n_m_patterns"]
