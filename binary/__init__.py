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
* BinaryConnect per-step transforms (chain after any optax optimizer):
  :func:`scale_by_glorot` (per-layer LR), :func:`clip_params` (weights in
  ``[-H, H]``, chained last); and :func:`glorot_lr_scale`,
  :func:`hard_sigmoid`, :func:`squared_hinge_loss`.
* Monitoring and reporting: :func:`flip_ratio`, :func:`layer_flip_ratio`
  (sign flips between two steps); :func:`model_summary`,
  :func:`format_model_summary` (parameters per bit width, memory, MACs by
  precision, from a layer list).

This package imports nothing from ``experiments`` or ``launch``.
"""

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
    "BinaryDense",
    "ClipParamsState",
    "QUANTIZERS",
    "ScaleByGlorotState",
    "approx_sign",
    "binary_kernel",
    "clip_params",
    "flip_ratio",
    "format_model_summary",
    "get_quantizer",
    "glorot_lr_scale",
    "hard_sigmoid",
    "identity",
    "is_stochastic",
    "layer_flip_ratio",
    "magnitude_aware_sign",
    "model_summary",
    "scale_by_glorot",
    "squared_hinge_loss",
    "ste_heaviside",
    "ste_identity_sign",
    "ste_sign",
    "stochastic_sign",
    "swish_sign",
    "uniform_init",
)
