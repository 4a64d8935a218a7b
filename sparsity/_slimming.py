r"""Network Slimming: L1 on BatchNorm scales, then global channel pruning.

Liu, Li, Shen, Huang, Yan, Zhang, "Learning Efficient Convolutional Networks
through Network Slimming", ICCV 2017 (released code
Eric-mingjie/network-slimming: ``main.py --sr --s``, ``vggprune.py``).

Training adds :math:`s \sum_\gamma |\gamma|` over every BatchNorm scale,
as the subgradient :math:`s\,\mathrm{sign}(\gamma)` added to
:math:`\gamma`'s gradient (:func:`bn_scale_l1`, a per-step transform).
Then the channels with the globally smallest :math:`|\gamma|` (one
ranking over all BatchNorm layers, a fraction ``p`` of all their channels)
are pruned, with the conv filter that produces them
(:func:`slimming_filter_masks`), and the pruned network is fine-tuned.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["bn_scale_l1", "is_bn_scale", "slimming_filter_masks"]


def is_bn_scale(path: tuple, leaf: Any) -> bool:
  """Default selector: 1-D leaves named ``scale`` of a ``BatchNorm*`` module."""
  names = [str(getattr(k, "key", k)) for k in path]
  return (len(names) >= 2 and names[-1] == "scale"
          and names[-2].startswith("BatchNorm") and np.ndim(leaf) == 1)


def bn_scale_l1(strength: float | Callable[[Any], Any],
                include: Callable[[tuple, Any], bool] = is_bn_scale
                ) -> optax.GradientTransformation:
  """Adds ``strength * sign(gamma)`` to the gradient of every BN scale.

  .. math:: g_\\gamma \\leftarrow g_\\gamma + s\\,\\mathrm{sign}(\\gamma)

  (the subgradient of :math:`s\\lVert\\gamma\\rVert_1`; ``sign(0) = 0``, so a
  pruned scale gets no push). Chain it before the optimizer. ``strength``
  may be a schedule of the step (e.g. 0 after the pruning step); the state
  then counts steps.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> params = {"BatchNorm_0": {"scale": jnp.array([0.5, -2., 0.])}}
    >>> tx = sparsity.bn_scale_l1(0.1)
    >>> g, _ = tx.update({"BatchNorm_0": {"scale": jnp.zeros(3)}},
    ...                  tx.init(params), params)
    >>> g["BatchNorm_0"]["scale"].tolist()
    [0.10000000149011612, -0.10000000149011612, 0.0]
  """

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("bn_scale_l1 needs the params")
    s = strength(state.count) if callable(strength) else strength

    def one(path, u, p):
      if not include(path, p):
        return u
      return u + jnp.asarray(s, u.dtype) * jnp.sign(p).astype(u.dtype)

    updates = jax.tree_util.tree_map_with_path(one, updates, params)
    return updates, optax.ScaleByScheduleState(
        count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def slimming_filter_masks(scales: Mapping[str, Any], fraction: float,
                          min_channels: int = 1) -> dict[str, np.ndarray]:
  """Global pruning of the smallest BatchNorm scales.

  All channels of all layers are ranked together by :math:`|\\gamma|`
  (ties: earlier layer, then lower channel first) and the
  :math:`k = \\lfloor p \\cdot \\sum_l C_l \\rfloor` smallest are pruned,
  except that every layer keeps at least ``min_channels`` (its largest);
  the channels so spared are not replaced by others, so fewer than k may
  be pruned (the released code has no such guard and would remove a whole
  layer; its "mask implementation" keeps the layer with zero channels).

  The released ``vggprune.py`` / ``resprune.py`` instead take ``thre =
  sort(|gamma|)[k]`` and keep ``|gamma| > thre``: they prune ``k + 1``
  channels (these k and the smallest one kept here) plus every channel tied
  with the threshold (pinned by ``tests/reference/test_ref_slimming.py``).

  Args:
    scales: ``{conv layer name: (C,) gamma of the BatchNorm after it}``, in
      layer order.
    fraction: p, in [0, 1).
    min_channels: channels every layer keeps.

  Returns:
    ``{conv layer name: (C,) bool}``, True = kept.

  Example:
    >>> import numpy as np, sparsity
    >>> m = sparsity.slimming_filter_masks(
    ...     {"a": np.array([0.1, -0.9, 0.3]), "b": np.array([0.05, 0.2])},
    ...     0.4)
    >>> {k: v.tolist() for k, v in m.items()}
    {'a': [False, True, True], 'b': [False, True]}
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"fraction must be in [0, 1), got {fraction}")
  names = list(scales)
  values = [np.abs(np.asarray(scales[n], np.float64)).ravel() for n in names]
  flat = np.concatenate(values) if values else np.zeros((0,))
  k = int(flat.size * fraction + 1e-9)
  pruned = np.zeros(flat.shape, bool)
  pruned[np.argsort(flat, kind="stable")[:k]] = True
  out, start = {}, 0
  for name, v in zip(names, values):
    keep = ~pruned[start:start + v.size]
    start += v.size
    if keep.sum() < min(min_channels, v.size):
      spare = np.argsort(-v, kind="stable")[:min(min_channels, v.size)]
      keep[spare] = True
    out[name] = keep
  return out
