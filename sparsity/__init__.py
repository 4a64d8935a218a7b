"""Masks and sparse-training transforms: pure functions over pytrees.

A mask is a pytree shaped like the params: a ``bool`` array (True = kept)
on prunable leaves (Dense/Conv kernels by default), ``None`` elsewhere.

* Mask algebra: :func:`create_mask`, :func:`apply_mask`,
  :func:`combine_masks`, :func:`count`, :func:`remaining_fraction`,
  :func:`summarize`, :func:`format_summary_table`. Flax NNX params work
  too: an ``nnx.State`` (``nnx.state(model, nnx.Param)``) or its
  ``nnx.to_pure_dict``; :func:`align_mask` moves a mask between the forms.
* Event transforms (between jitted phases; return a new mask, never revive
  a pruned weight, remove exactly k): :func:`prune_layerwise`,
  :func:`prune_layerwise_to`, :func:`prune_global`, :func:`prune_global_to`,
  :func:`random_mask_like`; the jittable selection :func:`remove_smallest`.
* Per-step transform: :func:`masked` wraps any optax optimizer; the mask is
  passed to ``update`` as the keyword argument ``mask``.
* Schedules: :func:`polynomial_sparsity`, :func:`prune_steps`.
* N:M structured sparsity (at most N of every M consecutive input weights,
  2:4 by default): the event :func:`prune_n_m`, the jittable selection
  :func:`keep_n_of_m`, the gradual schedule :func:`n_m_schedule`, the
  checks :func:`is_n_m`, :func:`n_m_report` and :func:`n_m_patterns`.
* Gradient-count sparsity (our reading of Khan et al. 2022): the per-step
  :func:`count_gradients` and the events :func:`count_weighted_shrink`,
  :func:`shrink`, :func:`prune_inactive`, :func:`redundant_filters`, with
  :func:`composite_schedule`.
* Filter (structured) masks: :func:`channel_groups`,
  :func:`expand_filter_masks`, :func:`filters_of`, and the per-step
  :func:`project_to_mask`.
* Per-filter redundancy scores of a kernel (pure, jit-able):
  :func:`orthogonality_scores` (RePr), :func:`max_cosine_scores`,
  :func:`fpgm_scores`, :func:`norm_scores`.
* FPGM (soft filter pruning by the geometric median, recomputed every
  epoch): :func:`fpgm_keep`, :func:`fpgm_filter_masks`; the criteria
  :data:`FPGM_CRITERIA`.
* Network Slimming: the per-step :func:`bn_scale_l1` (L1 subgradient on
  BatchNorm scales) and the global :func:`slimming_filter_masks`.
* FBS (dynamic channel gating): :func:`winners_take_all` (exact,
  tie-stable k-WTA), :func:`wta_count`, :func:`channel_saliency_input`,
  :func:`saliency_l1`.
* RePr event functions: :func:`repr_scores`, :func:`repr_select`,
  :func:`repr_mask`, :func:`repr_drop`, :func:`repr_reinit`,
  :func:`repr_reset_moments`; the choices :data:`REPR_RANKINGS`,
  :data:`REPR_REINITS`.

This package imports nothing from ``experiments`` or ``launch``.
"""

from sparsity._filters import channel_groups
from sparsity._filters import expand_filter_masks
from sparsity._filters import filters_of
from sparsity._filters import project_to_mask
from sparsity._fbs import channel_saliency_input
from sparsity._fbs import saliency_l1
from sparsity._fbs import winners_take_all
from sparsity._fbs import wta_count
from sparsity._fpgm import fpgm_filter_masks
from sparsity._fpgm import fpgm_keep
from sparsity._fpgm import CRITERIA as FPGM_CRITERIA
from sparsity._gradcount import activity
from sparsity._gradcount import composite_schedule
from sparsity._gradcount import Event as CompositeEvent
from sparsity._gradcount import count_gradients
from sparsity._gradcount import count_weighted_shrink
from sparsity._gradcount import filter_mask_update
from sparsity._gradcount import find_count_state
from sparsity._gradcount import GradCountState
from sparsity._gradcount import prune_inactive
from sparsity._gradcount import redundant_filters
from sparsity._gradcount import reset_counts
from sparsity._gradcount import shrink
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
from sparsity._masks import align_mask
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
from sparsity._nm import is_n_m
from sparsity._nm import keep_n_of_m
from sparsity._nm import n_m_patterns
from sparsity._nm import n_m_report
from sparsity._nm import n_m_schedule
from sparsity._nm import prune_n_m
from sparsity._redundancy import fpgm_scores
from sparsity._redundancy import max_cosine_scores
from sparsity._redundancy import norm_scores
from sparsity._redundancy import orthogonality_scores
from sparsity._repr import repr_drop
from sparsity._repr import repr_mask
from sparsity._repr import repr_reinit
from sparsity._repr import repr_reset_moments
from sparsity._repr import repr_scores
from sparsity._repr import repr_select
from sparsity._repr import RANKINGS as REPR_RANKINGS
from sparsity._repr import REINITS as REPR_REINITS
from sparsity._schedules import polynomial_sparsity
from sparsity._schedules import prune_steps
from sparsity._slimming import bn_scale_l1
from sparsity._slimming import is_bn_scale
from sparsity._slimming import slimming_filter_masks

__all__ = (
    "GradCountState",
    "channel_saliency_input",
    "saliency_l1",
    "winners_take_all",
    "wta_count",
    "bn_scale_l1",
    "fpgm_filter_masks",
    "fpgm_keep",
    "FPGM_CRITERIA",
    "is_bn_scale",
    "slimming_filter_masks",
    "activity",
    "CompositeEvent",
    "composite_schedule",
    "count_gradients",
    "count_weighted_shrink",
    "filter_mask_update",
    "find_count_state",
    "prune_inactive",
    "redundant_filters",
    "reset_counts",
    "shrink",
    "MaskedState",
    "align_mask",
    "apply_mask",
    "channel_groups",
    "combine_masks",
    "count",
    "create_mask",
    "default_prunable",
    "expand_filter_masks",
    "filters_of",
    "format_summary_table",
    "is_n_m",
    "keep_n_of_m",
    "n_m_patterns",
    "n_m_report",
    "n_m_schedule",
    "prune_n_m",
    "fpgm_scores",
    "leaf_name",
    "mask_opt_state",
    "masked",
    "masked_leaves",
    "max_cosine_scores",
    "norm_scores",
    "orthogonality_scores",
    "polynomial_sparsity",
    "prune_global",
    "prune_global_to",
    "prune_layerwise",
    "prune_layerwise_to",
    "project_to_mask",
    "prune_steps",
    "random_mask_like",
    "remaining_fraction",
    "remove_smallest",
    "repr_drop",
    "repr_mask",
    "repr_reinit",
    "repr_reset_moments",
    "repr_scores",
    "repr_select",
    "REPR_RANKINGS",
    "REPR_REINITS",
    "resolve_rate",
    "summarize",
)
