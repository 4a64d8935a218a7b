"""Exact-k magnitude pruning (layer-wise and global) and the random control.

Every function returns a new mask and never revives a pruned weight: only
surviving weights are candidates, and the new mask is the old one with
exactly ``k`` more entries set to ``False``.

Selection is exact and deterministic without a sort. The scores are mapped
to ``uint32`` keys whose integer order is the float order (for ``|w| >= 0``
the key is the float32 bit pattern with the top bit set); the k-th smallest
surviving key ``t`` is found by bisection on the key between the smallest
and largest surviving keys (at most 32 counting passes over the leaf, each
a fused compare-and-sum); every survivor with key ``< t`` is removed, and of
those equal to ``t`` the ones with the lowest flat index are removed until
exactly ``k`` are gone (a two-level prefix count, run only when there is a
tie at the threshold). One update of a 1M-weight leaf takes about 5-8 ms on
a 2-core CPU (``python -m bench.topk_mask_update``); a full sort takes ~40.

Counts follow the project's convention (DESIGN.md):
``k = round(rate * alive)`` weights are removed per group, with Python's
``round`` (halves to even) computed on the host in float64. This differs by
one or two from the reference codes: the original LTH code prunes
``|w| <= sorted[round(p n)]`` (``round(p n) + 1`` weights plus ties); open_lth
(``pruning/sparse_global.py``) takes ``threshold = sort(|w|)[ceil(p n)]`` over
the survivors and prunes every survivor with ``|w| <= threshold``, i.e.
``ceil(p n) + 1`` weights plus any tied with the threshold (one more than
ours when ``p n`` is whole or rounds up, two when it rounds down), and its
``n`` counts the survivors of every prunable tensor, those in
``pruning_layers_to_ignore`` included. open_lth has no layer-wise strategy.
Pinned by ``tests/reference/test_ref_open_lth.py``.
"""

from collections.abc import Callable, Mapping
import functools
from typing import Any, Union

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from sparsity import _masks

PyTree = Any
Mask = Any
Rates = Union[float, Mapping[str, float], Callable[[str], float]]

_DEAD = 0xFFFFFFFF   # key of a non-candidate (already pruned) entry
_NAN = 0xFFFFFFFE    # key of a NaN score: larger than every number


# ---------------------------------------------------------------------------
# Exact selection on uint32 keys
# ---------------------------------------------------------------------------

def _order_key(scores: jax.Array) -> jax.Array:
  """uint32 keys with the order of the float32 scores (NaN largest)."""
  s = scores.astype(jnp.float32)
  bits = lax.bitcast_convert_type(s, jnp.uint32)
  negative = (bits >> 31) == 1
  key = jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))
  return jnp.where(jnp.isnan(s), jnp.uint32(_NAN), key)


def _remove_k_smallest_keys(keyed: jax.Array, k: jax.Array) -> jax.Array:
  """Flat bool: the ``k`` smallest entries of ``keyed`` (ties: low index).

  Entries equal to ``_DEAD`` are never selected; the caller guarantees that
  ``k`` is at most the number of other entries.
  """
  k = jnp.asarray(k, jnp.int32)
  candidate = keyed != jnp.uint32(_DEAD)
  lo = jnp.min(keyed)
  hi = jnp.max(jnp.where(candidate, keyed, jnp.uint32(0)))

  def cond(bounds):
    lo, hi = bounds
    return lo < hi

  def body(bounds):
    # Invariant: count(keyed <= hi) >= k > count(keyed < lo).
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(keyed <= mid, dtype=jnp.int32) >= k
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  threshold, _ = lax.while_loop(cond, body, (jnp.minimum(lo, hi), hi))
  below = keyed < threshold
  at = keyed == threshold
  still = k - jnp.sum(below, dtype=jnp.int32)
  n_at = jnp.sum(at, dtype=jnp.int32)
  at_removed = lax.cond(n_at == still, lambda: at,
                        lambda: _first_true(at, still))
  return (below | at_removed) & (k > 0)


def _first_true(flags: jax.Array, r: jax.Array, block: int = 1024
                ) -> jax.Array:
  """The first ``r`` True entries of the flat bool ``flags`` (by index).

  Two-level prefix count instead of a full cumulative sum (which is slow on
  CPU): count per block of ``block`` entries, find the block holding the
  r-th True, and count within that block only.
  """
  n = flags.shape[0]
  rows = -(-n // block)
  padded = jnp.pad(flags, (0, rows * block - n)).reshape(rows, block)
  per_row = jnp.sum(padded, axis=1, dtype=jnp.int32)
  prefix = jnp.cumsum(per_row)
  row = jnp.minimum(jnp.sum(prefix < r, dtype=jnp.int32), rows - 1)
  before = prefix[row] - per_row[row]
  in_row = jnp.cumsum(lax.dynamic_index_in_dim(padded, row, keepdims=False),
                      dtype=jnp.int32)
  col = jnp.sum(in_row < r - before, dtype=jnp.int32)
  last = row * block + col  # flat index of the r-th True
  return flags & (jnp.arange(n, dtype=jnp.int32) <= last) & (r > 0)


def _keyed(scores: jax.Array, alive: jax.Array) -> jax.Array:
  return jnp.where(alive.ravel(), _order_key(scores.ravel()),
                   jnp.uint32(_DEAD))


@jax.jit
def _remove_smallest(scores: jax.Array, alive: jax.Array,
                     k: jax.Array) -> jax.Array:
  alive = alive.astype(jnp.bool_)
  k = jnp.clip(jnp.asarray(k, jnp.int32), 0, jnp.sum(alive, dtype=jnp.int32))
  removed = _remove_k_smallest_keys(_keyed(scores, alive), k)
  return alive & ~removed.reshape(alive.shape)


def remove_smallest(scores: jax.Array, alive: jax.Array,
                    k: int | jax.Array) -> jax.Array:
  """Removes exactly the ``k`` surviving entries with the smallest scores.

  .. math::
     m'_i = m_i \\wedge \\neg [\\, i \\in \\operatorname{argsmallest}_k
            \\{ s_j : m_j \\} \\,]

  Ties are broken by a stable order: among equal scores the entry with the
  lower flat (row-major) index is removed first, so the result is
  deterministic. NaN scores count as larger than any number. ``k`` is
  clipped to ``[0, alive.sum()]``.

  This is the jittable building block of the pruning functions (``k`` may
  be a traced integer, so changing it does not recompile). It makes at
  most 32 O(n) counting passes and no sort (see the module docstring).

  Args:
    scores: float array (any float dtype; compared as float32).
    alive: bool array of the same shape, the current mask. Dead entries are
      never candidates.
    k: number of entries to remove.

  Returns:
    The new bool mask, ``alive`` with exactly ``min(k, alive.sum())`` more
    entries set to False.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> s = jnp.array([0.3, 0.1, 0.2, 0.1])
    >>> alive = jnp.array([True, True, False, True])
    >>> sparsity.remove_smallest(s, alive, 2).tolist()
    [True, False, False, False]
  """
  return _remove_smallest(scores, alive, k)


@jax.jit
def _remove_smallest_abs(w, alive, k):
  """Like ``_remove_smallest(|w|, alive, k)`` for 0 <= k <= alive.sum()."""
  alive = alive.astype(jnp.bool_)
  removed = _remove_k_smallest_keys(
      _keyed(jnp.abs(w.astype(jnp.float32)), alive), k)
  return alive & ~removed.reshape(alive.shape)


@jax.jit
def _remove_smallest_abs_global(ws, alives, k):
  """One selection over the concatenation of several leaves."""
  keyed = jnp.concatenate([_keyed(jnp.abs(w.astype(jnp.float32)), a)
                           for w, a in zip(ws, alives)])
  n_alive = jnp.sum(keyed != jnp.uint32(_DEAD), dtype=jnp.int32)
  k = jnp.clip(jnp.asarray(k, jnp.int32), 0, n_alive)
  removed = _remove_k_smallest_keys(keyed, k)
  out, start = [], 0
  for a in alives:
    part = removed[start:start + a.size].reshape(a.shape)
    out.append(a & ~part)
    start += a.size
  return out


# ---------------------------------------------------------------------------
# Rates and counts (host side: exact integer arithmetic)
# ---------------------------------------------------------------------------

def _check_fraction(value: float, what: str) -> float:
  value = float(value)
  if not 0.0 <= value <= 1.0:
    raise ValueError(f"{what} must be in [0, 1], got {value!r}")
  return value


def resolve_rate(rates: Rates, name: str) -> float:
  """The rate that ``rates`` gives the leaf called ``name``.

  ``rates`` is one of:

  * a float: the same rate for every leaf;
  * a mapping from a leaf name (``"Dense_2/kernel"``) or a layer-name prefix
    (``"Dense_2"``, ``"block1"``) to a rate. An exact leaf name wins, then
    the longest prefix that matches whole path components (``"Dense_2"``
    matches ``"Dense_2/kernel"`` but not ``"Dense_20/kernel"``), then the
    key ``"default"``. A leaf matched by nothing is an error (``KeyError``);
    add ``"default": 0.0`` to leave unlisted leaves alone;
  * a callable ``name -> rate``.

  Args:
    rates: as above.
    name: a leaf name, ``"/"``-joined path.

  Returns:
    The rate, a Python float.

  Example:
    >>> import sparsity
    >>> rates = {"Dense_2": 0.1, "default": 0.2}
    >>> sparsity.resolve_rate(rates, "Dense_2/kernel")
    0.1
    >>> sparsity.resolve_rate(rates, "Dense_20/kernel")
    0.2
  """
  if callable(rates):
    return float(rates(name))
  if not isinstance(rates, Mapping):
    return float(rates)
  if name in rates:
    return float(rates[name])
  parts = name.split("/")
  for i in range(len(parts) - 1, 0, -1):
    prefix = "/".join(parts[:i])
    if prefix in rates:
      return float(rates[prefix])
  if "default" in rates:
    return float(rates["default"])
  raise KeyError(f"no rate for leaf {name!r} in {dict(rates)!r} (add a "
                 "'default' entry)")


def _alive_counts(leaves: list[jax.Array]) -> list[int]:
  sums = jax.device_get([jnp.sum(m, dtype=jnp.int32) for m in leaves])
  return [int(s) for s in sums]


def _k_for_rate(rate: float, alive: int) -> int:
  return int(round(rate * alive))


def _k_for_sparsity(sparsity: float, size: int, alive: int) -> int:
  remaining = int(round((1.0 - sparsity) * size))
  return max(0, alive - remaining)


def _layerwise(params: PyTree, mask: Mask, k_of: Callable) -> Mask:
  named = _masks.masked_leaves(mask, params)
  alive = _alive_counts([m for _, m, _ in named])
  new = {}
  for i, ((name, m, w), n_alive) in enumerate(zip(named, alive)):
    k = k_of(name, int(np.size(m)), n_alive)
    if k > 0:
      new[i] = _remove_smallest_abs(w, m, np.int32(k))
  return _replace(mask, new)


def _replace(mask: Mask, new: dict[int, jax.Array]) -> Mask:
  """``mask`` with its i-th masked leaf (flattening order) set to new[i]."""
  leaves, treedef = jax.tree_util.tree_flatten(mask, is_leaf=_masks.is_none)
  out, i = [], 0
  for m in leaves:
    if m is not None:
      m = new.get(i, m)
      i += 1
    out.append(m)
  return jax.tree_util.tree_unflatten(treedef, out)


def _global(params: PyTree, mask: Mask, include, k_of: Callable) -> Mask:
  named = [(i, n, m, w)
           for i, (n, m, w) in enumerate(_masks.masked_leaves(mask, params))
           if include is None or include(n)]
  if not named:
    return mask
  alive = sum(_alive_counts([m for _, _, m, _ in named]))
  size = sum(int(np.size(m)) for _, _, m, _ in named)
  k = k_of(size, alive)
  if k <= 0:
    return mask
  out = _remove_smallest_abs_global([w for _, _, _, w in named],
                                    [m for _, _, m, _ in named], np.int32(k))
  return _replace(mask, {i: m for (i, _, _, _), m in zip(named, out)})


# ---------------------------------------------------------------------------
# Public pruning functions
# ---------------------------------------------------------------------------

def prune_layerwise(params: PyTree, mask: Mask, rates: Rates) -> Mask:
  """Magnitude pruning of a fraction of the SURVIVING weights of each leaf.

  For every masked leaf with ``n`` surviving weights and rate ``p``, remove
  the ``k = round(p * n)`` survivors with the smallest ``|w|``:

  .. math::
     m' = m \\wedge \\neg\\, \\mathrm{smallest}_k(|w| \\text{ over } m)

  Ties are broken by flat index (lower first), so masks are deterministic.
  After ``L`` rounds at rate ``p`` a fraction ``(1 - p)^L`` remains.

  Args:
    params: the parameter pytree.
    mask: its current mask (``None`` leaves are not pruned).
    rates: a float, a mapping ``{leaf name or layer prefix: rate}`` with an
      optional ``"default"`` key, or a callable ``name -> rate``; see
      :func:`resolve_rate`. Each rate is in [0, 1].

  Returns:
    The new mask (the old one with exactly k more False per leaf).

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> p = {"Dense_0": {"kernel": jnp.array([[0.5, -0.1], [0.3, 0.2]])}}
    >>> m = sparsity.create_mask(p)
    >>> sparsity.prune_layerwise(p, m, 0.5)["Dense_0"]["kernel"].tolist()
    [[True, False], [True, False]]

  References:
    Han et al., "Learning both Weights and Connections for Efficient Neural
    Networks", NeurIPS 2015. Frankle & Carbin, "The Lottery Ticket
    Hypothesis", ICLR 2019.
  """
  def k_of(name, size, alive):
    del size  # unused
    rate = _check_fraction(resolve_rate(rates, name), f"rate of {name}")
    return _k_for_rate(rate, alive)
  return _layerwise(params, mask, k_of)


def prune_layerwise_to(params: PyTree, mask: Mask, sparsities: Rates) -> Mask:
  """Magnitude pruning of each leaf to a target sparsity of the whole leaf.

  A leaf of ``size`` weights at target sparsity ``s`` keeps
  ``round((1 - s) * size)`` weights: the ``k = alive - round((1 - s) size)``
  smallest surviving ``|w|`` are removed (ties by flat index). A leaf that is
  already at least that sparse is unchanged, so calling it again with the
  same target is a no-op (events are idempotent). This is the step of
  gradual pruning schedules (:func:`polynomial_sparsity`).

  Args:
    params: the parameter pytree.
    mask: its current mask.
    sparsities: a float, a mapping ``{leaf name or layer prefix: sparsity}``
      with an optional ``"default"`` key, or a callable; see
      :func:`resolve_rate`. Each sparsity is in [0, 1].

  Returns:
    The new mask.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> p = {"Dense_0": {"kernel": jnp.array([[0.5, -0.1], [0.3, 0.2]])}}
    >>> m = sparsity.prune_layerwise_to(p, sparsity.create_mask(p), 0.75)
    >>> m["Dense_0"]["kernel"].tolist()
    [[True, False], [False, False]]

  References:
    Zhu & Gupta, "To prune, or not to prune", arXiv:1710.01878, 2017.
  """
  def k_of(name, size, alive):
    s = _check_fraction(resolve_rate(sparsities, name), f"sparsity of {name}")
    return _k_for_sparsity(s, size, alive)
  return _layerwise(params, mask, k_of)


def prune_global(params: PyTree, mask: Mask, rate: float,
                 include: Callable[[str], bool] | None = None) -> Mask:
  """Magnitude pruning with one threshold over several leaves.

  Removes the ``k = round(rate * n)`` smallest ``|w|`` among the ``n``
  surviving weights of all included leaves taken together, so layers with
  small weights lose more. Ties are broken by leaf order (flattening order,
  see :func:`summarize`), then flat index.

  Args:
    params: the parameter pytree.
    mask: its current mask.
    rate: fraction of the surviving included weights to remove, in [0, 1].
    include: ``include(leaf_name) -> bool`` choosing the leaves that take
      part (e.g. ``lambda n: not n.startswith("Dense_2")`` to spare the
      output layer); ``None`` means every masked leaf. Other leaves keep
      their mask.

  Returns:
    The new mask.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> p = {"a": {"kernel": jnp.array([[0.1, 0.4]])},
    ...      "b": {"kernel": jnp.array([[0.2, 0.3]])}}
    >>> m = sparsity.prune_global(p, sparsity.create_mask(p), 0.5)
    >>> m["a"]["kernel"].tolist(), m["b"]["kernel"].tolist()
    ([[False, True]], [[False, True]])

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (global
    pruning for VGG-19 and ResNet-18).
  """
  rate = _check_fraction(rate, "rate")
  return _global(params, mask, include,
                 lambda size, alive: _k_for_rate(rate, alive))


def prune_global_to(params: PyTree, mask: Mask, sparsity: float,
                    include: Callable[[str], bool] | None = None) -> Mask:
  """Global magnitude pruning to a target sparsity of the included leaves.

  The included leaves, of total size ``N``, keep ``round((1 - s) * N)``
  weights; the ``k`` smallest surviving ``|w|`` over all of them are removed
  (ties by leaf order, then flat index). Unchanged if already that sparse.

  Args:
    params: the parameter pytree.
    mask: its current mask.
    sparsity: target fraction of pruned weights over the included leaves,
      in [0, 1].
    include: ``include(leaf_name) -> bool``, or ``None`` for every masked
      leaf.

  Returns:
    The new mask.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> p = {"a": {"kernel": jnp.array([[0.1, 0.4]])},
    ...      "b": {"kernel": jnp.array([[0.2, 0.3]])}}
    >>> m = sparsity.prune_global_to(p, sparsity.create_mask(p), 0.75)
    >>> m["a"]["kernel"].tolist(), m["b"]["kernel"].tolist()
    ([[False, True]], [[False, False]])
  """
  sparsity = _check_fraction(sparsity, "sparsity")
  return _global(params, mask, include,
                 lambda size, alive: _k_for_sparsity(sparsity, size, alive))


def random_mask_like(key: jax.Array, mask: Mask) -> Mask:
  """A random mask with the same number of survivors in every leaf.

  The random-pruning control of the lottery-ticket experiments: each masked
  leaf keeps exactly as many weights as in ``mask``, at uniformly random
  positions (any position, pruned or not in ``mask``). Leaf ``i`` (in
  flattening order) uses ``jax.random.fold_in(key, i)``.

  Args:
    key: a JAX PRNG key.
    mask: the mask whose per-leaf counts are copied.

  Returns:
    A new mask with the same structure and per-leaf remaining counts.

  Example:
    >>> import jax, jax.numpy as jnp, sparsity
    >>> m = {"k": jnp.array([True, False, False, True]), "b": None}
    >>> r = sparsity.random_mask_like(jax.random.key(0), m)
    >>> int(r["k"].sum()), r["b"]
    (2, None)

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (random
    pruning control).
  """
  named = _masks.masked_leaves(mask)
  alive = _alive_counts([m for _, m in named])
  new = {}
  for i, ((_, m), n_alive) in enumerate(zip(named, alive)):
    new[i] = _random_keep(jax.random.fold_in(key, i), m.shape,
                             np.int32(np.size(m) - n_alive))
  return _replace(mask, new)


@functools.partial(jax.jit, static_argnums=1)
def _random_keep(key, shape, k):
  keyed = jax.random.bits(key, (int(np.prod(shape)),), jnp.uint32) >> 1
  removed = _remove_k_smallest_keys(keyed, k)
  return ~removed.reshape(shape)
