r"""Semi-binary ResNet-18 for ImageNet (BENN's ImageNet base network).

Real stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four stages of two basic
blocks (64, 128, 256, 512 filters; stride 2 at the start of stages 2-4),
global average pool and a real dense layer: first and last layers real
(BENN's SB).  A binary basic block is

.. math:: h = \mathrm{ReLU}(\mathrm{conv}_b(\mathrm{sign}(\mathrm{BN}(x))));
   \ y = \mathrm{ReLU}(\mathrm{conv}_b(\mathrm{sign}(\mathrm{BN}(h))) +
   s(x))

with XNOR-Net's per-filter scaled sign on the kernels
(``magnitude_aware_sign``) and the STE sign on activations; the shortcut
``s`` is the identity, or a real 1x1 strided conv + BN where the shape
changes (as most binary ResNets keep downsampling real).  ``binarize=False``
is the float twin.  ``width`` scales the filters (tests).

Kernel weights at width 1 with 1000 classes: 11,678,912 (torchvision's
ResNet-18 conv + fc kernels).

References:
  He et al., "Deep Residual Learning", CVPR 2016 (ResNet-18).
  Zhu, Dong & Su, "Binary Ensemble Neural Network", CVPR 2019 (ImageNet
  ResNet-18 SB, 3 members: single 48.87 % top-1, bagging 54.34 %,
  boosting 55.83 %, per the official README).
"""
from __future__ import annotations

import flax.linen as nn

import binary
from experiments.models import _layers as L
from experiments.models._binary import binary_conv

kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class BinaryBasicBlock(nn.Module):
  """Two binary 3x3 convs and a (real) shortcut (module docstring)."""
  filters: int
  strides: int = 1
  binarize: bool = True

  def _bn(self, x, train):
    return L.batchnorm(nn.BatchNorm(use_running_average=not train,
                                    momentum=0.9, epsilon=1e-5), x)

  def _conv(self, x, strides, train, name):
    pad = ((1, 1), (1, 1))
    if not self.binarize:
      return L.conv(nn.Conv(self.filters, (3, 3), strides=strides,
                            padding=pad, use_bias=False,
                            kernel_init=kaiming_normal, name=name), x)
    x = L.sign(x, binary.ste_sign)
    return binary_conv(binary.BinaryConv(
        self.filters, (3, 3), strides=strides, padding=pad,
        kernel_quantizer="magnitude_aware_sign", use_bias=False,
        kernel_init=kaiming_normal, name=f"Binary{name}"), x, train=train)

  @nn.compact
  def __call__(self, x, *, train: bool):
    h = L.relu(self._conv(self._bn(x, train), self.strides, train, "Conv_0"))
    h = self._conv(self._bn(h, train), 1, train, "Conv_1")
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.filters:
      shortcut = L.conv(nn.Conv(self.filters, (1, 1), strides=self.strides,
                                padding="VALID", use_bias=False,
                                kernel_init=kaiming_normal,
                                name="Shortcut"), x)
      shortcut = self._bn(shortcut, train)
    return L.relu(L.add(h, shortcut))


class BinaryResNet18(nn.Module):
  """Semi-binary ResNet-18 (module docstring).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> m = BinaryResNet18(num_classes=5, width=1 / 16)
    >>> v = m.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False)
    >>> m.apply(v, jnp.ones((2, 32, 32, 3)), train=False).shape
    (2, 5)
  """
  num_classes: int
  binarize: bool = True
  width: float = 1.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    w = lambda c: max(1, int(round(c * self.width)))
    x = L.conv(nn.Conv(w(64), (7, 7), strides=2, padding=((3, 3), (3, 3)),
                       use_bias=False, kernel_init=kaiming_normal,
                       name="Conv_0"), x)
    x = L.relu(L.batchnorm(nn.BatchNorm(use_running_average=not train,
                                        momentum=0.9, epsilon=1e-5), x))
    x = L.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    for stage, filters in enumerate((64, 128, 256, 512)):
      for block in range(2):
        x = BinaryBasicBlock(w(filters), 2 if stage and not block else 1,
                             self.binarize)(x, train=train)
    x = L.global_avg_pool(x)
    return L.dense(nn.Dense(self.num_classes, name="Dense_0"), x)
