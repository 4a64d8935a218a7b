r"""XNOR-popcount kernels (numba, with a pure-NumPy twin) for binary layers.

Operands are bit planes (``_pack.py``): for a row of K weights
``w_k in {-1, 0, +1}`` and inputs ``x_k``, with sign plane ``s`` (bit 1 =
-1) and nonzero plane ``z``,

sign inputs (``x_k in {-1, +1}``, bit 1 = -1):

.. math:: \sum_k x_k w_k = \mathrm{popc}(z) - 2\,\mathrm{popc}((x \oplus s)
   \wedge z)

heaviside inputs (``x_k in {0, 1}``, bit 1 = 1):

.. math:: \sum_k x_k w_k = \mathrm{popc}(x \wedge z) - 2\,\mathrm{popc}(x
   \wedge s)

For a dense (non-ternary) kernel ``z`` is all ones over the K real bits and
the AND drops out (padding bits are 0 in both planes, so their XOR is 0).
The results are exact int32 sums.

Words.  The file stores uint32 words; :func:`widen` re-packs them at load
time into uint64 words (two uint32 words, low word first, which is the
same little bit order; an odd count gets a zero word).  Every function
here takes unsigned words of either width, the same width for all operands.

Convolutions (bit im2col).  The input bits are packed along C_in per pixel
and zero-padded spatially (a padded pixel has all bits 0, i.e. "+1" for
sign inputs, "0" for heaviside inputs).  For each output pixel the
``KH * KW * words`` words of its window are gathered into one contiguous
patch and each output channel is one popcount reduction over it, against
the weights flattened in the same (kh, kw, word) order.  A padded position
must contribute 0 (inputs are quantized *before* zero padding), but an
all-0 bit pattern contributes ``c[o, kh, kw] = popc(z) - 2 popc(s)`` for
sign inputs (0 for heaviside inputs), so sign convolutions subtract the
precomputed border correction ``sum over padded (kh, kw) of c[o, kh, kw]``
per output pixel (:class:`XnorConv`).  The NumPy twin instead masks padded
positions out, one (kh, kw) at a time: two independent computations of the
same integers.

numba kernels are ``@njit(parallel=True, cache=True)`` with ``prange``
over batch x output rows (conv) or over the batch (dense; batch x blocks of
128 outputs below 8 rows), so they use every core numba is given;
popcount is LLVM's ``ctpop``, which the reductions vectorise (AVX-512
``vpopcntq`` where the CPU has it), one loop per case with 2-D indexing
(slicing rows inside the loop or branching per word cost 2-4x).  Inputs
are quantized and packed with ``np.packbits`` (SIMD; faster than a numba
bit loop).  Measured by ``python -m bench.xnor_kernels``.  Setting the
environment variable ``SBN_NO_NUMBA=1`` (or not having numba) selects the
NumPy twin (``np.bitwise_count``), which returns identical integers.
"""
from __future__ import annotations

import os

import numpy as np

SIGN, HEAVISIDE = 0, 1

try:
  if os.environ.get("SBN_NO_NUMBA", "") not in ("", "0"):
    raise ImportError("disabled by SBN_NO_NUMBA")
  import numba
  from numba import njit, prange, types
  from numba.extending import intrinsic
except ImportError:
  numba = None


def numba_available() -> bool:
  """Whether the numba kernels can be used (importable, not disabled)."""
  return numba is not None


def widen(words: np.ndarray) -> np.ndarray:
  """uint32 words (..., W) -> uint64 words (..., ceil(W / 2)), same bits.

  Bit ``b`` of uint32 word ``w`` becomes bit ``32 * (w % 2) + b`` of uint64
  word ``w // 2``: the little bit order of :mod:`_pack` is kept.
  """
  words = np.asarray(words)
  if words.dtype == np.uint64:
    return np.ascontiguousarray(words)
  words = np.ascontiguousarray(words, dtype="<u4")
  if words.shape[-1] % 2:
    words = np.concatenate(
        [words, np.zeros(words.shape[:-1] + (1,), words.dtype)], axis=-1)
  return np.ascontiguousarray(words).view("<u8").astype(np.uint64,
                                                        copy=False)


def input_bits(x: np.ndarray, mode: int) -> np.ndarray:
  """The input plane's bits: sign -> x < 0 (NaN too: JAX's sign gives -1
  where ``x >= 0`` is false); heaviside -> x > 0."""
  return ~(x >= 0) if mode == SIGN else (x > 0)


# ------------------------------------------------------------------ numba --
if numba is not None:

  @intrinsic
  def _popc(typingctx, x):  # pylint: disable=unused-argument
    """LLVM ctpop of an unsigned integer."""
    if not isinstance(x, types.Integer) or x.signed:
      return None

    def codegen(context, builder, signature, args):
      del context, signature
      return builder.ctpop(args[0])

    return x(x), codegen

  @njit(inline="always")
  def _rows(p, pi, sb, zb, base, mode, ternary, j0, j1, out, oi, corr, ci,
            has_corr):
    """out[oi + (j,)] = exact sum of row ``p[pi]`` against weight rows
    j0 <= j < j1 (one loop per case, 2-D indexing: they vectorise)."""
    n = p.shape[1]
    pcount = np.int64(0)
    if mode == 1 and not ternary:
      for q in range(n):
        pcount += np.int64(_popc(p[pi, q]))
    if mode == 0 and not ternary:
      for j in range(j0, j1):
        c = np.int64(0)
        for q in range(n):
          c += np.int64(_popc(p[pi, q] ^ sb[j, q]))
        out[oi, j] = base[j] - 2 * c - (corr[ci, j] if has_corr else 0)
    elif mode == 0:
      for j in range(j0, j1):
        c = np.int64(0)
        for q in range(n):
          c += np.int64(_popc((p[pi, q] ^ sb[j, q]) & zb[j, q]))
        out[oi, j] = base[j] - 2 * c - (corr[ci, j] if has_corr else 0)
    elif not ternary:
      for j in range(j0, j1):
        c = np.int64(0)
        for q in range(n):
          c += np.int64(_popc(p[pi, q] & sb[j, q]))
        out[oi, j] = pcount - 2 * c
    else:
      for j in range(j0, j1):
        a = np.int64(0)
        c = np.int64(0)
        for q in range(n):
          a += np.int64(_popc(p[pi, q] & zb[j, q]))
          c += np.int64(_popc(p[pi, q] & sb[j, q]))
        out[oi, j] = a - 2 * c

  @njit(parallel=True, cache=True)
  def _dense_nb(xb, sb, zb, base, mode, ternary, out):
    n = xb.shape[0]
    o = sb.shape[0]
    nocorr = base.reshape(1, -1)
    if n >= 8:  # enough rows for every thread: one row per task
      for i in prange(n):
        _rows(xb, i, sb, zb, base, mode, ternary, 0, o, out, i, nocorr, 0,
              False)
      return
    block = 128  # small batches: split the outputs too
    nblk = (o + block - 1) // block
    for t in prange(n * nblk):
      i = t // nblk
      j0 = (t - i * nblk) * block
      _rows(xb, i, sb, zb, base, mode, ternary, j0, min(o, j0 + block), out,
            i, nocorr, 0, False)

  @njit(parallel=True, cache=True)
  def _conv_nb(xp, sf, zf, base, corr, kh_, kw_, sh, sw, ho, wo, mode,
               ternary, has_corr, out):
    """xp (N, Hp, Wp, nw) zero-padded bits; sf/zf (O, KH*KW*nw);
    corr (Ho*Wo, O); out (N*Ho*Wo, O)."""
    n, hp, wp, nw = xp.shape
    o, length = sf.shape
    row = kw_ * nw
    for t in prange(n * ho):
      b = t // ho
      oh = t - b * ho
      patch = np.empty((1, length), xp.dtype)
      for ow in range(wo):
        for kh in range(kh_):
          for kw in range(kw_):
            at = kh * row + kw * nw
            for q in range(nw):
              patch[0, at + q] = xp[b, oh * sh + kh, ow * sw + kw, q]
        _rows(patch, 0, sf, zf, base, mode, ternary, 0, o, out,
              t * wo + ow, corr, oh * wo + ow, has_corr)


# ------------------------------------------------------------------ numpy --
def _popc_np(words: np.ndarray) -> np.ndarray:
  return np.bitwise_count(words).astype(np.int32)


def _dense_np(xb, sb, zb, k, mode, ternary):
  """(N, W) x (O, W) -> int32 (N, O), in row chunks to bound memory."""
  n = xb.shape[0]
  out = np.empty((n, sb.shape[0]), np.int32)
  step = max(1, (1 << 22) // max(1, sb.size))
  for a in range(0, n, step):
    x = xb[a:a + step, None, :]
    if mode == SIGN:
      v = x ^ sb[None]
      if ternary:
        v &= zb[None]
        base = _popc_np(zb).sum(-1)
      else:
        base = np.int32(k)
      out[a:a + step] = base - 2 * _popc_np(v).sum(-1)
    else:
      pos = _popc_np(x & zb[None]).sum(-1) if ternary else (
          _popc_np(x).sum(-1))
      out[a:a + step] = pos - 2 * _popc_np(x & sb[None]).sum(-1)
  return out


def _conv_np(xb, sb, zb, cin, strides, padding, out_hw, mode, ternary):
  """Direct conv in NumPy: one (kh, kw) position at a time, padded
  positions masked out (they contribute 0)."""
  n, h, w, nw = xb.shape
  o, kh_, kw_ = sb.shape[:3]
  (pt, pb), (pl, pr) = padding
  ho, wo = out_hw
  sh, sw = strides
  xp = np.zeros((n, h + pt + pb, w + pl + pr, nw), xb.dtype)
  xp[:, pt:pt + h, pl:pl + w] = xb
  valid = _valid(h, w, padding)
  out = np.zeros((n, ho, wo, o), np.int32)
  for i in range(kh_):
    for j in range(kw_):
      xs = xp[:, i:i + sh * ho:sh, j:j + sw * wo:sw][:, :ho, :wo]
      v = valid[i:i + sh * ho:sh, j:j + sw * wo:sw][:ho, :wo]
      s = sb[:, i, j]                                   # (O, W)
      z = zb[:, i, j] if ternary else None
      for a in range(n):
        x = xs[a][:, :, None, :]                        # (Ho, Wo, 1, W)
        if mode == SIGN:
          d = x ^ s
          if ternary:
            d &= z
            base = _popc_np(z).sum(-1)
          else:
            base = np.int32(cin)
          term = base - 2 * _popc_np(d).sum(-1)
        else:
          pos = _popc_np(x & z).sum(-1) if ternary else _popc_np(x).sum(-1)
          term = pos - 2 * _popc_np(x & s).sum(-1)
        out[a] += np.where(v[:, :, None], term, 0).astype(np.int32)
  return out


def _valid(h, w, padding):
  (pt, pb), (pl, pr) = padding
  valid = np.zeros((h + pt + pb, w + pl + pr), bool)
  valid[pt:pt + h, pl:pl + w] = True
  return valid


# ------------------------------------------------------------ the layers --
class XnorDense:
  """A binary dense layer's product, prepared at load time.

  ``XnorDense(sign, nonzero, k, mode)(x)`` is the exact int32
  ``q(x) @ view(W)`` of float inputs ``x`` (N, K), ``q`` the input
  quantizer of ``mode``; ``sign`` / ``nonzero`` are the stored (O, W)
  planes (``nonzero`` None for a kernel without zeros).
  """

  def __init__(self, sign, nonzero, k: int, mode: int, *,
               use_numba: bool = True):
    self.k, self.mode = int(k), mode
    self.use_numba = bool(use_numba) and numba is not None
    self.ternary = nonzero is not None
    self.sign = widen(sign)
    self.nonzero = widen(nonzero) if self.ternary else None
    if self.ternary:
      self.base = np.bitwise_count(self.nonzero).sum(-1).astype(np.int64)
    else:
      self.base = np.full((self.sign.shape[0],), self.k, np.int64)

  def pack(self, x: np.ndarray) -> np.ndarray:
    return pack_input(x, self.mode)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return self.run_packed(self.pack(x))

  def run_packed(self, xb: np.ndarray) -> np.ndarray:
    if not self.use_numba:
      return _dense_np(xb, self.sign, self.nonzero, self.k, self.mode,
                       self.ternary)
    out = np.empty((xb.shape[0], self.sign.shape[0]), np.int32)
    zb = self.nonzero if self.ternary else self.sign[:1]
    _dense_nb(np.ascontiguousarray(xb), self.sign, zb, self.base, self.mode,
              self.ternary, out)
    return out


class XnorConv:
  """A binary convolution's product, prepared for one input size.

  ``XnorConv(...)(x)`` is the exact int32 cross-correlation of ``q(x)``
  (N, H, W, C_in), zero padded after quantization, with ``view(W)``;
  ``sign`` / ``nonzero`` are the stored (O, KH, KW, W) planes.
  """

  def __init__(self, sign, nonzero, cin: int, in_hw, strides, padding,
               mode: int, *, use_numba: bool = True):
    self.cin, self.mode = int(cin), mode
    self.use_numba = bool(use_numba) and numba is not None
    self.ternary = nonzero is not None
    self.in_hw = tuple(int(d) for d in in_hw)
    self.strides = tuple(int(s) for s in strides)
    self.padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    self.sign = widen(sign)                           # (O, KH, KW, nw)
    self.nonzero = widen(nonzero) if self.ternary else None
    o, kh, kw, _ = self.sign.shape
    self.ks = (kh, kw)
    (pt, pb), (pl, pr) = self.padding
    h, w = self.in_hw
    self.out_hw = ((h + pt + pb - kh) // self.strides[0] + 1,
                   (w + pl + pr - kw) // self.strides[1] + 1)
    self.sf = self.sign.reshape(o, -1)
    self.zf = self.nonzero.reshape(o, -1) if self.ternary else self.sf[:1]
    # What an all-0 bit pattern contributes at each (o, kh, kw).
    s = np.bitwise_count(self.sign).sum(-1).astype(np.int64)
    if self.ternary:
      z = np.bitwise_count(self.nonzero).sum(-1).astype(np.int64)
    else:
      z = np.full(s.shape, self.cin, np.int64)
    self.base = z.sum((1, 2)) if mode == SIGN else np.zeros(o, np.int64)
    if mode == SIGN and (pt or pb or pl or pr):
      zero = np.moveaxis(z - 2 * s, 0, -1)            # (KH, KW, O)
      valid = _valid(h, w, self.padding)
      ho, wo = self.out_hw
      sh, sw = self.strides
      corr = np.zeros((ho, wo, o), np.int64)
      for i in range(kh):
        for j in range(kw):
          pad = ~valid[i:i + sh * ho:sh, j:j + sw * wo:sw][:ho, :wo]
          corr += pad[:, :, None] * zero[i, j]
      self.corr = corr.reshape(ho * wo, o)
    else:
      self.corr = None

  def pack(self, x: np.ndarray) -> np.ndarray:
    return pack_input(x, self.mode)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return self.run_packed(self.pack(x))

  def run_packed(self, xb: np.ndarray) -> np.ndarray:
    """int32 (N, Ho, Wo, O) of the packed input (N, H, W, nw)."""
    if not self.use_numba:
      return _conv_np(xb, self.sign, self.nonzero, self.cin, self.strides,
                      self.padding, self.out_hw, self.mode, self.ternary)
    (pt, pb), (pl, pr) = self.padding
    n, h, w, nw = xb.shape
    if pt or pb or pl or pr:
      xp = np.zeros((n, h + pt + pb, w + pl + pr, nw), xb.dtype)
      xp[:, pt:pt + h, pl:pl + w] = xb
    else:
      xp = np.ascontiguousarray(xb)
    ho, wo = self.out_hw
    o = self.sf.shape[0]
    out = np.empty((n * ho * wo, o), np.int32)
    corr = self.corr if self.corr is not None else np.zeros((ho * wo, o),
                                                            np.int64)
    _conv_nb(xp, self.sf, self.zf, self.base, corr, self.ks[0], self.ks[1],
             self.strides[0], self.strides[1], ho, wo, self.mode,
             self.ternary, self.corr is not None, out)
    out = out.reshape(n, ho, wo, o)
    return out


# ------------------------------------------------------------------- API --
def pack_input(x: np.ndarray, mode: int) -> np.ndarray:
  """Quantizes and packs float inputs along the last axis: uint64 words
  (..., ceil(K / 64)), bits as :func:`input_bits` (``np.packbits``, which
  is SIMD and faster than a numba loop)."""
  from experiments.export import _pack  # pylint: disable=g-import-not-at-top
  return widen(_pack.pack(input_bits(np.asarray(x, np.float32), mode)))


def xnor_dense(xb: np.ndarray, sb: np.ndarray, zb: np.ndarray | None,
               k: int, mode: int, *, use_numba: bool = True) -> np.ndarray:
  """Exact int32 ``x @ w.T`` of bit planes.

  Args:
    xb: (N, W) input plane (sign: bit 1 = -1; heaviside: bit 1 = 1).
    sb: (O, W) weight sign plane.
    zb: (O, W) weight nonzero plane, or None (no zero weights).
    k: the number of real bits per row (K).
    mode: :data:`SIGN` or :data:`HEAVISIDE`.
    use_numba: False forces the NumPy twin.

  All planes are unsigned words of one width (uint32 or uint64).
  """
  layer = XnorDense(sb, zb, k, mode, use_numba=use_numba)
  return layer.run_packed(widen(xb))


def xnor_conv(xb: np.ndarray, sb: np.ndarray, zb: np.ndarray | None,
              cin: int, strides, padding, out_hw, mode: int, *,
              use_numba: bool = True) -> np.ndarray:
  """Exact int32 2-D cross-correlation of bit planes, zero padding.

  Args:
    xb: (N, H, W, Wc) unsigned words, x packed along C_in per pixel.
    sb: (O, KH, KW, Wc) weight sign plane.
    zb: same shape, nonzero plane, or None.
    cin: C_in (real bits per pixel).
    strides: (SH, SW).  padding: ((top, bottom), (left, right)).
    out_hw: (Ho, Wo), checked against the geometry.
    mode: :data:`SIGN` or :data:`HEAVISIDE`.
    use_numba: False forces the NumPy twin.
  Returns:
    (N, Ho, Wo, O) int32.
  """
  layer = XnorConv(sb, zb, cin, xb.shape[1:3], strides, padding, mode,
                   use_numba=use_numba)
  if tuple(layer.out_hw) != tuple(out_hw):
    raise ValueError(f"out_hw {tuple(out_hw)} does not match the geometry "
                     f"({layer.out_hw})")
  return layer.run_packed(widen(xb))
