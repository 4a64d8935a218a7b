"""The "vanilla CNN" of RePr (Prakash et al., CVPR 2019, Fig. 1).

Three 3x3 convolutions of 32 filters (stride 1, zero padding 1 = 'SAME',
with bias), each followed by ReLU and a 2x2 max pool (stride 2), then one
fully connected layer from the flattened features to the classes: on
32x32x3 CIFAR-10 the features are 4 * 4 * 32 = 512, the "FC 512 -> 10" of
the re-implementation (siahuat0727/RePr ``models/vanilla.py``). Kernel
weights: 864 + 9,216 + 9,216 + 5,120 = 24,416 (24,522 with biases). On 8x8
digits the three pools leave 1 * 1 * 32 features.

It is :class:`~experiments.models.ConvNet` with ``convs=(32, "M") * 3`` and
no hidden dense layer; modules ``Conv_0``, ``Conv_1``, ``Conv_2``,
``Dense_0``.
"""
from __future__ import annotations

from typing import Sequence, Union

from experiments.models._convnets import ConvNet

VANILLA = (32, "M", 32, "M", 32, "M")


class VanillaCNN(ConvNet):
  """RePr's 3-layer vanilla CNN (``width`` filters per conv layer)."""
  convs: Sequence[Union[int, str]] = VANILLA
  fc: Sequence[int] = ()
