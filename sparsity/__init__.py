"""Masks and sparse-training transforms: pure functions over pytrees.

A mask is a pytree shaped like the params: a ``bool`` array (True = kept)
on prunable leaves (Dense/Conv kernels by default), ``None`` elsewhere.

* Mask algebra: :func:`create_mask`, :func:`apply_mask`,
  :func:`combine_masks`, :func:`count`, :func:`remaining_fraction`,
  :func:`summarize`, :func:`format_summary_table`.
* Event transforms (between jitted phases; return a new mask, never revive
  a pruned weight, remove exactly k): :func:`prune_layerwise`,
  :func:`prune_layerwise_to`, :func:`prune_global`, :func:`prune_global_to`,
  :func:`random_mask_like`; the jittable selection :func:`remove_smallest`.
* Per-step transform: :func:`masked` wraps any optax optimizer; the mask is
  passed to ``update`` as the keyword argument ``mask``.
* Schedules: :func:`polynomial_sparsity`, :func:`prune_steps`.

This package imports nothing from ``experiments`` or ``launch``.
"""

from sparsity._magnitude import prune_global
from sparsity._magnitude import prune_global_to
from sparsity._magnitude import prune_layerwise
from sparsity._magnitude import prune_layerwise_to
from sparsity._magnitude import random_mask_like
from sparsity._magnitude import remove_smallest
from sparsity._magnitude import resolve_rate
from sparsity._masked import mask_opt_state
from sparsity._masked import masked
from sparsity._masked import MaskedState
from sparsity._masks import apply_mask
from sparsity._masks import combine_masks
from sparsity._masks import count
from sparsity._masks import create_mask
from sparsity._masks import default_prunable
from sparsity._masks import format_summary_table
from sparsity._masks import leaf_name
from sparsity._masks import masked_leaves
from sparsity._masks import remaining_fraction
from sparsity._masks import summarize
from sparsity._schedules import polynomial_sparsity
from sparsity._schedules import prune_steps

__all__ = (
    "MaskedState",
    "apply_mask",
    "combine_masks",
    "count",
    "create_mask",
    "default_prunable",
    "format_summary_table",
    "leaf_name",
    "mask_opt_state",
    "masked",
    "masked_leaves",
    "polynomial_sparsity",
    "prune_global",
    "prune_global_to",
    "prune_layerwise",
    "prune_layerwise_to",
    "prune_steps",
    "random_mask_like",
    "remaining_fraction",
    "remove_smallest",
    "resolve_rate",
    "summarize",
)
