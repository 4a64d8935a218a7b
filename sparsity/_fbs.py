r"""Feature Boosting and Suppression: the pure functions of dynamic gating.

Gao, Zhao, Dudziak, Mullins, Xu, "Dynamic Channel Pruning: Feature Boosting
and Suppression", ICLR 2019 (arXiv 1810.05331).  For conv layer l with
input :math:`x_{l-1}` (NHWC, :math:`C_{l-1}` channels) and
:math:`C_l` output channels:

.. math::

   s &= \mathrm{ss}(x_{l-1}) = \tfrac{1}{HW}\textstyle\sum_{h,w}
        |x_{l-1}[h, w, :]| \in \mathbb{R}^{C_{l-1}}
        \quad\text{(subsample: one value per channel)}\\
   g_l &= \mathrm{relu}(W_g s + b_g) \in \mathbb{R}^{C_l}
        \quad\text{(saliency)}\\
   \pi_l &= \mathrm{wta}_{k}(g_l), \quad k = \lceil d\, C_l \rceil\\
   x_l &= \mathrm{relu}\big(\pi_l \odot (\mathrm{BN}_{\text{no scale}}
          (\mathrm{conv}_l(x_{l-1})) + \beta)\big)

where :math:`\mathrm{wta}_k` keeps the k largest entries of each example's
saliency vector and sets the others to exactly 0 (so those output channels,
and the matching input channels of the next layer, need not be computed),
and the kept entries *boost* their channels (BatchNorm has no scale of its
own: the scale is :math:`\pi`).  Training adds :math:`\lambda \sum_l
\|g_l\|_1` to the loss (:func:`saliency_l1`).

This module holds the parts that are not Flax layers (the layer is
``experiments.models._fbs.FBSConv``):

* :func:`winners_take_all` -- the exact, tie-stable k-WTA;
* :func:`wta_count` -- k = ceil(d * C), at least 1;
* :func:`channel_saliency_input` -- the subsample ``ss``;
* :func:`saliency_l1` -- the per-example L1 penalty.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["winners_take_all", "wta_count", "channel_saliency_input",
           "saliency_l1"]


def wta_count(density: float, channels: int) -> int:
  """k = ceil(density * channels), clipped to [1, channels].

  The product is rounded to 9 decimals first so that e.g. 0.7 * 10 (=
  7.000000000000001 in floating point) gives 7, not 8.

  Example:
    >>> import sparsity
    >>> [sparsity.wta_count(d, 10) for d in (1.0, 0.75, 0.7, 0.5, 0.01)]
    [10, 8, 7, 5, 1]
  """
  if not 0.0 < density <= 1.0:
    raise ValueError(f"density must be in (0, 1], got {density}")
  k = math.ceil(round(density * channels, 9))
  return int(min(max(k, 1), channels))


def winners_take_all(g: jax.Array, k: int) -> jax.Array:
  """Keeps the k largest entries of ``g`` along the last axis, zeroes the rest.

  Exactly k entries per row are kept (a kept entry may itself be 0).  Ties
  are stable: among equal values the lower channel index wins
  (``jax.lax.top_k`` orders ties by index).  The gradient flows to the
  kept entries only (the output is ``g * keep`` with ``keep`` constant).

  Args:
    g: (..., C) saliencies.
    k: number of winners, 1 <= k <= C.

  Returns:
    (..., C), ``g`` where kept, exactly 0 elsewhere.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> g = jnp.array([[0.5, 2.0, 2.0, 1.0], [3.0, 0.0, 1.0, 4.0]])
    >>> sparsity.winners_take_all(g, 2).tolist()
    [[0.0, 2.0, 2.0, 0.0], [3.0, 0.0, 0.0, 4.0]]

  References:
    Gao et al., "Dynamic Channel Pruning: Feature Boosting and
    Suppression", ICLR 2019, the k-WTA of Section 3.
  """
  c = g.shape[-1]
  if not 1 <= k <= c:
    raise ValueError(f"k must be in [1, {c}], got {k}")
  if k == c:
    return g
  _, idx = jax.lax.top_k(jax.lax.stop_gradient(g), k)
  keep = jnp.any(jax.nn.one_hot(idx, c, dtype=jnp.bool_), axis=-2)
  return jnp.where(keep, g, jnp.zeros_like(g))


def channel_saliency_input(x: jax.Array) -> jax.Array:
  """The subsample ``ss(x)``: mean of |x| over H and W, (N, H, W, C) -> (N, C)."""
  return jnp.mean(jnp.abs(x), axis=(1, 2))


def saliency_l1(g: jax.Array) -> jax.Array:
  """Per-example L1 norm of the saliencies, (N, C) -> (N,)."""
  return jnp.sum(jnp.abs(g), axis=-1)
