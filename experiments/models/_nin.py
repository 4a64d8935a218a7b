r"""Binary Network-in-Network (XNOR-Net NIN): the base of BENN and of the
main/subsidiary framework.

A binary block (XNOR-Net's ``BinConv2d``) is

.. math:: h = \mathrm{ReLU}\big(\mathrm{conv}(\mathrm{drop}(\mathrm{sign}(
   \mathrm{BN}(x))),\ \alpha \odot \mathrm{sign}(W)) + b\big),
   \qquad \alpha_o = \mathrm{mean}|W_{\ldots o}|

(``sign`` with the STE window ``1{|x| <= 1}``, the per-filter scaled sign
``binary.magnitude_aware_sign`` on the kernel).  A real first layer is
conv -> BN (no scale/bias) -> ReLU; a real last layer is BN (no scale/bias)
-> conv -> ReLU; the logits are the global average of the last ReLU (NIN
ends in ``AvgPool2d(8)`` on CIFAR-10's 8x8 map).  Pools: max 3x3 stride 2
pad 1 after the first stage, average 3x3 stride 2 pad 1 (count_include_pad,
PyTorch's default) after the second.

Variants (``variant``):

* ``"benn"`` (BENN-PyTorch ``cifar/models/nin.py``): 192C5 - 96C1 - MP -
  192C5(drop) - 192C1 - AP - 192C3(drop) - 192C1 - num_classes C1: 7 convs,
  5 binary when semi-binary.
* ``"xnor"`` (MainSubsidaryBNN ``model/nin.py``, XNOR-Net's NIN): 192C5 -
  160C1 - 96C1 - MP - 192C5(drop) - 192C1 - 192C1 - AP - 192C3(drop) -
  192C1 - num_classes C1: 9 convs, 7 binary when semi-binary.

``binary_first`` / ``binary_last`` = False is BENN's SB (semi-binary:
``Net``), both True its AB (all-binary: ``AllBinNet``, whose first block
normalises and binarizes the image and whose last block is a binary block
with its ReLU).  ``binarize=False`` is the float twin (``RealNet``: the same
blocks without the sign).  ``width`` scales every hidden width
(``max(1, round(c * width))``) for small models.

Departures from the official code (documented, not hidden): the kernel's
scale is ``mean|W|`` of the latent weights without XNOR-Net's per-step
mean-centring and clamping (weight clipping comes from the optimizer chain,
``config.clip_weights``); ``sign(0) = +1``; the STE window is inclusive.

Main/subsidiary: the binary layers named in ``subsidiary`` carry one real
parameter per output filter, ``<layer>_subsidiary`` (init
``U(-1e-4, 1e-4)``), and multiply their conv output by
``keep = (sign(M) + 1) / 2`` (:func:`binary.subsidiary_keep`), before the
ReLU.  A model with ``subsidiary`` has no layer list (the gate is a
training-time construct): bake the keep vectors into the kernels
(:func:`binary.bake_filter_keep`) and describe the model without it.

Module names: ``Conv_<i>`` / ``BinaryConv_<i>`` by conv index (the prefix
says whether it is binary), ``BatchNorm_<k>`` in order of use.

References:
  Rastegari et al., "XNOR-Net", ECCV 2016 (the NIN of its CIFAR code).
  Zhu, Dong & Su, "Binary Ensemble Neural Network", CVPR 2019 (code
  ``XinDongol/BENN-PyTorch``).
  Xu et al., "A Main/Subsidiary Network Framework for Simplifying Binary
  Neural Networks", CVPR 2019 (code ``justimyhxu/MainSubsidaryBNN``).
"""
from __future__ import annotations

from typing import Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

import binary
from experiments.models import _layers as L
from experiments.models._binary import binary_conv, none_if_identity

# (features, kernel, dropout) per conv; "M" max pool, "A" average pool; the
# last conv has num_classes outputs.
NIN_CFGS = {
    "benn": ((192, 5, 0.0), (96, 1, 0.0), "M", (192, 5, 1.0), (192, 1, 0.0),
             "A", (192, 3, 1.0), (192, 1, 0.0), (None, 1, 0.0)),
    "xnor": ((192, 5, 0.0), (160, 1, 0.0), (96, 1, 0.0), "M", (192, 5, 1.0),
             (192, 1, 0.0), (192, 1, 0.0), "A", (192, 3, 1.0), (192, 1, 0.0),
             (None, 1, 0.0)),
}


def _subsidiary_init(key, shape, dtype=jnp.float32):
  return jax.random.uniform(key, shape, dtype, -1e-4, 1e-4)


class NIN(nn.Module):
  """Binary NIN (see the module docstring).

  Attributes:
    num_classes: outputs of the last conv.
    variant: ``"benn"`` or ``"xnor"``.
    binarize: False = the float twin.
    binary_first, binary_last: binarize the first / last conv (AB).
    width: scales the hidden widths.
    dropout: the rate of the two dropout blocks (official 0.5).
    kernel_quantizer: of binary convs (default the per-filter scaled sign).
    input_quantizer: of binary blocks' inputs (default ``"ste_sign"``).
    bn_momentum: Flax's (0.9 = PyTorch's 0.1).
    bn_epsilon: 1e-4 as the official code.
    use_bias: conv biases (BENN: True; main/subsidiary: False).
    subsidiary: names of binary convs with a learnable filter gate.
    frozen_bn: BatchNorm uses its running statistics in training too (the
      subsidiary stage: under batch statistics the next BN undoes any
      channel scale, so the gate's STE gradient would be ~0).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> m = NIN(num_classes=10, width=0.05)
    >>> v = m.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)), train=False)
    >>> m.apply(v, jnp.ones((2, 8, 8, 1)), train=False).shape
    (2, 10)
  """
  num_classes: int
  variant: str = "benn"
  binarize: bool = True
  binary_first: bool = False
  binary_last: bool = False
  width: float = 1.0
  dropout: float = 0.5
  kernel_quantizer: Union[str, None] = "magnitude_aware_sign"
  input_quantizer: Union[str, None] = "ste_sign"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-4
  use_bias: bool = True
  subsidiary: Sequence[str] = ()
  frozen_bn: bool = False

  def _bn(self, x, k: int, train: bool, affine: bool = True):
    return L.batchnorm(nn.BatchNorm(
        use_running_average=not train or self.frozen_bn,
        momentum=self.bn_momentum, epsilon=self.bn_epsilon,
        use_scale=affine, use_bias=affine, name=f"BatchNorm_{k}"), x)

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.variant not in NIN_CFGS:
      raise ValueError(f"unknown NIN variant {self.variant!r}; choose one "
                       f"of: {', '.join(NIN_CFGS)}")
    if self.subsidiary and L.recording_active():
      raise L.LayerListError(
          "a NIN with subsidiary gates has no layer list; bake the keep "
          "vectors into the kernels (binary.bake_filter_keep) first")
    cfg = NIN_CFGS[self.variant]
    convs = [c for c in cfg if c not in ("M", "A")]
    init = nn.initializers.normal(0.05)  # the official N(0, 0.05)
    kq = none_if_identity(self.kernel_quantizer)
    iq = none_if_identity(self.input_quantizer)
    sign_fn = binary.get_quantizer(iq) if iq is not None else None
    bn = 0
    i = 0
    for item in cfg:
      if item == "M":
        x = L.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
        continue
      if item == "A":
        x = L.avg_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)),
                       count_include_pad=True)
        continue
      feats, k, drop = item
      first, last = i == 0, i == len(convs) - 1
      feats = self.num_classes if feats is None else max(
          1, int(round(feats * self.width)))
      is_binary = self.binarize and (self.binary_first or not first) and (
          self.binary_last or not last)
      real_edge = (first or last) and not is_binary
      if real_edge and last:
        x = self._bn(x, bn, train, affine=False)
        bn += 1
      elif not real_edge:  # a block: BN -> [sign] -> [dropout] -> conv
        x = self._bn(x, bn, train)
        bn += 1
        if is_binary and sign_fn is not None:
          x = L.sign(x, sign_fn)
        if drop and self.dropout:
          x = nn.Dropout(self.dropout * drop, deterministic=not train)(x)
      name = f"{'BinaryConv' if is_binary else 'Conv'}_{i}"
      if is_binary:
        x = binary_conv(binary.BinaryConv(
            feats, (k, k), padding="SAME", kernel_quantizer=kq,
            input_quantizer=None, use_bias=self.use_bias, kernel_init=init,
            name=name), x, train=train)
      else:
        x = L.conv(nn.Conv(feats, (k, k), padding="SAME",
                           use_bias=self.use_bias, kernel_init=init,
                           name=name), x)
      if name in self.subsidiary:
        m = self.param(f"{name}_subsidiary", _subsidiary_init, (feats,))
        x = x * binary.subsidiary_keep(m)
      if real_edge and first:
        x = self._bn(x, bn, train, affine=False)
        bn += 1
      x = L.relu(x)
      i += 1
    return L.global_avg_pool(x)


def binary_conv_names(model: NIN) -> list[str]:
  """The names of ``model``'s binary convs, bottom-up (main/subsidiary's
  layer order).

  Example:
    >>> binary_conv_names(NIN(num_classes=10, variant="xnor"))[:2]
    ['BinaryConv_1', 'BinaryConv_2']
  """
  cfg = [c for c in NIN_CFGS[model.variant] if c not in ("M", "A")]
  out = []
  for i in range(len(cfg)):
    first, last = i == 0, i == len(cfg) - 1
    if model.binarize and (model.binary_first or not first) and (
        model.binary_last or not last):
      out.append(f"BinaryConv_{i}")
  return out
