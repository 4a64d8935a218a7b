"""Conv-2 / Conv-4 / Conv-6 of Frankle & Carbin (ICLR 2019), Figure 2.

3x3 convolutions with 'SAME' padding (stride 1) and biases, ReLU, 2x2 max
pool (stride 2) after every two convolutions, then dense 256, 256 (ReLU)
and the output layer.  No batch norm.  Kernel init: Glorot normal.

Kernel weights (biases excluded) on 32x32x3 inputs with 10 classes:
Conv-2 4,300,992 (38,592 conv), Conv-4 2,425,024 (259,776 conv),
Conv-6 2,261,184 (1,144,512 conv; the paper prints "1.7M", a typo: its conv
count matches).  Modules: ``Conv_0`` ... then ``Dense_0``, ``Dense_1``,
``Dense_2`` (the output layer).
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import flax.linen as nn

from experiments.models import _layers as L

# "M" is a 2x2 max pool with stride 2; integers are 3x3 conv widths.
CONV2 = (64, 64, "M")
CONV4 = (64, 64, "M", 128, 128, "M")
CONV6 = (64, 64, "M", 128, 128, "M", 256, 256, "M")


class ConvNet(nn.Module):
  """Plain VGG-like CNN: ``convs`` (widths and "M" pools), then ``fc``."""
  num_classes: int
  convs: Sequence[Union[int, str]] = CONV2
  fc: Sequence[int] = (256, 256)
  kernel_init: Callable = nn.initializers.glorot_normal()

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train  # no train-dependent layers
    for item in self.convs:
      if item == "M":
        x = L.max_pool(x, (2, 2), (2, 2))
      else:
        x = L.conv(nn.Conv(int(item), (3, 3), padding="SAME",
                           kernel_init=self.kernel_init), x)
        x = L.relu(x)
    x = L.flatten(x)
    for features in self.fc:
      x = L.dense(nn.Dense(features, kernel_init=self.kernel_init), x)
      x = L.relu(x)
    return L.dense(nn.Dense(self.num_classes, kernel_init=self.kernel_init),
                   x)


class Conv2(ConvNet):
  convs: Sequence[Union[int, str]] = CONV2


class Conv4(ConvNet):
  convs: Sequence[Union[int, str]] = CONV4


class Conv6(ConvNet):
  convs: Sequence[Union[int, str]] = CONV6
