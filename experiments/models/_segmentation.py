"""Segmentation models: a small UNet and MobileNetV3-small with an LR-ASPP head.

Both map NHWC images (N, H, W, C_in) to per-pixel logits (N, H, W,
num_classes), and are written with the layer-list helpers, so
``layer_list`` describes them with the ops ``conv`` (incl. depthwise),
``batchnorm``, ``activation`` (relu, hard_swish, hard_sigmoid, sigmoid),
``pool``, ``dense``, ``gate`` (squeeze-excite), ``upsample``, ``concat`` and
``add``.  Convolutions followed by BatchNorm have no bias; BatchNorm uses
Flax ``momentum=0.9`` (= PyTorch 0.1), ``epsilon=1e-5`` (short CPU runs;
the TF reference uses 0.99 / 1e-3).

UNet (Ronneberger, Fischer, Brox, MICCAI 2015), scaled down: for each width
w of ``widths`` an encoder level of two (3x3 conv, BN, ReLU) blocks followed
by a 2x2 max pool (none after the last level, the bottleneck); the decoder
walks back up: nearest 2x upsampling, a 3x3 conv to the skip's width (BN,
ReLU), concatenation with the skip, two (3x3 conv, BN, ReLU) blocks; a 1x1
conv (with bias) gives the logits.  Input H and W must be divisible by
``2**(len(widths) - 1)``.  Nearest upsampling + conv stands in for the
paper's transposed convolution (the layer list has no transposed conv).
``unet_tiny`` is widths (8, 16, 32): 32,876 params for 3 input channels and
4 classes.

MobileNetV3-small (Howard et al., ICCV 2019, Table 2), the segmentation
variant of its section 6.4: the backbone's bottleneck blocks (1x1 expand,
BN, NL; KxK depthwise, BN, NL; optional squeeze-excite; 1x1 project, BN;
residual when the stride is 1 and the widths match), NL = ReLU or
hard-swish as in Table 2, squeeze-excite = global average pool, dense to
make_divisible(exp / 4), ReLU, dense to exp, hard-sigmoid, channel gate.
Head (Lite R-ASPP, simplified): on the last features (output stride OS) a
1x1 conv (``head_channels``, BN, ReLU) gated by a global-average-pool ->
dense -> sigmoid branch, nearest 2x upsampling, a 1x1 conv to the classes;
plus a 1x1 conv to the classes on the features before the last stride-2
block (OS / 2); the two are added and upsampled by OS / 2 to the input
size.  Departures from the paper, all for tiny inputs and the layer-list
op set: no dilation in the last stage, a global (not 49x49 strided) pool in
the head's gate branch, nearest (not bilinear) upsampling, and
``stem_stride`` / ``first_stride`` (2 / 2 in the paper) can be set to 1 so
32x32 inputs keep 4x4 features (OS 8).  ``width`` scales every channel
count (make_divisible by 8).  The backbone stops after the last bottleneck
(no 576-channel 1x1 conv nor classifier: the head replaces them).
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn

from experiments.models import _layers as L


def _batch_norm(train: bool) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5)


def make_divisible(v: float, divisor: int = 8) -> int:
  """The MobileNet channel rounding: nearest multiple of `divisor`, never
  below 90 % of v (TF `_make_divisible`)."""
  new = max(divisor, int(v + divisor / 2) // divisor * divisor)
  if new < 0.9 * v:
    new += divisor
  return int(new)


def _conv_bn(x, features: int, kernel: int, train: bool, *, strides: int = 1,
             groups: int = 1, act: str | None = "relu"):
  x = L.conv(nn.Conv(features, (kernel, kernel), strides=strides,
                     padding="SAME", feature_group_count=groups,
                     use_bias=False), x)
  x = L.batchnorm(_batch_norm(train), x)
  return x if act is None else L.activation(x, act)


class ConvBlock(nn.Module):
  """Two (3x3 conv, BN, ReLU) layers: one UNet level."""
  features: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = _conv_bn(x, self.features, 3, train)
    return _conv_bn(x, self.features, 3, train)


class UpBlock(nn.Module):
  """Upsample 2x, 3x3 conv to the skip's width, concat, ConvBlock."""
  features: int

  @nn.compact
  def __call__(self, x, skip, *, train: bool):
    x = L.upsample(x, 2)
    x = _conv_bn(x, self.features, 3, train)
    x = L.concat([skip, x], axis=-1)
    return ConvBlock(self.features)(x, train=train)


class UNet(nn.Module):
  """A UNet of ``len(widths)`` levels (see the module docstring)."""
  num_classes: int
  widths: Sequence[int] = (8, 16, 32)

  @nn.compact
  def __call__(self, x, *, train: bool):
    levels = len(self.widths)
    factor = 2 ** (levels - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"UNet with {levels} levels needs H and W divisible "
                       f"by {factor}, got {x.shape[1:3]}")
    skips = []
    for i, w in enumerate(self.widths):
      x = ConvBlock(int(w))(x, train=train)
      if i < levels - 1:
        skips.append(x)
        x = L.max_pool(x, (2, 2), (2, 2))
    for w, skip in zip(reversed(self.widths[:-1]), reversed(skips)):
      x = UpBlock(int(w))(x, skip, train=train)
    return L.conv(nn.Conv(self.num_classes, (1, 1)), x)


class UNetTiny(UNet):
  widths: Sequence[int] = (8, 16, 32)


class UNetSmall(UNet):
  widths: Sequence[int] = (16, 32, 64, 128)


# (kernel, expansion, out, squeeze-excite, activation, stride): Table 2.
MOBILENET_V3_SMALL = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hard_swish", 2),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 120, 48, True, "hard_swish", 1),
    (5, 144, 48, True, "hard_swish", 1),
    (5, 288, 96, True, "hard_swish", 2),
    (5, 576, 96, True, "hard_swish", 1),
    (5, 576, 96, True, "hard_swish", 1),
)


class SqueezeExcite(nn.Module):
  """x * hard_sigmoid(W2 relu(W1 avgpool(x))) per channel."""
  squeeze: int

  @nn.compact
  def __call__(self, x):
    g = L.global_avg_pool(x)
    g = L.relu(L.dense(nn.Dense(self.squeeze), g))
    g = L.activation(L.dense(nn.Dense(x.shape[-1]), g), "hard_sigmoid")
    return L.gate(x, g)


class Bottleneck(nn.Module):
  """MobileNetV3 inverted residual block (expand, depthwise, SE, project)."""
  kernel: int
  expand: int
  out: int
  se: bool
  act: str
  strides: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = x
    if self.expand != x.shape[-1]:
      y = _conv_bn(y, self.expand, 1, train, act=self.act)
    y = _conv_bn(y, self.expand, self.kernel, train, strides=self.strides,
                 groups=self.expand, act=self.act)
    if self.se:
      y = SqueezeExcite(make_divisible(self.expand / 4))(y)
    y = _conv_bn(y, self.out, 1, train, act=None)
    if self.strides == 1 and x.shape[-1] == self.out:
      y = L.add(y, x)
    return y


class MobileNetV3Small(nn.Module):
  """MobileNetV3-small backbone + LR-ASPP head (see the module docstring)."""
  num_classes: int
  width: float = 1.0
  stem_stride: int = 2
  first_stride: int = 2
  head_channels: int = 128
  blocks: Sequence[tuple] = MOBILENET_V3_SMALL

  @nn.compact
  def __call__(self, x, *, train: bool):
    ch = functools.partial(make_divisible, divisor=8)
    strides = [int(b[5]) for b in self.blocks]
    strides[0] = int(self.first_stride)
    total = int(self.stem_stride)
    for s in strides:
      total *= s
    if x.shape[1] % total or x.shape[2] % total:
      raise ValueError(f"MobileNetV3Small needs H and W divisible by its "
                       f"output stride {total}, got {x.shape[1:3]}")
    last_down = max(i for i, s in enumerate(strides) if s == 2) if 2 in \
        strides else len(strides)
    y = _conv_bn(x, ch(16 * self.width), 3, train, strides=self.stem_stride,
                 act="hard_swish")
    low, low_stride, stride = y, int(self.stem_stride), int(self.stem_stride)
    for i, ((k, e, o, se, act, _), s) in enumerate(zip(self.blocks, strides)):
      if i == last_down:
        low, low_stride = y, stride
      y = Bottleneck(k, ch(e * self.width), ch(o * self.width), se, act,
                     s)(y, train=train)
      stride *= s
    # Lite R-ASPP head.
    h = _conv_bn(y, self.head_channels, 1, train)
    g = L.global_avg_pool(y)
    g = L.activation(L.dense(nn.Dense(self.head_channels), g), "sigmoid")
    h = L.gate(h, g)
    up = stride // low_stride
    if up > 1:
      h = L.upsample(h, up)
    h = L.conv(nn.Conv(self.num_classes, (1, 1)), h)
    lo = L.conv(nn.Conv(self.num_classes, (1, 1)), low)
    out = L.add(h, lo)
    if low_stride > 1:
      out = L.upsample(out, low_stride)
    return out


class MobileNetV3SmallSeg32(MobileNetV3Small):
  """For 32x32 inputs: stem and first block at stride 1 (output stride 8)."""
  stem_stride: int = 1
  first_stride: int = 1
