"""VGG for CIFAR (32x32 inputs): conv3x3-BN-ReLU stacks, max pools, one
dense layer.

Configurations ("M" = 2x2 max pool, stride 2):

* VGG-11: ``[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M]``
  (the common CIFAR VGG-11, e.g. kuangliu/pytorch-cifar).
* VGG-13/16/19: the variant of Liu et al. 2019 ("Rethinking the value of
  network pruning") used by the Lottery Ticket papers and open_lth
  (``cifar_vgg_16/19``): no pool after the last stage.

Head (our choice): global average pool, then one dense layer to
``num_classes``.  On 32x32 inputs this equals the references exactly: for
VGG-11 the map is already 1x1, for VGG-16/19 the 2x2 average equals their
``AvgPool2d(2)`` + ``Linear(512, classes)``.  It also accepts other input
sizes.

Convolutions: 3x3, explicit (1, 1) padding, no bias (BN follows), He normal
init (fan_in, untruncated).  BN: ``momentum=0.9`` (= PyTorch 0.1),
``epsilon=1e-5``.  Kernel weights with 10 classes: VGG-11 9,222,848,
VGG-16 14,715,584, VGG-19 20,024,000 (the LTH paper's "20.0M").

Module names: ``Conv_<i>``, ``BatchNorm_<i>``, ``Dense_0`` (output layer).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import flax.linen as nn

from experiments.models import _layers as L

# PyTorch kaiming_normal_ (fan_in, untruncated); jax he_normal is truncated.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

VGG_CFGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512,
         512, "M", 512, 512, 512, 512),
}


class VGG(nn.Module):
  """CIFAR VGG of ``depth`` in VGG_CFGS, or an explicit ``cfg``."""
  num_classes: int
  depth: int = 11
  cfg: Optional[Sequence[Union[int, str]]] = None
  kernel_init: Callable = kaiming_normal

  @nn.compact
  def __call__(self, x, *, train: bool):
    cfg = self.cfg
    if cfg is None:
      if self.depth not in VGG_CFGS:
        raise ValueError(f"VGG depth must be one of {sorted(VGG_CFGS)}, "
                         f"got {self.depth}")
      cfg = VGG_CFGS[self.depth]
    for item in cfg:
      if item == "M":
        x = L.max_pool(x, (2, 2), (2, 2))
      else:
        x = L.conv(nn.Conv(int(item), (3, 3), padding=((1, 1), (1, 1)),
                           use_bias=False, kernel_init=self.kernel_init), x)
        x = L.batchnorm(nn.BatchNorm(use_running_average=not train,
                                     momentum=0.9, epsilon=1e-5), x)
        x = L.relu(x)
    x = L.global_avg_pool(x)
    return L.dense(nn.Dense(self.num_classes, kernel_init=self.kernel_init),
                   x)


class VGG11(VGG):
  depth: int = 11


class VGG16(VGG):
  depth: int = 16


class VGG19(VGG):
  depth: int = 19
