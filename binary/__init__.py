"""Binary networks: STE quantizers, binary Flax layers, BinaryConnect tools.

* Quantizers (``jax.custom_vjp``; forward binary, ``sign(0) = +1``;
  backward a straight-through estimator with an inclusive window):
  :func:`ste_sign`, :func:`approx_sign`, :func:`swish_sign`,
  :func:`magnitude_aware_sign`, :func:`ste_heaviside`,
  :func:`stochastic_sign`; by name: :data:`QUANTIZERS`,
  :func:`get_quantizer`.
* Layers (latent real ``kernel`` params, binary view in the forward pass,
  pruned zeros stay 0; ``"stochastic_sign"`` draws from the ``"quantize"``
  RNG stream in training and uses the real weights at test time):
  :class:`BinaryDense`, :class:`BinaryConv`, :func:`binary_kernel`,
  :func:`is_stochastic`, :func:`uniform_init`.
* Flax NNX layers, same quantizers and conventions (``rngs`` stream
  ``"quantize"`` for stochastic binarization): :class:`BinaryLinear` and
  :class:`BinaryConvNNX` (``BinaryConv`` is the Linen layer's name).
* BinaryConnect per-step transforms (chain after any optax optimizer):
  :func:`scale_by_glorot` (per-layer LR), :func:`clip_params` (weights in
  ``[-H, H]``, chained last); and :func:`glorot_lr_scale`,
  :func:`hard_sigmoid`, :func:`squared_hinge_loss`.
* BENN ensembles (event functions, NumPy): :func:`bootstrap_indices`,
  :func:`resample_indices`, :func:`boost_weights` (the BENN code's
  variants A-D; D has SAMME's alpha but weights ``w e^{alpha s}``),
  :func:`member_alpha`, :func:`hard_vote`, :func:`soft_vote`,
  :func:`ensemble_curve`.
* Main/subsidiary filter pruning: :func:`subsidiary_keep` (STE keep mask),
  :func:`keep_count_penalty`, :func:`l0_penalty`, :func:`add_mask_penalty`
  (the penalty as a per-step transform), :func:`greedy_filter_keep`,
  :func:`random_filter_keep`, :func:`filter_mask`, :func:`bake_filter_keep`,
  :func:`is_subsidiary`.
* Monitoring and reporting: :func:`flip_ratio`, :func:`layer_flip_ratio`
  (sign flips between two steps); :func:`model_summary`,
  :func:`format_model_summary` (parameters per bit width, memory, MACs by
  precision, from a layer list).

This package imports nothing from ``experiments`` or ``launch``.
"""

from binary._benn import boost_weights
from binary._benn import bootstrap_indices
from binary._benn import ENSEMBLES
from binary._benn import ensemble_curve
from binary._benn import hard_vote
from binary._benn import member_alpha
from binary._benn import resample_indices
from binary._benn import soft_vote
from binary._binaryconnect import clip_params
from binary._binaryconnect import ClipParamsState
from binary._binaryconnect import glorot_lr_scale
from binary._binaryconnect import hard_sigmoid
from binary._binaryconnect import scale_by_glorot
from binary._binaryconnect import ScaleByGlorotState
from binary._binaryconnect import squared_hinge_loss
from binary._flips import flip_ratio
from binary._flips import layer_flip_ratio
from binary._layers import binary_kernel
from binary._layers import BinaryConv
from binary._layers import BinaryDense
from binary._layers import is_stochastic
from binary._layers import uniform_init
from binary._nnx import BinaryConv as BinaryConvNNX
from binary._nnx import BinaryLinear
from binary._mainsub import add_mask_penalty
from binary._mainsub import bake_filter_keep
from binary._mainsub import budget_removed
from binary._mainsub import filter_mask
from binary._mainsub import greedy_filter_keep
from binary._mainsub import is_subsidiary
from binary._mainsub import keep_count_penalty
from binary._mainsub import l0_penalty
from binary._mainsub import mask_budget
from binary._mainsub import project_to_budget
from binary._mainsub import random_filter_keep
from binary._mainsub import subsidiary_keep
from binary._mainsub import SUBSIDIARY_SUFFIX
from binary._mainsub import PENALTIES as MAINSUB_PENALTIES
from binary._quantizers import approx_sign
from binary._quantizers import get_quantizer
from binary._quantizers import identity
from binary._quantizers import magnitude_aware_sign
from binary._quantizers import QUANTIZERS
from binary._quantizers import ste_heaviside
from binary._quantizers import ste_identity_sign
from binary._quantizers import ste_sign
from binary._quantizers import stochastic_sign
from binary._quantizers import swish_sign
from binary._summary import format_model_summary
from binary._summary import model_summary

__all__ = (
    "BinaryConv",
    "BinaryConvNNX",
    "BinaryDense",
    "BinaryLinear",
    "ClipParamsState",
    "ENSEMBLES",
    "MAINSUB_PENALTIES",
    "QUANTIZERS",
    "SUBSIDIARY_SUFFIX",
    "ScaleByGlorotState",
    "add_mask_penalty",
    "approx_sign",
    "bake_filter_keep",
    "binary_kernel",
    "boost_weights",
    "bootstrap_indices",
    "budget_removed",
    "clip_params",
    "ensemble_curve",
    "filter_mask",
    "flip_ratio",
    "format_model_summary",
    "get_quantizer",
    "glorot_lr_scale",
    "greedy_filter_keep",
    "hard_sigmoid",
    "hard_vote",
    "identity",
    "is_stochastic",
    "is_subsidiary",
    "keep_count_penalty",
    "l0_penalty",
    "layer_flip_ratio",
    "magnitude_aware_sign",
    "mask_budget",
    "member_alpha",
    "model_summary",
    "project_to_budget",
    "random_filter_keep",
    "resample_indices",
    "scale_by_glorot",
    "soft_vote",
    "squared_hinge_loss",
    "ste_heaviside",
    "ste_identity_sign",
    "ste_sign",
    "stochastic_sign",
    "subsidiary_keep",
    "swish_sign",
    "uniform_init",
)
