r"""Gradient-count sparsity: counts of significant gradients drive pruning.

**Provenance.** Khan, Naqvi, Robles-Kelly and Meijering, "Learning a
Sparse and Redundancy-Reduced Network via Gradient Counting" (arXiv
2210.07451, ICONIP 2022). Only the paper's abstract was available to us
and no code exists: the abstract fixes a training scheme of composite
constraints that prunes redundant filters and promotes sparsity by
*counting gradients* instead of L1/L0 penalties. Everything below is the
project's documented reading of that abstract (METHODS.md section 3.1,
tagged [D]), not the paper's algorithm; the names, thresholds and the
schedule are ours.

Per step (the transform :func:`count_gradients`, chained before the
optimizer), for every prunable leaf l (a Dense/Conv kernel) with gradient
g, mask m and count c:

.. math::
   \tau_l = \epsilon \sqrt{\textstyle\sum_i m_i g_i^2 / \sum_i m_i},
   \qquad c_i \leftarrow m_i \, (c_i + [\,|g_i| > \tau_l\,])

(a scale-free per-layer threshold: a fraction ``eps`` of the layer's RMS
gradient over its kept weights; a pruned weight's count is 0).

Events, plain functions between jitted steps, every window of ``W``
counted steps (``activity = count / W`` in [0, 1]):

* :func:`count_weighted_shrink`: the proximal step of a count-weighted L1
  penalty, :math:`w \leftarrow \mathrm{sign}(w)\max(|w| - \lambda (1 -
  a), 0)` on kept weights; a weight that rarely receives a significant
  gradient is pulled to 0, an active one is left alone (L1's uniform
  shrinkage is the special case a = 0, :func:`shrink`). The soft threshold
  (rather than the literal ``w - lam (1 - a) sign(w)``) never moves a
  weight past 0.
* :func:`prune_inactive`: removes kept weights whose activity is below
  ``rho``, the smallest :math:`|w|` first, at most
  ``round(budget * alive)`` per layer and event (the "per-step budget").
* :func:`redundant_filters`: per layer, drops filters whose redundancy
  score (max |cosine| with another kept filter, or RePr's mean |cosine|)
  exceeds ``s_max``, greedily (the worst first, scores recomputed after
  each drop, so of two near-duplicates only one goes), at most ``budget``
  of the kept filters per event and never below ``min_keep``; the filter
  masks become a weight mask with ``sparsity.expand_filter_masks``.

The composite schedule (dense warm-up, joint count/shrink/prune/redundancy
phase, masked fine-tune) is :func:`composite_schedule`.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsity import _filters
from sparsity import _magnitude
from sparsity import _masks

PyTree = Any
Mask = Any


class GradCountState(NamedTuple):
  """State of :func:`count_gradients`.

  Attributes:
    count: int32 per prunable leaf (``None`` elsewhere): significant
      gradients since the last :func:`reset_counts`; 0 at pruned positions.
    steps: int32 scalar, steps counted since the last reset.
  """
  count: PyTree
  steps: jax.Array


def _prunable_like(params: PyTree) -> PyTree:
  """int32 zeros on Dense/Conv kernels, None elsewhere."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = [jnp.zeros(jnp.shape(x), jnp.int32)
         if _masks.default_prunable(_masks.path_tuple(p), x) else None
         for p, x in flat]
  return jax.tree_util.tree_unflatten(treedef, out)


def count_gradients(eps: float = 0.3
                    ) -> optax.GradientTransformationExtraArgs:
  """Counts, per kernel weight, the steps with a significant gradient.

  Identity on the updates; the counts are the state (see the module
  docstring for the threshold). Chain it *before* the optimizer so it sees
  the raw gradients: ``optax.chain(count_gradients(eps),
  sparsity.masked(inner))``. The mask is the keyword ``mask`` of
  ``update`` (optional: ``None`` counts every weight); mask leaves that are
  ``None`` or absent count every weight of the leaf.

  Args:
    eps: the threshold as a fraction of the layer's RMS gradient (> 0).

  Returns:
    A ``GradientTransformationExtraArgs`` with state :class:`GradCountState`.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> params = {"Dense_0": {"kernel": jnp.zeros((1, 3))}}
    >>> tx = sparsity.count_gradients(eps=0.5)
    >>> s = tx.init(params)
    >>> g = {"Dense_0": {"kernel": jnp.array([[1., 0.1, -2.]])}}
    >>> _, s = tx.update(g, s, params)
    >>> s.count["Dense_0"]["kernel"].tolist(), int(s.steps)
    ([[1, 0, 1]], 1)

  References:
    Khan et al., arXiv 2210.07451 (abstract only; this is our reading).
  """
  if not eps > 0:
    raise ValueError(f"eps must be > 0, got {eps!r}")

  def init_fn(params):
    return GradCountState(count=_prunable_like(params),
                          steps=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, *, mask=None, **extra_args):
    del params, extra_args  # unused
    mask_tree = (jax.tree.map(lambda c: None, state.count,
                              is_leaf=_masks.is_none)
                 if mask is None else mask)

    def one(c, g, m):
      if c is None:
        return None
      keep = (jnp.ones(c.shape, jnp.bool_) if m is None
              else jnp.asarray(m, jnp.bool_))
      g = g.astype(jnp.float32)
      n = jnp.maximum(jnp.sum(keep, dtype=jnp.float32), 1.0)
      tau = eps * jnp.sqrt(jnp.sum(jnp.where(keep, g * g, 0.0)) / n)
      hit = (jnp.abs(g) > tau) & keep
      return jnp.where(keep, c + hit.astype(jnp.int32), 0)

    count = jax.tree.map(one, state.count, updates, mask_tree,
                         is_leaf=_masks.is_none)
    return updates, GradCountState(count=count, steps=state.steps + 1)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ------------------------------------------------- state inside a chain ----
def _is_gc(x) -> bool:
  return isinstance(x, GradCountState)


def find_count_state(opt_state: Any) -> GradCountState:
  """The (first) :class:`GradCountState` inside an optimizer state."""
  for leaf in jax.tree.leaves(opt_state, is_leaf=_is_gc):
    if _is_gc(leaf):
      return leaf
  raise ValueError("no GradCountState in this optimizer state; chain "
                   "sparsity.count_gradients() into the optimizer")


def reset_counts(opt_state: Any) -> Any:
  """``opt_state`` with every :class:`GradCountState` zeroed (new window)."""
  def one(x):
    if not _is_gc(x):
      return x
    return GradCountState(
        count=jax.tree.map(jnp.zeros_like, x.count),
        steps=jnp.zeros_like(x.steps))
  return jax.tree.map(one, opt_state, is_leaf=_is_gc)


def activity(state: GradCountState) -> PyTree:
  """count / steps in [0, 1] per counted weight (0 before any step)."""
  steps = jnp.maximum(state.steps, 1).astype(jnp.float32)
  return jax.tree.map(lambda c: None if c is None else c / steps,
                      state.count, is_leaf=_masks.is_none)


# ------------------------------------------------------------- events ----
def _soft(w, t):
  return jnp.sign(w) * jnp.maximum(jnp.abs(w) - t, 0.0).astype(w.dtype)


def count_weighted_shrink(params: PyTree, act: PyTree, mask: Mask,
                          lam: float) -> PyTree:
  r"""Count-weighted proximal shrinkage of the kept kernel weights.

  .. math:: w \leftarrow \mathrm{sign}(w) \max(|w| - \lambda (1 - a), 0)

  on leaves where ``act`` (from :func:`activity`) is not ``None``; a pruned
  weight stays as it is (0). Other leaves are unchanged.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> p = {"k": jnp.array([[0.5, -0.5, 0.05]])}
    >>> a = {"k": jnp.array([[1.0, 0.0, 0.5]])}
    >>> m = {"k": jnp.array([[True, True, True]])}
    >>> sparsity.count_weighted_shrink(p, a, m, 0.2)["k"].tolist()
    [[0.5, -0.30000001192092896, 0.0]]
  """
  def one(w, a, m):
    if a is None:
      return w
    keep = jnp.ones(w.shape, jnp.bool_) if m is None else m
    t = lam * (1.0 - a)
    return jnp.where(keep, _soft(w, t), w)
  return jax.tree.map(one, params, act, _full(mask, params),
                      is_leaf=_masks.is_none)


def shrink(params: PyTree, mask: Mask, lam: float,
           include: Callable[[str], bool] | None = None) -> PyTree:
  r"""Uniform proximal L1 step on the kept kernel weights (the L1 control):
  :math:`w \leftarrow \mathrm{sign}(w) \max(|w| - \lambda, 0)`.

  ``include(leaf_name)`` picks the leaves (default: Dense/Conv kernels).
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  mflat = treedef.flatten_up_to(_full(mask, params))
  out = []
  for (p, w), m in zip(flat, mflat):
    name = _masks.leaf_name(p)
    ok = (include(name) if include is not None
          else _masks.default_prunable(_masks.path_tuple(p), w))
    if not ok:
      out.append(w)
      continue
    keep = jnp.ones(w.shape, jnp.bool_) if m is None else m
    out.append(jnp.where(keep, _soft(w, lam), w))
  return jax.tree_util.tree_unflatten(treedef, out)


def _full(mask: Mask, params: PyTree) -> Mask:
  if mask is None:
    return jax.tree.map(lambda _: None, params)
  return mask


def prune_inactive(params: PyTree, mask: Mask, act: PyTree, rho: float,
                   budget: float) -> Mask:
  """Removes inactive kept weights, smallest |w| first, within a budget.

  Per leaf with an activity: candidates are kept weights with activity
  ``< rho``; the ``min(#candidates, round(budget * alive))`` candidates of
  smallest ``|w|`` are removed (exact k, ties by flat index, as
  ``sparsity.remove_smallest``). Never revives a weight.

  Args:
    params: the params.
    mask: the mask (its leaves where ``act`` is not ``None`` are updated).
    act: from :func:`activity`.
    rho: activity threshold in [0, 1].
    budget: largest fraction of a layer's kept weights removed per event.

  Returns:
    The new mask.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> p = {"k": jnp.array([[0.1, 0.2, 0.3, 0.4]])}
    >>> a = {"k": jnp.array([[0.0, 0.0, 0.0, 1.0]])}
    >>> m = {"k": jnp.array([[True, True, True, True]])}
    >>> sparsity.prune_inactive(p, m, a, rho=0.5, budget=0.5)["k"].tolist()
    [[False, False, True, True]]
  """
  def one(w, a, m):
    if a is None or m is None:
      return m
    alive = jnp.asarray(m, jnp.bool_)
    cand = alive & (a < rho)
    k = jnp.minimum(jnp.sum(cand, dtype=jnp.int32),
                    jnp.round(budget * jnp.sum(alive)).astype(jnp.int32))
    return _magnitude.remove_smallest(jnp.abs(w.astype(jnp.float32)), cand,
                                      k) | (alive & ~cand)
  return jax.tree.map(one, params, act, mask, is_leaf=_masks.is_none)


def redundant_filters(kernels: Mapping[str, Any],
                      kept: Mapping[str, Any], score_fn: Callable,
                      s_max: float, *, min_keep: int = 1,
                      budget: float = 1.0) -> dict[str, np.ndarray]:
  """New filter masks: greedily drops redundant kept filters per layer.

  For each layer: while fewer than ``round(budget * kept)`` filters were
  dropped in this call and more than ``min_keep`` remain, compute
  ``score_fn(kernel, kept)`` (C_out,) over the kept filters; if the largest
  score of a kept filter exceeds ``s_max``, drop that filter (lowest index
  on ties) and repeat. Scores are recomputed after every drop.

  Args:
    kernels: ``{layer: kernel (..., C_out)}``.
    kept: ``{layer: bool (C_out,)}``, the current filter masks.
    score_fn: ``(kernel, kept) -> (C_out,)`` redundancy scores, higher =
      more redundant (e.g. ``sparsity.max_cosine_scores``, or
      ``lambda k, kept: sparsity.orthogonality_scores(k * kept)``).
    s_max: drop threshold.
    min_keep: never keep fewer filters than this in a layer.
    budget: largest fraction of a layer's kept filters dropped per call.

  Returns:
    ``{layer: bool (C_out,)}`` NumPy filter masks (a subset of ``kept``).
  """
  out = {}
  for name, kernel in kernels.items():
    keep = np.array(kept[name], bool)
    limit = int(round(budget * keep.sum()))
    dropped = 0
    while dropped < limit and keep.sum() > min_keep:
      scores = np.asarray(score_fn(kernel, jnp.asarray(keep)), np.float64)
      scores = np.where(keep, np.nan_to_num(scores, nan=-np.inf), -np.inf)
      worst = int(np.argmax(scores))
      if not scores[worst] > s_max:
        break
      keep[worst] = False
      dropped += 1
    out[name] = keep
  return out


def filter_mask_update(params: PyTree, mask: Mask,
                       filter_masks: Mapping[str, Any],
                       groups: Mapping[str, Any] | None = None) -> Mask:
  """``mask`` with the dropped filters (kernel columns, bias, BatchNorm
  scale/shift) removed: ``sparsity.expand_filter_masks`` ANDed in."""
  return _filters.expand_filter_masks(params, filter_masks, groups, mask)


# ----------------------------------------------------------- schedule ----
class Event(NamedTuple):
  """What happens after a step of the composite schedule."""
  reset: bool        # start a new counting window (counts -> 0)
  update: bool       # shrink + prune inactive (end of a window)
  redundancy: bool   # redundant-filter removal
  last: bool         # the end of the joint phase (the mask freezes)


def composite_schedule(warmup: int, joint: int, window: int,
                       redundancy_every: int) -> dict[int, Event]:
  """{step: Event} of the composite schedule.

  Steps [0, warmup) train densely; at ``warmup`` the counts are reset; in
  the joint phase (warmup, warmup + joint] every ``window`` steps the
  window's counts drive shrinkage and pruning (and are reset), and every
  ``redundancy_every`` steps redundant filters are removed; after
  ``warmup + joint`` the mask is frozen (masked fine-tune).

  Example:
    >>> ev = composite_schedule(10, 20, 10, 20)
    >>> sorted(ev), ev[30].redundancy, ev[20].redundancy
    ([10, 20, 30], True, False)
  """
  if min(window, redundancy_every) <= 0 or warmup < 0 or joint <= 0:
    raise ValueError("window and redundancy_every must be > 0, warmup >= 0 "
                     "and joint > 0")
  end = warmup + joint
  events = {warmup: Event(True, False, False, False)}
  for s in range(warmup + window, end + 1, window):
    events[s] = Event(True, True, (s - warmup) % redundancy_every == 0,
                      s == end)
  if end not in events:
    events[end] = Event(True, True, False, True)
  return events
