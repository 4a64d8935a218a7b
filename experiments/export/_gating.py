r"""Skipping the channels that an FBS gate zeroes (``Model(skip_gated=True)``).

Feature Boosting and Suppression (Gao et al., ICLR 2019) gates a conv
layer's output channels per example:

.. math::

   y[n, h, w, c] = f_c(\mathrm{conv}(x)[n, h, w, c])\;\pi[n, c],
   \qquad \pi = \mathrm{wta}_k(g)

where :math:`f_c` is a chain of per-channel ops (BatchNorm without scale,
activations) and :math:`\pi[n, c] = 0` for all but k channels of each
example.  Where :math:`\pi[n, c] = 0`, :math:`y[n, :, :, c] = 0` whatever
the conv computed (for finite values), so the conv need not compute it;
and a later conv whose input comes from y through zero-preserving ops
(relu, max/avg pooling ...) sees exactly-zero input channels for that
example, so it need not read them.  With :math:`k_o` of :math:`C_o`
output and :math:`k_i` of :math:`C_i` input channels kept, a conv does
:math:`k_i k_o / (C_i C_o)` of its MACs (d^2 for density d in both).

Plan (:func:`find`, from the layer list, at load time):

``out``  a conv whose output reaches input 0 of a ``gate`` whose g is a
         ``wta`` output, through per-channel single-input ops
         (``batchnorm``, ``activation``, ``sign``) each read by nothing
         else, the conv itself read only by that chain, and the ``wta``
         earlier in the list than the conv (so its value exists when the
         conv runs).
``in``   a conv whose input is such a gate's output, through ops that map
         an all-zero channel to an all-zero channel: ``activation`` relu,
         relu6, tanh, hard_tanh, abs, hard_swish; ``pool`` that is not
         global, avg or max with every padding smaller than the window
         (each window holds a real element); ``upsample``; another gate.

Only float convs computed by BLAS (no input quantizer, one group) are
planned; CSR and XNOR layers run as before.

Run (:class:`GatedConv`): per example, the kept channels are those with
g != 0 (:func:`kept`: at most k of them; they are padded to the batch's
largest count with zero-gated channels, computed and discarded, so that
all examples share one shape).  The input is gathered to the kept input
channels, unfolded into patches (``_ops.im2col``), and multiplied by a
per-example kernel gathered to (taps x kept inputs, kept outputs) with one
batched ``np.matmul`` per chunk of examples; the products are scattered
into zeros.  The three gathers are numba loops (``Model(use_numba=...)``)
with NumPy twins (fancy indexing, ``take_along_axis``,
``put_along_axis``) giving identical arrays.  When every channel is kept
the layer's normal path runs.  Results differ from the full computation
by float32 summation order only (assuming finite activations: the full
computation turns an inf or NaN in a suppressed channel into NaN, the
skipping one into 0).  ``GatedConv.macs`` accumulates the MACs done
(padding channels included) and the dense MACs.

Where the time goes (``bench/fbs_gating.py``): the products are per
example, so for small feature maps (8x8 and below) BLAS is less
efficient on them and the gathers weigh more; time falls less than MACs.
"""
from __future__ import annotations

import numpy as np

from experiments.export import _kernels
from experiments.export import _ops
from experiments.export._spec import ZERO_PRESERVING

F32 = np.float32
# Per-channel ops through which the gate reaches back to the conv.
_PER_CHANNEL = ("batchnorm", "activation", "sign")
# Floats per chunk of examples, for the gathered kernels and for the patches:
# 1 MiB buffers stay in cache and are reused by malloc (large, fresh ones
# cost page faults; 16 MiB chunks made the 8x8 convs of M-CifarNet at
# d = 0.75 twice as slow as computing every channel, bench/fbs_gating.py).
_KERNEL_CHUNK = 1 << 18
_PATCH_CHUNK = 1 << 18


def _keeps_zero_channels(e: dict) -> bool:
  op = e["op"]
  if op == "activation":
    return e["kind"] in ZERO_PRESERVING
  if op == "upsample":
    return True
  if op == "pool":
    if e["global"]:
      return False
    return all(p < w for pair, w in zip(e["padding"], e["window"])
               for p in pair)
  return False


def find(layers: list[dict], eligible: set[str]) -> dict[str, dict]:
  """{conv name: {"out": wta name or None, "in": wta name or None}} for the
  convs in ``eligible`` that can skip channels (module docstring)."""
  by_name = {e["name"]: e for e in layers}
  index = {e["name"]: i for i, e in enumerate(layers)}
  readers: dict[str, int] = {}
  for e in layers:
    for i in e["inputs"]:
      readers[i] = readers.get(i, 0) + 1

  def gate_wta(e):
    """The wta feeding gate entry e as g, or None."""
    if e["op"] != "gate":
      return None
    g = by_name.get(e["inputs"][1])
    return g["name"] if g is not None and g["op"] == "wta" else None

  plan: dict[str, dict] = {}
  zero_source: dict[str, str] = {}  # tensor -> wta whose zeros it has
  for e in layers:
    w = gate_wta(e)
    if w is not None:
      zero_source[e["name"]] = w
      node = by_name.get(e["inputs"][0])
      while (node is not None and node["op"] in _PER_CHANNEL and
             readers.get(node["name"]) == 1):
        node = by_name.get(node["inputs"][0])
      if (node is not None and node["name"] in eligible and
          readers.get(node["name"]) == 1 and index[w] < index[node["name"]]):
        plan.setdefault(node["name"], {"out": None, "in": None})["out"] = w
    elif e["op"] == "gate" and e["inputs"][0] in zero_source:
      zero_source[e["name"]] = zero_source[e["inputs"][0]]
    elif _keeps_zero_channels(e) and e["inputs"][0] in zero_source:
      zero_source[e["name"]] = zero_source[e["inputs"][0]]
    if e["name"] in eligible and e["inputs"][0] in zero_source:
      plan.setdefault(e["name"], {"out": None, "in": None})["in"] = (
          zero_source[e["inputs"][0]])
  return plan


if _kernels.numba is not None:
  _njit = _kernels.numba.njit(cache=True)

  @_njit
  def _gather_kernel_nb(w, idx_in, idx_out, out):  # pragma: no cover
    """out[n, t, i, o] = w[t, idx_in[n, i], idx_out[n, o]]."""
    for n in range(out.shape[0]):
      for t in range(out.shape[1]):
        for i in range(out.shape[2]):
          row = w[t, idx_in[n, i]]
          for o in range(out.shape[3]):
            out[n, t, i, o] = row[idx_out[n, o]]

  @_njit
  def _take_channels_nb(x, idx, out):  # pragma: no cover
    """out[n, ..., i] = x[n, ..., idx[n, i]] (x as (N, HW, C))."""
    for n in range(out.shape[0]):
      for p in range(out.shape[1]):
        for i in range(out.shape[2]):
          out[n, p, i] = x[n, p, idx[n, i]]

  @_njit
  def _scatter_channels_nb(y, idx, out):  # pragma: no cover
    """out[n, p, idx[n, o]] = y[n, p, o] (out zero elsewhere)."""
    for n in range(y.shape[0]):
      for p in range(y.shape[1]):
        for o in range(y.shape[2]):
          out[n, p, idx[n, o]] = y[n, p, o]


def _c(idx, n):
  """``idx`` as a C-contiguous int64 (n, k) array (one numba signature)."""
  return np.ascontiguousarray(np.broadcast_to(idx, (n, idx.shape[1])),
                              np.int64)


def warm_up() -> None:
  """Compiles (or loads from numba's cache) the gathers on tiny arrays, so
  that the first batch's per-layer times do not include it."""
  if _kernels.numba is None:
    return
  idx = np.zeros((1, 1), np.int64)
  _gather_kernel(np.zeros((1, 1, 1), F32), idx, idx, True)
  _take_channels(np.zeros((1, 1, 1, 1), F32), idx, True)
  _scatter_channels(np.zeros((1, 1, 1), F32), idx, 1, True)


def _gather_kernel(w, idx_in, idx_out, use_numba):
  """(n, taps, kin, kout) = w[:, idx_in[n]][:, :, idx_out[n]] per example;
  w (taps, C_in, C_out), idx (n, k) (one row broadcast when n = 1)."""
  n = max(idx_in.shape[0], idx_out.shape[0])
  if use_numba:
    out = np.empty((n, w.shape[0], idx_in.shape[1], idx_out.shape[1]), F32)
    _gather_kernel_nb(np.ascontiguousarray(w, F32), _c(idx_in, n),
                      _c(idx_out, n), out)
    return out
  return w[np.arange(w.shape[0])[None, :, None, None],
           idx_in[:, None, :, None], idx_out[:, None, None, :]]


def _take_channels(x, idx, use_numba):
  """x[n, ..., idx[n]] of NHWC x."""
  if use_numba:
    n, h, w, c = x.shape
    out = np.empty((n, h, w, idx.shape[1]), F32)
    _take_channels_nb(np.ascontiguousarray(x, F32).reshape(n, h * w, c),
                      _c(idx, n), out.reshape(n, h * w, idx.shape[1]))
    return out
  return np.take_along_axis(x, idx[:, None, None, :], axis=3)


def _scatter_channels(y, idx, c, use_numba):
  """(n, P, c) zeros with y[n, :, o] at channel idx[n, o]."""
  out = np.zeros(y.shape[:2] + (c,), F32)
  if use_numba:
    _scatter_channels_nb(np.ascontiguousarray(y, F32), _c(idx, y.shape[0]),
                         out)
  else:
    np.put_along_axis(out, idx[:, None, :], y, axis=2)
  return out


def kept(g: np.ndarray | None, c: int) -> np.ndarray | None:
  """(N, k) indices of each row's nonzero entries of g (ascending, padded
  with zero entries to the batch's largest count k), or None when k = c
  or g is None (every channel computed)."""
  if g is None:
    return None
  nz = g != 0
  k = int(nz.sum(axis=-1).max(initial=0))
  if k >= c:
    return None
  return np.argsort(~nz, axis=-1, kind="stable")[:, :k]


class GatedConv:
  """Runs a planned conv (a ``_linear.Linear``) on the kept channels."""

  def __init__(self, lin, has_out: bool, has_in: bool):
    self.lin, self.has_out, self.has_in = lin, has_out, has_in
    self._matrix = None
    self.macs = [0, 0]  # [done, dense] multiply-accumulates, accumulated

  def _kernel(self) -> np.ndarray:
    """The layer's kernel as (KH * KW, C_in, C_out) (the (kh, kw, c)
    patch order of ``_ops.im2col``), re-read if the matrix changed
    (BatchNorm folded)."""
    if self._matrix is not self.lin.matrix:
      kh, kw = self.lin.ks
      m = self.lin.matrix
      self._wc = m.reshape(kh * kw, -1, m.shape[-1])
      self._matrix = m
    return self._wc

  def __call__(self, xs) -> np.ndarray:
    x = xs[0]
    rest = list(xs[1:])
    g_out = rest.pop(0) if self.has_out else None
    g_in = rest.pop(0) if self.has_in else None
    lin = self.lin
    n, cin, cout = x.shape[0], x.shape[-1], lin.cout
    if g_in is not None and g_in.shape != (n, cin):
      raise ValueError(f"gate of {g_in.shape} for input {x.shape}")
    if g_out is not None and g_out.shape != (n, cout):
      raise ValueError(f"gate of {g_out.shape} for output channels {cout}")
    idx_out, idx_in = kept(g_out, cout), kept(g_in, cin)
    ho, wo = lin.out_hw
    taps = lin.ks[0] * lin.ks[1]
    dense_macs = n * ho * wo * taps * cin * cout
    self.macs[1] += dense_macs
    if idx_out is None and idx_in is None:
      self.macs[0] += dense_macs
      return lin(x)
    kin = cin if idx_in is None else idx_in.shape[1]
    kout = cout if idx_out is None else idx_out.shape[1]
    self.macs[0] += n * ho * wo * taps * kin * kout
    wc = self._kernel()
    nb = lin.use_numba and _kernels.numba is not None
    ii = np.arange(cin)[None] if idx_in is None else idx_in
    oo = np.arange(cout)[None] if idx_out is None else idx_out
    y = np.zeros((n, ho * wo, kout), F32)
    per_kernel = max(1, taps * kin * kout)
    per_patch = max(1, ho * wo * taps * kin)
    step = max(1, min(_KERNEL_CHUNK // per_kernel, _PATCH_CHUNK // per_patch))
    for s in range(0, n, step):
      sl = slice(s, min(n, s + step))
      xc = x[sl]
      if idx_in is not None:
        xc = _take_channels(xc, idx_in[sl], nb)
      if kin == 0 or kout == 0:
        continue
      cols = _ops.im2col(xc, lin.ks, lin.strides, lin.padding, lin.out_hw)
      cols = cols.reshape(xc.shape[0], ho * wo, taps * kin)
      w = _gather_kernel(wc, ii[sl] if idx_in is not None else ii,
                         oo[sl] if idx_out is not None else oo, nb)
      np.matmul(cols, w.reshape(w.shape[0], taps * kin, kout), out=y[sl])
    if idx_out is not None:
      y = _scatter_channels(y, idx_out, cout, nb)
    y = y.reshape(n, ho, wo, cout)
    if lin.bias is not None:
      y = y + lin.bias
    return np.ascontiguousarray(y, F32)
