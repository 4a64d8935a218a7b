r"""Sparse (CSR) products for pruned float dense/conv layers.

A pruned kernel is held as the CSR matrix of
:math:`M = \mathrm{kernel.reshape}(-1, C_{out})^\top` (row = output
channel), and a batch of rows ``x2`` (P, K) (dense inputs, or conv im2col
patches) is multiplied as

.. math:: y^\top = M\,x_2^\top, \qquad y^\top_{o,:} = \sum_{k \in
   \mathrm{row}(o)} M_{ok}\, x_2^\top{}_{k,:}

i.e. for each output channel a sum of ``nnz(o)`` contiguous rows of
:math:`x_2^\top` (K, P), each a vectorised AXPY over the batch: work
proportional to the kept weights, not to the kernel size.

Two implementations (float32; they agree to float32 rounding):

``numba``  ``prange`` over output channels (every core numba is given),
           four kept weights per pass over an output row (so the row is
           loaded and stored once per four AXPYs, not once per AXPY).
``scipy``  ``scipy.sparse.csr_matrix @ x2.T`` (one core); used when numba
           is absent or disabled (``SBN_NO_NUMBA=1``).

Which one wins, and from which density down CSR beats dense BLAS, is
measured by ``python -m bench.sparse_kernels``.
"""
from __future__ import annotations

import numpy as np

from experiments.export import _kernels

try:
  import scipy.sparse as _sp
except ImportError:
  _sp = None

F32 = np.float32

if _kernels.numba is not None:
  from numba import njit, prange  # pylint: disable=g-import-not-at-top

  @njit(parallel=True, cache=True)
  def _csr_nb(indptr, indices, data, xt, out):
    """out (O, P) = M xt, xt (K, P); four kept weights per pass over the
    output row (one load/store of ``out[i]`` per four AXPYs)."""
    o = indptr.shape[0] - 1
    p = xt.shape[1]
    for i in prange(o):
      for q in range(p):
        out[i, q] = 0
      jj, end = indptr[i], indptr[i + 1]
      while jj + 4 <= end:
        v0, v1, v2, v3 = data[jj], data[jj + 1], data[jj + 2], data[jj + 3]
        c0, c1 = indices[jj], indices[jj + 1]
        c2, c3 = indices[jj + 2], indices[jj + 3]
        for q in range(p):
          out[i, q] += (v0 * xt[c0, q] + v1 * xt[c1, q]) + (
              v2 * xt[c2, q] + v3 * xt[c3, q])
        jj += 4
      while jj < end:
        v, c = data[jj], indices[jj]
        for q in range(p):
          out[i, q] += v * xt[c, q]
        jj += 1

  @njit(parallel=True, cache=True)
  def _transpose_nb(x, out):
    """out = x.T for a C-contiguous (P, K) x, in 64-column blocks."""
    p, k = x.shape
    for b in prange((k + 63) // 64):
      k0 = b * 64
      k1 = min(k, k0 + 64)
      for p0 in range(0, p, 16):
        for kk in range(k0, k1):
          for pp in range(p0, min(p, p0 + 16)):
            out[kk, pp] = x[pp, kk]


def scipy_available() -> bool:
  return _sp is not None


class Csr:
  """``Csr(matrix, use_numba)(x2) = x2 @ matrix.T`` for a (O, K) float32
  matrix given dense (zeros are dropped) or as (data, indices, indptr)."""

  def __init__(self, matrix=None, *, csr=None, use_numba: bool = True):
    if csr is None:
      rows, cols = np.nonzero(matrix)
      indptr = np.zeros(matrix.shape[0] + 1, np.int64)
      np.cumsum(np.bincount(rows, minlength=matrix.shape[0]),
                out=indptr[1:])
      csr = (matrix[rows, cols], cols, indptr)
      shape = matrix.shape
    else:
      shape = None
    data, indices, indptr = csr
    self.data = np.ascontiguousarray(data, F32)
    self.indices = np.ascontiguousarray(indices, np.int32)
    self.indptr = np.ascontiguousarray(indptr, np.int64)
    self.rows = self.indptr.shape[0] - 1
    self.cols = shape[1] if shape is not None else None
    self.nnz = int(self.data.shape[0])
    self.use_numba = bool(use_numba) and _kernels.numba is not None
    if not self.use_numba and _sp is None:
      raise ImportError("CSR products need numba or SciPy")
    self.impl = "numba" if self.use_numba else "scipy"
    self._scipy = None

  def reset(self) -> None:
    """Call after changing ``data`` in place."""
    self._scipy = None

  def _scipy_matrix(self, k):
    if self._scipy is None:
      self._scipy = _sp.csr_matrix((self.data, self.indices, self.indptr),
                                   shape=(self.rows, k))
    return self._scipy

  def __call__(self, x2: np.ndarray) -> np.ndarray:
    """(P, K) -> (P, O) float32."""
    x2 = np.asarray(x2, F32)
    if self.use_numba:
      x2 = np.ascontiguousarray(x2)
      xt = np.empty(x2.shape[::-1], F32)
      _transpose_nb(x2, xt)
      out = np.empty((self.rows, xt.shape[1]), F32)
      _csr_nb(self.indptr, self.indices, self.data, xt, out)
    else:
      xt = np.ascontiguousarray(x2.T)
      out = np.asarray(self._scipy_matrix(xt.shape[0]) @ xt, F32)
    return out.T


def numba_available() -> bool:
  return _kernels.numba is not None
