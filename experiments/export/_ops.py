r"""Float32 NumPy implementations of the parameter-free ops and BatchNorm.

Formulas are those of the layer-list spec (``_spec.py``); BatchNorm follows
Flax's order of operations, :math:`y = (x - \mu)\,(\mathrm{rsqrt}(\sigma^2
+ \epsilon)\,\gamma) + \beta`, so float layers agree with JAX to float32
rounding.
"""
from __future__ import annotations

import numpy as np

from experiments.export._spec import ACTIVATION_KINDS
from experiments.export._spec import INPUT_QUANTIZERS as _QUANTIZER_NAMES

F32 = np.float32


def _relu6(x):
  return np.minimum(np.maximum(x, F32(0)), F32(6))


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, F32(0)),
    "relu6": _relu6,
    "sigmoid": lambda x: F32(1) / (F32(1) + np.exp(-x)),
    "tanh": np.tanh,
    "hard_sigmoid": lambda x: _relu6(x + F32(3)) / F32(6),
    "hard_swish": lambda x: x * _relu6(x + F32(3)) / F32(6),
    "hard_tanh": lambda x: np.clip(x, F32(-1), F32(1)),
    "abs": np.abs,
}


if tuple(ACTIVATIONS) != ACTIVATION_KINDS:  # one entry per kind of the spec
  raise AssertionError(f"{sorted(ACTIVATIONS)} != {sorted(ACTIVATION_KINDS)}")


def wta(g, k):
  """k-winners-take-all over the last axis (the ``wta`` op): per row the k
  largest entries are kept, the others set to exactly 0; among equal values
  the lower index wins (a stable sort of -g, as ``jax.lax.top_k``).  k = C
  returns g itself."""
  c = g.shape[-1]
  if k >= c:
    return g
  order = np.argsort(-g, axis=-1, kind="stable")[..., :k]
  keep = np.zeros(g.shape, bool)
  np.put_along_axis(keep, order, True, axis=-1)
  return np.where(keep, g, F32(0))


def sign(x):
  """+1 where x >= 0 else -1 (sign(0) = +1)."""
  return np.where(x >= 0, F32(1), F32(-1))


def heaviside(x):
  """1 where x > 0 else 0."""
  return np.where(x > 0, F32(1), F32(0))


INPUT_QUANTIZERS = {None: None, "sign": sign, "heaviside": heaviside}
if tuple(INPUT_QUANTIZERS) != _QUANTIZER_NAMES:
  raise AssertionError(f"{INPUT_QUANTIZERS} != {_QUANTIZER_NAMES}")


def batchnorm_affine(mean, var, scale, bias, epsilon):
  """(mul, add) with y = (x - mean) * mul + add, Flax's order."""
  mul = (F32(1) / np.sqrt(var.astype(F32) + F32(epsilon))).astype(F32)
  if scale is not None:
    mul = mul * scale.astype(F32)
  return mul, (np.zeros_like(mul) if bias is None else bias.astype(F32))


def _ordered(x):
  """float32 -> int64 keys with the order of the floats (-0 == +0)."""
  b = np.asarray(x, F32).view(np.int32).astype(np.int64)
  return np.where(b >= 0, b, -(b & 0x7FFFFFFF))


def _unordered(k):
  """Inverse of :func:`_ordered` (key 0 -> +0)."""
  k = np.asarray(k, np.int64)
  b = np.where(k >= 0, k, (-k) | 0x80000000)
  return b.astype(np.uint32).view(np.int32).view(F32)


def batchnorm_threshold(mean, var, scale, bias, epsilon):
  r"""BatchNorm followed by sign, as one threshold per channel.

  The model computes :math:`\mathrm{sign}(f(x))` with sign(0) = +1 and
  :math:`f(x) = \mathrm{fl}(\mathrm{fl}(\mathrm{fl}(x - \mu)\,m) +
  \beta)`, :math:`m = \mathrm{rsqrt}(\sigma^2 + \epsilon)\,\gamma`
  (:func:`batchnorm_affine`, float32).  In exact arithmetic
  :math:`\mathrm{sign}(f(x)) = s\,\mathrm{sign}(x - t)` with
  :math:`t = \mu - \beta\sqrt{\sigma^2 + \epsilon}/\gamma` and
  :math:`s = \mathrm{sign}(\gamma)`, +1 at the tie x = t.  Each float32
  rounding is monotone, so the float32 f is monotone too and
  :math:`\{x : f(x) \ge 0\}` is exactly :math:`\{x \ge t\}` (m > 0)
  or :math:`\{x \le t\}` (m < 0) for a float32 t, which may differ by
  a few ulps from the real-valued t (computed in float64 as the start of
  the search).  This t is found by bisection over the float32 values
  (ordered as integers), so the threshold reproduces the float32 formula
  for *every* float32 x, ties included.  m == 0 (gamma == 0): the output
  is the constant sign(beta): t = -inf (always +1) or +inf (never, for
  finite x).  NaN x gives -1 either way.

  Returns:
    (t float32 (C,), direction bool (C,): True where m < 0, i.e. +1 iff
    x <= t), or None when some m or parameter is not finite (the caller
    keeps the four vectors).
  """
  mean = np.asarray(mean, F32)
  with np.errstate(divide="ignore", invalid="ignore"):
    mul, add = batchnorm_affine(mean, np.asarray(var, F32), scale, bias,
                                epsilon)
  if not (np.all(np.isfinite(mul)) and np.all(np.isfinite(mean)) and
          np.all(np.isfinite(add))):
    return None
  flip = mul < 0
  sgn = np.where(flip, F32(-1), F32(1))

  def up(z):  # the model's sign(f(sgn * z)) >= 0: non-decreasing in z
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 (m == 0)
      return ((sgn * z - mean) * mul + add) >= F32(0)

  # Float64 real-valued threshold (in z = sgn * x units), the first probe.
  with np.errstate(divide="ignore", invalid="ignore"):
    t64 = (mean.astype(np.float64) - add.astype(np.float64) /
           mul.astype(np.float64)) * sgn
  lo = np.full(mean.shape, _ordered(F32(-np.inf)), np.int64)  # up() false
  hi = np.full(mean.shape, _ordered(F32(np.inf)), np.int64)   # up() true
  probe = _ordered(np.where(np.isfinite(t64), t64, 0.0).astype(F32))
  for _ in range(70):  # first probe t64, then bisection: < 64 more steps
    live = hi - lo > 1
    if not live.any():
      break
    mid = np.where((probe > lo) & (probe < hi), probe, lo + (hi - lo) // 2)
    ok = up(_unordered(mid))
    hi = np.where(live & ok, mid, hi)
    lo = np.where(live & ~ok, mid, lo)
    probe = np.full_like(probe, lo.min() - 1)  # only the first probe
  t = _unordered(hi) * sgn
  const = mul == 0  # f = +-0 + beta: +1 iff beta >= 0 (sign(-0) = +1)
  t = np.where(const, np.where(add >= 0, F32(-np.inf), F32(np.inf)), t)
  flip = flip & ~const
  return t.astype(F32), flip


def threshold_sign(x, t, direction):
  """+1 where x >= t (x <= t where ``direction``), else -1, per channel
  (the last axis); :func:`batchnorm_threshold`'s encoding."""
  sgn = np.where(direction, F32(-1), F32(1))
  return np.where(x * sgn >= t * sgn, F32(1), F32(-1))


def pad_nhwc(x, padding, value):
  (t, b), (l, r) = padding
  if not (t or b or l or r):
    return x
  return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def windows(x, window, strides):
  """(N, H, W, C) -> (N, Ho, Wo, C, KH, KW) view, strided."""
  w = np.lib.stride_tricks.sliding_window_view(x, tuple(window), axis=(1, 2))
  return w[:, ::strides[0], ::strides[1]]


def pool(x, entry):
  """The ``pool`` op (global or windowed, max or avg)."""
  kind = entry["kind"]
  if entry["global"]:
    return x.mean(axis=(1, 2), dtype=F32) if kind == "avg" else x.max(
        axis=(1, 2))
  window, strides, padding = entry["window"], entry["strides"], entry[
      "padding"]
  if kind == "max":
    return windows(pad_nhwc(x, padding, -np.inf), window, strides).max(
        axis=(-2, -1))
  sums = windows(pad_nhwc(x, padding, 0.0), window, strides).sum(
      axis=(-2, -1), dtype=F32)
  if entry["count_include_pad"]:
    return sums / F32(window[0] * window[1])
  ones = pad_nhwc(np.ones((1,) + x.shape[1:3] + (1,), F32), padding, 0.0)
  return sums / windows(ones, window, strides).sum(axis=(-2, -1))


def im2col(x, kernel_size, strides, padding, out_hw):
  """(N, H, W, C) -> (N * Ho * Wo, KH * KW * C) patches, (kh, kw, c)
  order (Flax HWIO kernels reshape to (KH * KW * C, O) in the same order)."""
  kh, kw = kernel_size
  ho, wo = out_hw
  win = windows(pad_nhwc(x, padding, 0.0), (kh, kw), strides)[:, :ho, :wo]
  n, c = x.shape[0], x.shape[3]
  return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(
      n * ho * wo, kh * kw * c)


def conv_out_hw(in_hw, kernel_size, strides, padding):
  return tuple((in_hw[i] + padding[i][0] + padding[i][1] - kernel_size[i])
               // strides[i] + 1 for i in range(2))
