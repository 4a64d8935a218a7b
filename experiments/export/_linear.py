r"""Dense and conv layers of a loaded file, with the kernel chosen at load.

Three kernels, chosen per layer when the file is loaded (and reported):

``xnor``   binary kernel (``kernel_quantizer`` set) *and* binary inputs
           (``input_quantizer`` sign/heaviside, or the output of a ``sign``
           op, as in NIN): XNOR-popcount on bit planes
           (``_kernels.py``), exact int32 accumulations, then
           ``y = acc * alpha + bias`` in float32.
``csr``    a float product with a kernel of density (nonzero fraction)
           at most :data:`SPARSE_MAX_DENSITY`: the CSR product of
           ``_sparse.py`` (numba, or SciPy without numba) with
           M = kernel.reshape(-1, C_out).T, ``y^T = M x^T`` (conv: on the
           im2col patches); reported as ``csr-numba`` / ``csr-scipy``.
``blas``   otherwise: float32 matmul (conv: im2col + matmul).

Binary kernels with real inputs (BinaryConnect) take csr/blas on the
unpacked view (+-1, 0, times alpha).  A layer holding a folded BatchNorm
(``"batchnorm": "folded"`` in its storage, format version 3) multiplies by
the +-1 / 0 view and computes ``y * scale + shift`` (reported ``+bn``).
The CSR thresholds :data:`SPARSE_MAX_DENSITY` (``{"numba": 0.2, "scipy":
0.1}``) are read from ``python -m bench.sparse_kernels`` (1024x1024 dense
layer, batch 64, one thread, CPU time, transposes included): the numba CSR
beats BLAS by about 5x at density 0.05, 2.8x at 0.1, 1.6x at 0.2 and
breaks even near 0.3; SciPy's by 2.7x at 0.05, 1.5x at 0.1 and loses from
0.2.
"""
from __future__ import annotations

import numpy as np

from experiments.export import _kernels
from experiments.export import _ops
from experiments.export import _pack
from experiments.export import _sparse
from experiments.export._format import FormatError


SPARSE_MAX_DENSITY = {"numba": 0.2, "scipy": 0.1}
F32 = np.float32


def dense_view(entry, t, shape) -> np.ndarray:
  """The float32 kernel the layer multiplies by (the quantizer's view)."""
  st = entry["storage"]["kernel"]
  cout = shape[-1]
  if st == "float32":
    return np.asarray(t["kernel"], F32)
  if st == "csr":
    m = np.zeros((cout, int(np.prod(shape[:-1]))), F32)
    rows = np.repeat(np.arange(cout), np.diff(t["kernel_indptr"]))
    m[rows, t["kernel_indices"].astype(np.int64)] = t["kernel_data"]
    return np.ascontiguousarray(m.T).reshape(shape)
  k = shape[-2]
  rows_shape = (cout,) + tuple(shape[:-1])
  neg = _pack.unpack(t["kernel_sign"], k).reshape(rows_shape)
  view = np.where(neg, F32(-1), F32(1))
  if "kernel_nonzero" in t:
    view = view * _pack.unpack(t["kernel_nonzero"], k).reshape(rows_shape)
  view = np.moveaxis(view, 0, -1)
  if "alpha" in t:
    view = view * t["alpha"].astype(F32)
  return np.ascontiguousarray(view, F32)


class Linear:
  """One dense/conv entry, ready to run.  ``kernel`` names the choice."""

  def __init__(self, entry, tensors, in_shape, *, use_numba: bool,
               sparse_max_density: float | None = None,
               sign_input: bool = False):
    self.entry = entry
    self.op = entry["op"]
    t = {role: tensors[name] for role, name in entry["params"].items()}
    st = entry["storage"]
    shape = tuple(st["kernel_shape"])
    self.cout = shape[-1]
    self.bias = t.get("bias")
    self.scale = None  # per-channel factor after the product (folded BN)
    if st.get("batchnorm") == "folded":
      self.scale, self.bias = t["scale"], t["shift"]
    self.use_numba = use_numba
    self.quantize = _ops.INPUT_QUANTIZERS[entry.get("input_quantizer")]
    self.in_shape = tuple(in_shape)
    if self.op == "conv":
      self.ks, self.strides = entry["kernel_size"], entry["strides"]
      self.padding = entry["padding"]
      self.groups = entry["feature_group_count"]
      self.out_hw = _ops.conv_out_hw(in_shape[:2], self.ks, self.strides,
                                     self.padding)
    size = int(np.prod(shape))
    self.density = st["nnz"] / max(1, size)
    iq = entry.get("input_quantizer")
    if iq is None and sign_input:
      iq = "sign"  # the input is a sign op's +-1, and sign(+-1) = +-1
    if st["kernel"] == "bits" and iq in ("sign", "heaviside"):
      self.kernel = "xnor" + ("-ternary" if "kernel_nonzero" in t else "")
      mode = _kernels.SIGN if iq == "sign" else _kernels.HEAVISIDE
      sign, nonzero = t["kernel_sign"], t.get("kernel_nonzero")
      if self.op == "dense":
        self.xnor = _kernels.XnorDense(sign, nonzero, shape[0], mode,
                                       use_numba=use_numba)
      else:
        self.xnor = _kernels.XnorConv(sign, nonzero, shape[-2],
                                      in_shape[:2], self.strides,
                                      self.padding, mode,
                                      use_numba=use_numba)
      self.alpha = t.get("alpha")
      if not use_numba or not _kernels.numba_available():
        self.kernel += " (numpy)"
      return
    view = dense_view(entry, t, shape)
    groups = self.groups if self.op == "conv" else 1
    sparse_ok = use_numba and _kernels.numba_available() or (
        _sparse.scipy_available())
    if sparse_max_density is None:
      sparse_max_density = SPARSE_MAX_DENSITY[
          "numba" if use_numba and _kernels.numba_available() else "scipy"]
    if (sparse_ok and groups == 1 and self.density <= sparse_max_density):
      self.csr = _sparse.Csr(np.ascontiguousarray(view.reshape(
          -1, self.cout).T), use_numba=use_numba)
      self.kernel = f"csr-{self.csr.impl} (density {self.density:.3f})"
      self.matrix = None
    else:
      self.kernel = "blas"
      self.csr = None
      self.matrix = view.reshape(-1, self.cout) if groups == 1 else view
    if self.scale is not None:
      self.kernel += "+bn"

  def fold_affine(self, mean, mul, add) -> None:
    """Makes this layer compute ``(y - mean) * mul + add`` of its output
    ``y`` (a BatchNorm folded in; see ``Model(fold_batchnorm=True)``)."""
    mul = np.asarray(mul, F32)
    bias = np.zeros(self.cout, F32) if self.bias is None else self.bias
    self.bias = ((bias - mean) * mul + add).astype(F32)
    if self.scale is not None:
      self.scale = (self.scale * mul).astype(F32)
    elif self.kernel.startswith("xnor"):
      self.alpha = mul if self.alpha is None else (self.alpha * mul).astype(
          F32)
    elif self.csr is not None:
      rows = np.repeat(np.arange(self.csr.rows), np.diff(self.csr.indptr))
      self.csr.data = (self.csr.data * mul[rows]).astype(F32)
      self.csr.reset()
    else:
      self.matrix = (self.matrix * mul).astype(F32)
    self.kernel += "+bn"

  # ----------------------------------------------------------------- run --
  def _product(self, x2: np.ndarray) -> np.ndarray:
    """(P, K) @ kernel -> (P, C_out), float32."""
    if self.csr is not None:
      return self.csr(x2)
    return x2 @ self.matrix

  def __call__(self, x: np.ndarray) -> np.ndarray:
    if self.kernel.startswith("xnor"):
      y = self._xnor(x)
    elif self.op == "dense":
      if self.quantize is not None:
        x = self.quantize(x)
      lead = x.shape[:-1]
      y = self._product(x.reshape(-1, x.shape[-1])).reshape(
          lead + (self.cout,))
    else:
      y = self._conv_float(x)
    if self.scale is not None:
      y = y * self.scale
    if self.bias is not None:
      y = y + self.bias
    return np.ascontiguousarray(y, F32)

  def _conv_float(self, x):
    if self.quantize is not None:
      x = self.quantize(x)
    n = x.shape[0]
    ho, wo = self.out_hw
    if self.groups == 1:
      cols = _ops.im2col(x, self.ks, self.strides, self.padding, self.out_hw)
      return self._product(cols).reshape(n, ho, wo, self.cout)
    g, cin = self.groups, x.shape[-1]
    cg, og = cin // g, self.cout // g
    outs = []
    for i in range(g):
      cols = _ops.im2col(x[..., i * cg:(i + 1) * cg], self.ks, self.strides,
                         self.padding, self.out_hw)
      w = self.matrix[..., i * og:(i + 1) * og].reshape(-1, og)
      outs.append((cols @ w).reshape(n, ho, wo, og))
    return np.concatenate(outs, axis=-1)

  def _xnor(self, x):
    lead = x.shape[:-1]
    if self.op == "dense":
      x = x.reshape(-1, x.shape[-1])
    acc = self.xnor(x)
    if self.op == "dense":
      acc = acc.reshape(lead + (self.cout,))
    y = acc.astype(F32)
    if self.alpha is not None:
      y = y * self.alpha
    return y


def check_shapes(entry, tensors, in_shape) -> None:
  """Raises :class:`FormatError` when the stored tensors do not fit the
  entry and its input shape."""
  name, op = entry["name"], entry["op"]
  st = entry.get("storage")
  if not isinstance(st, dict) or st.get("kernel") not in ("float32", "csr",
                                                          "bits"):
    raise FormatError(f"layer {name!r}: missing or unknown kernel storage")
  shape = st.get("kernel_shape")
  if not (isinstance(shape, list) and all(isinstance(d, int) and d > 0
                                          for d in shape)):
    raise FormatError(f"layer {name!r}: bad kernel_shape {shape!r}")
  if not isinstance(st.get("nnz"), int) or not 0 <= st["nnz"] <= int(
      np.prod(shape)):
    raise FormatError(f"layer {name!r}: bad nnz {st.get('nnz')!r}")
  shape = tuple(shape)
  t = {role: tensors[tn] for role, tn in entry["params"].items()}

  def need(role, dtypes, want_shape=None):
    if role not in t:
      raise FormatError(f"layer {name!r}: missing tensor for role {role!r}")
    a = t[role]
    if a.dtype.name not in dtypes:
      raise FormatError(f"layer {name!r}: tensor {role!r} has dtype "
                        f"{a.dtype.name}, expected {' or '.join(dtypes)}")
    if want_shape is not None and tuple(a.shape) != tuple(want_shape):
      raise FormatError(f"layer {name!r}: shape mismatch: tensor {role!r} is "
                        f"{tuple(a.shape)}, expected {tuple(want_shape)}")
    return a

  cout = shape[-1]
  if op == "dense":
    if len(shape) != 2 or shape[0] != in_shape[-1]:
      raise FormatError(f"layer {name!r}: shape mismatch: kernel {shape} "
                        f"for input {tuple(in_shape)}")
  else:
    g = entry["feature_group_count"]
    if (len(in_shape) != 3 or len(shape) != 4 or
        list(shape[:2]) != list(entry["kernel_size"]) or
        not isinstance(g, int) or g < 1 or
        shape[2] * g != in_shape[-1] or cout % g):
      raise FormatError(f"layer {name!r}: shape mismatch: kernel {shape} "
                        f"for input {tuple(in_shape)}")
  kind = st["kernel"]
  folded = "batchnorm" in st
  if folded:
    if st["batchnorm"] != "folded":
      raise FormatError(f"layer {name!r}: unknown batchnorm storage "
                        f"{st['batchnorm']!r}")
    if kind != "bits":
      raise FormatError(f"layer {name!r}: a folded batchnorm needs a "
                        f"bit-packed kernel, not {kind!r}")
    allowed = {"kernel_sign", "kernel_nonzero", "scale", "shift"}
    if not set(t) <= allowed:
      raise FormatError(f"layer {name!r}: a layer with a folded batchnorm "
                        "takes the tensors 'kernel_sign', 'kernel_nonzero', "
                        f"'scale' and 'shift', got {sorted(t)}")
    for role in ("scale", "shift"):
      if not np.all(np.isfinite(need(role, ("float32",), (cout,)))):
        raise FormatError(f"layer {name!r}: non-finite values in {role!r}")
  if "bias" in t:
    need("bias", ("float32",), (cout,))
  if kind == "float32":
    need("kernel", ("float32",), shape)
    if "mask" in t:
      keep = _pack.unpack(need("mask", ("uint32",), (
          _pack.num_words(int(np.prod(shape))),)), int(np.prod(shape)))
      if np.any(t["kernel"].reshape(-1)[~keep]):
        raise FormatError(f"layer {name!r}: a weight outside the stored "
                          "mask is not 0")
  elif kind == "csr":
    k = int(np.prod(shape[:-1]))
    indptr = need("kernel_indptr", ("int32",), (cout + 1,))
    nnz = int(indptr[-1]) if indptr.size else 0
    idx = need("kernel_indices", ("uint16", "int32"), (nnz,))
    need("kernel_data", ("float32",), (nnz,))
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or (
        nnz and (idx.min() < 0 or idx.max() >= k)):
      raise FormatError(f"layer {name!r}: corrupt CSR structure")
  else:
    if entry.get("kernel_quantizer") is None:
      raise FormatError(f"layer {name!r}: bit-packed kernel without a "
                        "kernel_quantizer")
    words = (cout,) + shape[:-2] + (_pack.num_words(shape[-2]),)
    for role in ("kernel_sign", "kernel_nonzero"):
      if role == "kernel_sign" or role in t:
        if not _pack.padding_is_zero(need(role, ("uint32",), words),
                                     shape[-2]):
          raise FormatError(f"layer {name!r}: nonzero padding bits in "
                            f"{role!r}")
    if entry.get("kernel_quantizer") == "magnitude_aware_sign" and (
        not folded):  # else alpha is in the folded scale
      need("alpha", ("float32",), (cout,))
