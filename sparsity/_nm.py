r"""N:M structured sparsity: at most N kept weights in every M consecutive.

An *N:M mask* keeps at most ``N`` of every group of ``M`` consecutive
weights along the input axis of a kernel (axis ``-2``): for a Dense kernel
``(in, out)`` the groups are ``w[g*M:(g+1)*M, o]`` for each output unit
``o``; for a Conv kernel ``(kh, kw, in, out)`` they are ``w[i, j,
g*M:(g+1)*M, o]`` at each kernel position ``(i, j)`` and output channel
``o``. This is the layout NVIDIA's 2:4 sparse tensor cores read (groups
along the reduction dimension of the matmul, i.e. the input features). It
is an ordinary boolean mask of this package: :func:`sparsity.masked`,
:func:`sparsity.apply_mask`, the export and every other mask consumer take
it as it is.

Magnitude N:M pruning of a group ``G`` with current mask ``m``:

.. math::
   m'_i = m_i \wedge [\, r_i < N \,], \qquad
   r_i = \#\{ j \in G : m_j \wedge (|w_j| > |w_i| \vee
         (|w_j| = |w_i| \wedge j < i)) \},

i.e. among the surviving weights of each group the ``N`` largest ``|w|``
are kept (ties: the lower index is kept), the rest are pruned. Pruned
weights are never candidates, so a weight pruned before is never revived,
and a group with at most ``N`` survivors is unchanged (the event is
idempotent). The rank is computed by pairwise comparison inside each group
(``M^2`` compares per group, no sort), so the selection is jittable with
``N`` traced: changing ``N`` does not recompile.

Gradual N:M (:func:`n_m_schedule`) lowers ``N`` one at a time from ``M``
to the target, e.g. 4:4 -> 3:4 -> 2:4, in equal intervals of the step;
calling :func:`prune_n_m` with the scheduled ``N`` at every pruning step
(between jitted phases, as :func:`prune_layerwise_to`) gives the gradual
variant of the one-shot recipe of Mishra et al. (2021), who prune a
trained dense network to 2:4 at once and retrain with the mask fixed.

SR-STE (Zhou et al., 2021) instead trains from scratch with a dense
weight ``w`` and a sparse forward weight ``\tilde w = m(w) \odot w`` whose
N:M mask is recomputed from ``|w|`` at every step; the straight-through
gradient is regularised on the pruned weights,
``w \leftarrow w - \gamma (g(\tilde w) + \lambda_w (1 - m) \odot w)``.
That needs a masked forward pass inside the model (pruned weights are
non-zero in the params by design), which breaks this package's invariant
that a pruned weight is exactly 0; it is not implemented here.

Speed: only hardware with N:M support gains anything; 2:4 on NVIDIA
Ampere and later sparse tensor cores (up to ~2x on large matmuls in the
vendor's kernels). A masked JAX model, and the CPU reference evaluator,
run N:M layers like any other sparse layer.

References:
  Mishra et al., "Accelerating Sparse Deep Neural Networks",
  arXiv:2104.08378, 2021 (NVIDIA ASP, 2:4 sparsity). Zhou et al.,
  "Learning N:M Fine-grained Structured Sparse Neural Networks From
  Scratch", ICLR 2021 (SR-STE).
"""

from collections.abc import Callable
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsity import _magnitude
from sparsity import _masks
from sparsity._nm_patterns import axis_of
from sparsity._nm_patterns import check_n_m
from sparsity._nm_patterns import group_counts
from sparsity._nm_patterns import groupable
from sparsity._nm_patterns import INPUT_AXIS
from sparsity._nm_patterns import is_n_m
from sparsity._nm_patterns import n_m_patterns

# Re-exported (defined in _nm_patterns, which summarize uses).
__all__ = ["INPUT_AXIS", "is_n_m", "keep_n_of_m", "n_m_patterns",
           "n_m_report", "n_m_schedule", "prune_n_m"]

PyTree = Any
Mask = Any

def _grouped(x: jax.Array, m: int, axis: int) -> jax.Array:
  """``x`` with ``axis`` moved last and split into ``(groups, m)``."""
  x = jnp.moveaxis(x, axis, -1)
  return x.reshape(x.shape[:-1] + (x.shape[-1] // m, m))


def _ungrouped(x: jax.Array, axis: int) -> jax.Array:
  x = x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))
  return jnp.moveaxis(x, -1, axis)


@functools.partial(jax.jit, static_argnames=("m", "axis", "absolute"))
def _keep_n_of_m(scores, alive, n, *, m, axis, absolute=False):
  alive = alive.astype(jnp.bool_)
  if absolute:
    scores = jnp.abs(scores.astype(jnp.float32))
  # uint32 keys in the float order (NaN largest), as in magnitude pruning.
  order_key = _magnitude._order_key  # pylint: disable=protected-access
  key = _grouped(order_key(scores), m, axis)
  live = _grouped(alive, m, axis)
  ki, kj = key[..., :, None], key[..., None, :]
  idx = jnp.arange(m)
  before = idx[None, :] < idx[:, None]  # [i, j]: j comes before i
  beats = live[..., None, :] & ((kj > ki) | ((kj == ki) & before))
  rank = jnp.sum(beats, axis=-1, dtype=jnp.int32)
  keep = live & (rank < jnp.asarray(n, jnp.int32))
  return _ungrouped(keep, axis)


def keep_n_of_m(scores: jax.Array, alive: jax.Array, n: int | jax.Array,
                m: int, axis: int = INPUT_AXIS) -> jax.Array:
  """Keeps the ``n`` largest surviving scores of every ``m``-group.

  The jittable selection behind :func:`prune_n_m` (``scores = |w|``):
  groups are ``m`` consecutive entries along ``axis``; in each, the
  surviving (``alive``) entries are ranked by score, largest first, ties
  by lower index first, and those of rank ``< n`` are kept. Dead entries
  stay dead. NaN scores count as larger than any number. ``n`` may be a
  traced integer (no recompilation when it changes); ``m`` and ``axis``
  are static.

  Args:
    scores: float array (compared as float32).
    alive: bool array of the same shape, the current mask.
    n: how many to keep per group (at most; fewer where fewer survive).
    m: the group size; ``scores.shape[axis]`` must be a multiple of it.
    axis: the grouped axis (default ``-2``, a kernel's input axis).

  Returns:
    The new bool mask, ``alive`` with at most ``n`` True per group.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> s = jnp.array([[0.1], [0.4], [0.3], [0.2]])
    >>> alive = jnp.array([[True], [True], [False], [True]])
    >>> sparsity.keep_n_of_m(s, alive, 2, 4)[:, 0].tolist()
    [False, True, False, True]
  """
  shape = tuple(np.shape(scores))
  ax = axis_of(shape, axis)
  if ax is None:
    raise ValueError(f"axis {axis} out of range for shape {shape}")
  if shape[ax] % int(m):
    raise ValueError(f"axis {axis} of shape {shape} has size {shape[ax]}, "
                     f"not divisible by m={m}")
  return _keep_n_of_m(scores, alive, jnp.asarray(n, jnp.int32), m=int(m),
                      axis=ax)


def prune_n_m(params: PyTree, mask: Mask, n: int = 2, m: int = 4, *,
              axis: int = INPUT_AXIS,
              include: Callable[[str], bool] | None = None) -> Mask:
  """One-shot magnitude N:M pruning: at most ``n`` of every ``m`` inputs.

  In every group of ``m`` consecutive weights along the input axis of
  each kernel (see the module docstring), keeps the ``n`` surviving
  weights of largest ``|w|`` (ties: lower index kept) and prunes the rest:

  .. math::
     m'_i = m_i \\wedge [\\, \\#\\{ j \\in G(i) : m_j \\wedge
            (|w_j|, -j) > (|w_i|, -i) \\} < n \\,]

  Never revives a pruned weight; a group with at most ``n`` survivors is
  unchanged, so calling it again is a no-op, and calling it with a
  smaller ``n`` (gradual N:M, :func:`n_m_schedule`) prunes further. Masked
  leaves with fewer than 2 dimensions (filter or gate masks) are left as
  they are. Zero the pruned weights afterwards with
  :func:`apply_mask`; :func:`masked` then keeps them and their optimizer
  moments at 0.

  Args:
    params: the parameter pytree.
    mask: its current mask.
    n: weights kept per group, ``1 <= n <= m`` (default 2).
    m: group size (default 4: NVIDIA's 2:4).
    axis: the grouped axis of every kernel (default ``-2``: the input
      features of a Dense kernel, the input channels of a Conv kernel).
    include: ``include(leaf_name) -> bool`` choosing the leaves to prune
      (e.g. to spare a first conv with 3 input channels, or a depthwise
      conv); ``None`` means every masked leaf with at least 2 dimensions.

  Returns:
    The new mask.

  Raises:
    ValueError: ``n`` or ``m`` out of range; an included leaf whose axis
      size is not a multiple of ``m`` (the message names the leaf); no
      leaf to prune.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> w = jnp.array([[0.1, 4.], [-0.5, 3.], [0.2, 2.], [0.4, 1.]])
    >>> p = {"Dense_0": {"kernel": w, "bias": jnp.zeros(2)}}
    >>> m = sparsity.prune_n_m(p, sparsity.create_mask(p), n=2, m=4)
    >>> m["Dense_0"]["kernel"].astype(int).tolist()
    [[0, 1], [1, 1], [0, 0], [1, 0]]

  References:
    Mishra et al., "Accelerating Sparse Deep Neural Networks",
    arXiv:2104.08378, 2021 (2:4 magnitude pruning, NVIDIA ASP).
  """
  n, m = check_n_m(n, m)
  new = {}
  for i, (name, mk, w) in enumerate(_masks.masked_leaves(mask, params)):
    shape = tuple(np.shape(mk))
    if len(shape) < 2 or (include is not None and not include(name)):
      continue
    ax = axis_of(shape, axis)
    if ax is None:
      raise ValueError(f"{name}: axis {axis} out of range for shape {shape}")
    if shape[ax] % m:
      raise ValueError(f"{name}: input axis {axis} has size {shape[ax]}, not "
                       f"divisible by m={m} (shape {shape}); leave it out "
                       "with include=")
    if tuple(np.shape(w)) != shape:
      raise ValueError(f"{name}: mask shape {shape} != weight shape "
                       f"{tuple(np.shape(w))}")
    new[i] = _keep_n_of_m(w, mk, np.int32(n), m=m, axis=ax, absolute=True)
  if not new:
    raise ValueError("prune_n_m: no masked leaf with >= 2 dimensions to "
                     "prune (check the mask and include=)")
  return _magnitude._replace(mask, new)  # pylint: disable=protected-access


def n_m_schedule(step: Any, *, n: int, m: int, begin: int, end: int) -> Any:
  """The ``N`` of gradual N:M pruning at ``step``: from ``m`` down to ``n``.

  ``N`` drops by one in ``m - n`` equal intervals of ``[begin, end]``:

  .. math::
     N_t = M - \\left\\lfloor (M - N) \\frac{t - t_0}{t_1 - t_0}
           \\right\\rfloor \\quad (t \\text{ clipped to } [t_0, t_1]),

  so ``N_t = M`` (dense, e.g. 4:4) up to ``begin``, then ``M - 1``, ...,
  and the target ``n`` from ``end`` on. With 2:4 over ``[0, 100]``: 4:4
  before step 50, 3:4 from 50, 2:4 from 100. When ``end == begin`` the
  schedule jumps to ``n`` at ``begin`` (one-shot). Prune with
  ``prune_n_m(params, mask, n=n_m_schedule(t, ...), m=m)`` at the steps
  of :func:`prune_steps` (the event is idempotent, so extra calls between
  drops change nothing).

  Args:
    step: the current step: a Python int, or a JAX/NumPy integer array
      (then the result is an int32 array, usable inside ``jit``).
    n: target ``N`` (``1 <= n <= m``).
    m: group size ``M``.
    begin: step ``t_0`` at which the schedule starts (``N = M``).
    end: step ``t_1`` from which ``N = n``.

  Returns:
    ``N_t``: a Python int for a Python step, else an int32 array.

  Example:
    >>> import sparsity
    >>> [sparsity.n_m_schedule(t, n=2, m=4, begin=0, end=100)
    ...  for t in (0, 49, 50, 99, 100, 200)]
    [4, 4, 3, 3, 2, 2]

  References:
    Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural
    Networks From Scratch", ICLR 2021. Zhu & Gupta, arXiv:1710.01878,
    2017 (gradual pruning over a step interval).
  """
  n, m = check_n_m(n, m)
  begin, end = int(begin), int(end)
  if end < begin:
    raise ValueError(f"end ({end}) must be >= begin ({begin})")
  span, drops = end - begin, m - n
  if isinstance(step, (jnp.ndarray, np.ndarray, np.generic)):
    t = jnp.asarray(step, jnp.int32)
    if span == 0:
      return jnp.where(t >= begin, jnp.int32(n), jnp.int32(m))
    done = (drops * (jnp.clip(t, begin, end) - begin)) // span
    return (m - done).astype(jnp.int32)
  step = int(step)
  if span == 0:
    return n if step >= begin else m
  return m - (drops * (min(max(step, begin), end) - begin)) // span


def n_m_report(mask: Mask, n: int = 2, m: int = 4,
               axis: int = INPUT_AXIS) -> list[dict[str, Any]]:
  """Per masked leaf: is it N:M, and how far from it.

  Args:
    mask: a mask.
    n: the most kept weights allowed per group.
    m: the group size.
    axis: the grouped axis (default ``-2``, the input axis).

  Returns:
    One dict per masked leaf, in flattening order: ``{"name", "groups"``
    (number of ``m``-groups, 0 when the axis is not a multiple of ``m`` or
    the leaf has fewer than 2 dimensions), ``"max_kept"`` (most kept in a
    group, None without groups), ``"over"`` (groups keeping more than
    ``n``), ``"n_m"`` (True when every group keeps at most ``n``)``}``.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> mask = {"Dense_0": {"kernel": jnp.array([[1], [0], [1], [1]], bool),
    ...                     "bias": None}}
    >>> sparsity.n_m_report(mask, 2, 4)
    [{'name': 'Dense_0/kernel', 'groups': 1, 'max_kept': 3, 'over': 1,
      'n_m': False}]
  """
  n, m = check_n_m(n, m)
  named = _masks.masked_leaves(mask)
  host = jax.device_get([leaf if groupable(leaf, (m,), axis) else None
                         for _, leaf in named])
  rows = []
  for (name, _), leaf in zip(named, host):
    counts = None if leaf is None else group_counts(leaf, m, axis)
    if counts is None or not counts.size:
      rows.append({"name": name, "groups": 0, "max_kept": None, "over": 0,
                   "n_m": False})
    else:
      over = int(np.sum(counts > n))
      rows.append({"name": name, "groups": int(counts.size),
                   "max_kept": int(counts.max()), "over": over,
                   "n_m": over == 0})
  return rows
