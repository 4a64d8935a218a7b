"""CIFAR ResNets (He et al. 2016, section 4.2): ResNet-20, ResNet-56.

Stem: 3x3 conv, 16 filters, BN, ReLU.  Three stages of n basic blocks
(n = (depth - 2) / 6) with ``width`` x (1, 2, 4) = 16, 32, 64 filters; the
first block of stages 2 and 3 has stride 2.  Global average pool, dense to
``num_classes``.

Shortcut choice: identity where shapes match; where they do not (the
stride-2 blocks), a 1x1 stride-2 convolution + BN projection (He et al.'s
option B, as in open_lth's ``cifar_resnet`` and the LTH ResNet-20).  Option
A (strided subsampling + zero channel padding) would need ops outside the
layer-list vocabulary.

Padding: explicit (1, 1) on the 3x3 convolutions, as in PyTorch.  With
stride 2, 'SAME' would pad (0, 1) and centre output i on input 2i+1 while
the 1x1 shortcut reads input 2i; (1, 1) keeps both on 2i.

Convolutions have no bias (BN follows); the dense head has one.  Kernel
init: He normal (fan_in, untruncated, = PyTorch kaiming_normal_).  BN:
``momentum=0.9`` (Flax convention = 1 - PyTorch 0.1), ``epsilon=1e-5``.

Kernel weights (no biases, BN excluded) with 10 classes: ResNet-20 270,896
(270,256 conv + 640 dense), ResNet-56 851,504.

Module names: ``Conv_0``/``BatchNorm_0`` (stem), ``BasicBlock_<i>`` (i in
block order) each with ``Conv_0``, ``BatchNorm_0``, ``Conv_1``,
``BatchNorm_1`` and, for projection blocks, ``Conv_2``/``BatchNorm_2`` (the
shortcut), and ``Dense_0`` (the output layer).
"""
from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn

from experiments.models import _layers as L

# PyTorch kaiming_normal_ (fan_in, untruncated); jax he_normal is truncated.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _batch_norm(train: bool) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5)


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU."""
  filters: int
  strides: int = 1
  kernel_init: Callable = kaiming_normal

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(nn.Conv, self.filters, use_bias=False,
                             kernel_init=self.kernel_init)
    y = L.conv(conv((3, 3), strides=self.strides, padding=((1, 1), (1, 1))),
               x)
    y = L.relu(L.batchnorm(_batch_norm(train), y))
    y = L.conv(conv((3, 3), padding=((1, 1), (1, 1))), y)
    y = L.batchnorm(_batch_norm(train), y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.filters:
      shortcut = L.conv(conv((1, 1), strides=self.strides, padding="VALID"),
                        x)
      shortcut = L.batchnorm(_batch_norm(train), shortcut)
    return L.relu(L.add(y, shortcut))


class ResNet(nn.Module):
  """CIFAR ResNet of ``depth`` = 6n + 2 layers (20, 32, 44, 56, 110)."""
  num_classes: int
  depth: int = 20
  width: int = 16
  kernel_init: Callable = kaiming_normal

  @nn.compact
  def __call__(self, x, *, train: bool):
    if (self.depth - 2) % 6 != 0 or self.depth < 8:
      raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {self.depth}")
    blocks_per_stage = (self.depth - 2) // 6
    x = L.conv(nn.Conv(self.width, (3, 3), padding=((1, 1), (1, 1)),
                       use_bias=False, kernel_init=self.kernel_init), x)
    x = L.relu(L.batchnorm(_batch_norm(train), x))
    for stage in range(3):
      for block in range(blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides,
                       kernel_init=self.kernel_init)(x, train=train)
    x = L.global_avg_pool(x)
    return L.dense(nn.Dense(self.num_classes, kernel_init=self.kernel_init),
                   x)


class ResNet20(ResNet):
  depth: int = 20


class ResNet56(ResNet):
  depth: int = 56
