"""Fully connected classifiers: the LeNet-style MLP (LeNet-300-100)."""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn

from experiments.models import _layers as L


class MLP(nn.Module):
  """Dense -> ReLU for each of ``hidden``, then Dense(num_classes) (logits).

  Inputs (N, D) or (N, H, W, C); the latter is flattened first (C order).
  All layers have biases.  Kernel init: Glorot normal (Frankle & Carbin 2019,
  "all inits Gaussian Glorot").  With 784 inputs and the default hidden
  sizes this is LeNet-300-100: 266,200 kernel weights (784*300 + 300*100 +
  100*10), modules ``Dense_0``, ``Dense_1``, ``Dense_2`` (the output layer).
  """
  num_classes: int
  hidden: Sequence[int] = (300, 100)
  kernel_init: Callable = nn.initializers.glorot_normal()

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train  # no train-dependent layers
    if x.ndim > 2:
      x = L.flatten(x)
    for features in self.hidden:
      x = L.dense(nn.Dense(features, kernel_init=self.kernel_init), x)
      x = L.relu(x)
    return L.dense(nn.Dense(self.num_classes, kernel_init=self.kernel_init),
                   x)


class LeNet300100(MLP):
  """LeNet-300-100 (the MLP with its default hidden sizes (300, 100))."""
  hidden: Sequence[int] = (300, 100)
