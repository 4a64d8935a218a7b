r"""Feature Boosting and Suppression (FBS) layers and a gated CNN.

Gao et al., "Dynamic Channel Pruning: Feature Boosting and Suppression",
ICLR 2019.  :class:`FBSConv` is one gated conv layer (the maths is in
``sparsity/_fbs.py``)::

    s  = mean_{h,w} |x|                       (N, C_in)    subsample
    g  = relu(Dense_saliency(s))              (N, C_out)   saliency
    pi = wta_{ceil(d * C_out)}(g)             (N, C_out)   exact zeros
    y  = relu(gate(BN_noscale(conv(x)), pi))  (N, H, W, C_out)

The conv has no bias (BatchNorm's shift is the paper's beta), BatchNorm no
scale (pi is the scale). With ``density=1`` every channel is kept and the
layer is a plain conv-BN-ReLU whose BN scale is input dependent.

Training signals (collections of ``model.apply(..., mutable=[...])``):

* ``"losses"/"fbs_l1"``: per-example ``lambda * ||g||_1`` (N,), lambda =
  ``saliency_l1``; the trainer adds every per-example value sown in
  ``"losses"`` to the per-example loss.  Sown only when ``train=True``.
* ``"fbs_gates"/"keep"`` (under the layer's module path): per-example
  ``pi != 0`` (N, C_out) bool, for the MAC accounting.  Sown in every mode
  except ``init``.

:class:`FBSCNN` stacks them: ``convs`` of widths and "M" (2x2 max pool),
every conv an FBSConv, except the first unless ``gate_first`` (the paper
gates every layer but the first, whose input is the image), then global
average pooling and a dense classifier.  The default widths are the
paper's M-CifarNet (8 conv layers: 64, 64, 128, 128, 128, 192, 192, 192,
pools after the 2nd and 5th; our reading of Zhao et al.'s Mayo model, not
verified against released code).  Module names: ``FBSConv_<i>`` (with
``Conv_0``, ``BatchNorm_0``, ``saliency``), the ungated first layer
``Conv_0``/``BatchNorm_0``, the classifier ``Dense_0``.
"""
from __future__ import annotations

from typing import Sequence, Union

import flax.linen as nn

from experiments.models import _layers as L
import sparsity

M_CIFARNET = (64, 64, "M", 128, 128, 128, "M", 192, 192, 192)
DIGITS_CNN = (32, 32, "M", 64, 64)


class FBSConv(nn.Module):
  """One FBS-gated 3x3 conv layer (stride 1, 'SAME') with BN and ReLU."""
  features: int
  density: float = 1.0
  kernel_size: Sequence[int] = (3, 3)
  momentum: float = 0.9
  saliency_l1: float = 0.0    # lambda of the L1 penalty on g

  @nn.compact
  def __call__(self, x, *, train: bool):
    s = L.global_avg_pool(L.activation(x, "abs"))
    # Bias 1 at init: every saliency starts positive (like a BN scale of 1).
    g = L.relu(L.dense(nn.Dense(self.features, name="saliency",
                                bias_init=nn.initializers.ones), s))
    pi = L.wta(g, self.density)
    if not self.is_initializing():
      if train:
        self.sow("losses", "fbs_l1",
                 self.saliency_l1 * sparsity.saliency_l1(g))
      self.sow("fbs_gates", "keep", pi != 0)
    y = L.conv(nn.Conv(self.features, tuple(self.kernel_size),
                       padding="SAME", use_bias=False), x)
    y = L.batchnorm(nn.BatchNorm(use_running_average=not train,
                                 use_scale=False, momentum=self.momentum), y)
    return L.relu(L.gate(y, pi))


class FBSCNN(nn.Module):
  """A VGG-like CNN of FBS layers (see the module docstring)."""
  num_classes: int
  convs: Sequence[Union[int, str]] = M_CIFARNET
  density: float = 1.0
  gate_first: bool = False
  saliency_l1: float = 1e-8   # lambda of the L1 penalty on saliencies

  @nn.compact
  def __call__(self, x, *, train: bool):
    first = True
    for item in self.convs:
      if item == "M":
        x = L.max_pool(x, (2, 2), (2, 2))
        continue
      if first and not self.gate_first:
        x = L.conv(nn.Conv(int(item), (3, 3), padding="SAME",
                           use_bias=False), x)
        x = L.relu(L.batchnorm(nn.BatchNorm(use_running_average=not train,
                                            momentum=0.9), x))
      else:
        x = FBSConv(int(item), density=self.density,
                    saliency_l1=self.saliency_l1)(x, train=train)
      first = False
    x = L.global_avg_pool(x)
    return L.dense(nn.Dense(self.num_classes), x)


class FBSDigitsCNN(FBSCNN):
  """The digits-sized FBS CNN: 32, 32, pool, 64, 64 (8x8 inputs)."""
  convs: Sequence[Union[int, str]] = DIGITS_CNN


def uses_fbs(model) -> bool:
  """Whether a model sows FBS gates (and a saliency penalty)."""
  return isinstance(model, FBSCNN)

