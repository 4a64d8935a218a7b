r"""Layer list + variables (+ mask) -> the header and tensors of a file.

NumPy only.  Every ``"params"`` path of the layer list becomes a tensor
named ``"<layer name>/<role>"``; dense/conv kernels are stored in one of
three encodings, recorded as ``entry["storage"]``::

    {"kernel": "float32" | "csr" | "bits", "kernel_shape": [...],
     "nnz": int}   # nonzero kernel weights

``float32``  role ``kernel``: the kernel as is (HWIO for conv).  When the
             layer is pruned, role ``mask``: the kept positions of
             ``kernel.reshape(-1)`` as a bit plane (bit 1 = kept).
``csr``      the matrix M = kernel.reshape(-1, C_out).T (row = output
             channel, column = flattened (kh, kw, c_in) or d_in) in CSR:
             roles ``kernel_data`` float32 (nnz,), ``kernel_indices``
             uint16 when the row length is < 65536 else int32 (nnz,),
             ``kernel_indptr`` int32 (C_out + 1,).  The stored positions are
             the kept positions (the mask).  Chosen over ``float32`` when
             smaller.
``bits``     layers with a ``kernel_quantizer``: the view's sign plane
             ``kernel_sign`` (bit 1 = -1, i.e. W < 0) and, when some
             W == 0 (pruned: the view is ternary), the plane
             ``kernel_nonzero`` (bit 1 = W != 0).  Dense: (D_out,
             ceil(D_in / 32)) words, packed along D_in; conv: (C_out, KH,
             KW, ceil(C_in / 32)), packed along C_in.  Padding bits are 0.
             ``magnitude_aware_sign`` adds role ``alpha`` float32 (C_out,),
             alpha[o] = mean(|W[..., o]|).  Binary grouped convolutions are
             not supported.

BatchNorm stays a separate entry with its four tensors (``mean``, ``var``
and optional ``scale``, ``bias``); the evaluator may fold it (its
``fold_batchnorm`` option).  With ``bn_threshold=True`` (``launch.export``'s
default), a BatchNorm whose output is only ever read through a sign (see
:func:`sign_read_batchnorms`: BNN's BN -> hard_tanh -> sign-quantized
dense/conv, NIN's BN -> sign op) is stored instead as
``entry["storage"] = {"batchnorm": "threshold"}`` with two tensors::

    threshold  float32 (C,)   t, possibly -inf / +inf (gamma == 0)
    direction  uint32 bit plane of C bits (padding 0): bit 1 where
               gamma * rsqrt(var + eps) < 0

and the entry outputs +1 where x >= t (x <= t where the direction bit is
1) and -1 elsewhere: exactly sign(BatchNorm(x)) of the float32 formula for
every float32 x, ties (x == t -> +1) included (``_ops.batchnorm_threshold``
has the maths).  Readers see the same +-1 after the sign as before, so the
logits are bit-identical to those of the four-vector file.  Such files are
format version 2 (``_format.py``); files without it stay version 1.

With ``bn_fold=True`` (``launch.export``'s default), a BatchNorm that
directly follows a binary-weight dense/conv with real inputs (BinaryConnect:
``kernel_quantizer`` set, no ``input_quantizer``, the input not a ``sign``
op's output), that layer being read by nothing else (see
:func:`foldable_batchnorms`), is stored as one per-channel affine map on
the layer: the layer's storage gains ``"batchnorm": "folded"`` and its
tensors are ``kernel_sign`` (and ``kernel_nonzero``) plus::

    scale  float32 (C_out,)   a = gamma / sqrt(var + eps) * alpha
    shift  float32 (C_out,)   b = beta + gamma / sqrt(var + eps) * (bias - mean)

(``alpha`` the magnitude-aware scaling factor, 1 for plain ``sign``;
``bias`` the layer's, 0 without one; computed in float64 from the float32
parameters, rounded once), in place of ``bias`` and ``alpha``; the layer
outputs ``a * (x . W_b) + b``, W_b the +-1 (or 0) view.  The BatchNorm entry
stays in the list (its name is what later layers read) with ``"storage":
{"batchnorm": "folded"}`` and no tensor: the identity.  Two float32 vectors
instead of the five of bias + four BatchNorm vectors; the logits are the
unfolded network's up to float32 rounding (not bit-identical: a * (x . W_b)
rounds differently from ((x . W_b) * alpha + bias - mean) * m + beta).  A
BatchNorm read only through a sign keeps the exact threshold encoding
instead; one after a pool, an add, an XNOR layer (binary inputs, where
the threshold or the exact integer sums matter) or a float layer, or with
non-finite parameters, stays as it is.  Such files are format version 3.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from experiments.export import _ops
from experiments.export import _pack


class ExportError(ValueError):
  """The model cannot be exported (one-line message)."""


def _lookup(tree, path, what):
  node = tree
  for key in path:
    if not isinstance(node, dict) or key not in node:
      raise ExportError(f"{what}: no variable at {'/'.join(path)}")
    node = node[key]
  return node


def _flat_mask(mask, prefix=()):
  """{path tuple: bool array} of the non-None leaves of a mask tree."""
  out = {}
  if mask is None:
    return out
  if isinstance(mask, dict):
    for k, v in mask.items():
      out.update(_flat_mask(v, prefix + (str(k),)))
    return out
  return {prefix: np.asarray(mask, bool)}


def check_pruned_zero(params, mask) -> None:
  """Raises :class:`ExportError` if a pruned weight is not exactly 0."""
  for path, m in _flat_mask(mask).items():
    w = np.asarray(_lookup(params, path, "mask"))
    if w.shape != m.shape:
      raise ExportError(f"mask of {'/'.join(path)} has shape {m.shape}, the "
                        f"weight {w.shape}")
    bad = int(np.count_nonzero(w[~m]))
    if bad:
      raise ExportError(f"{'/'.join(path)}: {bad} pruned weight(s) are not "
                        "exactly 0; refusing to export")


def _csr(kernel: np.ndarray, keep: np.ndarray) -> dict[str, np.ndarray]:
  cout = kernel.shape[-1]
  m = kernel.reshape(-1, cout).T
  keep = keep.reshape(-1, cout).T
  rows, cols = np.nonzero(keep)
  indptr = np.zeros(cout + 1, np.int64)
  np.cumsum(np.bincount(rows, minlength=cout), out=indptr[1:])
  idx_dtype = np.uint16 if m.shape[1] < 65536 else np.int32
  return {"kernel_data": m[rows, cols].astype(np.float32),
          "kernel_indices": cols.astype(idx_dtype),
          "kernel_indptr": indptr.astype(np.int32)}


def _encode_kernel(entry, kernel, keep) -> tuple[dict, dict]:
  """(storage, {role: array}) of one dense/conv kernel."""
  kernel = np.asarray(kernel, np.float32)
  nnz = int(np.count_nonzero(kernel))
  storage = {"kernel_shape": list(kernel.shape), "nnz": nnz}
  kq = entry.get("kernel_quantizer")
  if kq is not None:
    if entry["op"] == "conv" and entry.get("feature_group_count", 1) != 1:
      raise ExportError(f"{entry['name']}: binary grouped convolutions are "
                        "not supported")
    rows = np.moveaxis(kernel, -1, 0)  # (C_out, ..., C_in or D_in)
    out = {"kernel_sign": _pack.pack(rows < 0)}
    if nnz < kernel.size:
      out["kernel_nonzero"] = _pack.pack(rows != 0)
    if kq == "magnitude_aware_sign":
      axes = tuple(range(kernel.ndim - 1))
      out["alpha"] = np.abs(kernel).mean(axis=axes, dtype=np.float32)
    return {"kernel": "bits", **storage}, out
  dense_bytes = kernel.size * 4
  kept = int(np.count_nonzero(keep)) if keep is not None else kernel.size
  if keep is not None and kept < kernel.size:
    csr = _csr(kernel, keep)
    if sum(a.nbytes for a in csr.values()) < dense_bytes:
      return {"kernel": "csr", **storage}, csr
    return {"kernel": "float32", **storage}, {
        "kernel": kernel, "mask": _pack.pack(keep.reshape(-1))}
  return {"kernel": "float32", **storage}, {"kernel": kernel}


# Ops through which only the sign of a value matters to a sign reader:
# sign(hard_tanh(x)) = sign(x) (hard_tanh(+-0) = +-0, sign(-0) = +1) and
# hard_tanh(+-1) = +-1; flatten only reshapes.
_SIGN_TRANSPARENT = {("activation", "hard_tanh"), ("flatten", None)}


def sign_read_batchnorms(layers: list[dict]) -> set[str]:
  """Names of the BatchNorm entries whose output reaches the model only
  through a sign: every path from it through ``hard_tanh`` / ``flatten``
  entries ends at a ``sign`` op or at a dense/conv input with
  ``input_quantizer == "sign"`` (never at the output, another op, or a
  heaviside quantizer)."""
  readers: dict[str, list[dict]] = {}
  for e in layers:
    for i in e["inputs"]:
      readers.setdefault(i, []).append(e)
  last = layers[-1]["name"] if layers else None

  def only_signs(name, depth=0) -> bool:
    if name == last or not readers.get(name) or depth > len(layers):
      return False
    for r in readers[name]:
      if r["op"] == "sign":
        continue
      if r["op"] in ("dense", "conv") and r.get("input_quantizer") == "sign":
        continue
      if (r["op"], r.get("kind")) in _SIGN_TRANSPARENT and len(
          r["inputs"]) == 1 and only_signs(r["name"], depth + 1):
        continue
      return False
    return True

  return {e["name"] for e in layers
          if e["op"] == "batchnorm" and only_signs(e["name"])}


def foldable_batchnorms(layers: list[dict]) -> dict[str, str]:
  """{BatchNorm name: the dense/conv it folds into} for the BatchNorm
  entries that :func:`encode` with ``bn_fold=True`` stores as one scale
  and shift: the BatchNorm's only input is a dense/conv with a
  ``kernel_quantizer`` (a bit-packed kernel), no ``input_quantizer`` and an
  input that is not a ``sign`` op (real inputs, so not an XNOR layer), and
  that layer is read by this BatchNorm only.  (BatchNorms of
  :func:`sign_read_batchnorms` are among them when they qualify; ``encode``
  gives those the threshold encoding when ``bn_threshold`` is set.)"""
  by_name = {e["name"]: e for e in layers}
  readers: dict[str, int] = {}
  for e in layers:
    for i in e["inputs"]:
      readers[i] = readers.get(i, 0) + 1
  out = {}
  for e in layers:
    if e["op"] != "batchnorm" or len(e["inputs"]) != 1:
      continue
    src = by_name.get(e["inputs"][0])
    if (src is None or src["op"] not in ("dense", "conv") or
        src.get("kernel_quantizer") is None or
        src.get("input_quantizer") is not None or
        readers.get(src["name"]) != 1 or len(src["inputs"]) != 1 or
        by_name.get(src["inputs"][0], {}).get("op") == "sign" or
        (src["op"] == "conv" and src.get("feature_group_count", 1) != 1)):
      continue
    out[e["name"]] = src["name"]
  return out


def _fold(bn_entry, bn_arrays, src_arrays, kernel_quantizer):
  """(scale, shift) float32 of a BatchNorm folded into the binary layer
  before it (see the module doc), or None when not finite."""
  f64 = np.float64
  mean = np.asarray(bn_arrays["mean"], np.float32).astype(f64)
  var = np.asarray(bn_arrays["var"], np.float32).astype(f64)
  c = mean.shape[0]
  gamma = np.asarray(bn_arrays.get("scale", np.ones(c)), np.float32)
  beta = np.asarray(bn_arrays.get("bias", np.zeros(c)), np.float32)
  bias = np.asarray(src_arrays.get("bias", np.zeros(c)), np.float32)
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    m = gamma.astype(f64) / np.sqrt(var + f64(np.float32(bn_entry[
        "epsilon"])))
    a = m
    if kernel_quantizer == "magnitude_aware_sign":
      kernel = np.asarray(src_arrays["kernel"], np.float32)
      alpha = np.abs(kernel).mean(axis=tuple(range(kernel.ndim - 1)),
                                  dtype=np.float32)  # as _encode_kernel
      a = m * alpha.astype(f64)
    b = beta.astype(f64) + m * (bias.astype(f64) - mean)
    scale, shift = a.astype(np.float32), b.astype(np.float32)
  if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(shift))):
    return None
  return scale, shift


def encode(layers: list[dict], variables: dict, mask=None, *,
           input_shape, meta: dict | None = None, bn_threshold: bool = False,
           bn_fold: bool = False
           ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(header, tensors) for :func:`_format.write`.

  Args:
    layers: the layer list (``experiments.models.layer_list``).
    variables: ``{"params": ..., "batch_stats": ...}`` of NumPy arrays.
    mask: the params-shaped mask tree (bool leaves on prunable kernels,
      None elsewhere) or None; checked, never applied.
    input_shape: per-example input shape.
    meta: provenance stored verbatim (JSON-serialisable).
    bn_threshold: store the BatchNorms of :func:`sign_read_batchnorms` as
      a per-channel threshold and direction (format version 2).
    bn_fold: fold the other BatchNorms of :func:`foldable_batchnorms` into
      their binary layer as one scale and shift (format version 3).

  Raises:
    ExportError: a pruned weight is not 0, or a variable is missing.
  """
  params = variables.get("params", {})
  check_pruned_zero(params, mask)
  masks = _flat_mask(mask)
  out_layers, tensors = [], {}
  thresholds = sign_read_batchnorms(layers) if bn_threshold else set()
  folds = {}  # source layer name -> (BatchNorm name, scale, shift)
  for bn, src in (foldable_batchnorms(layers) if bn_fold else {}).items():
    if bn in thresholds:
      continue  # the exact threshold (one vector and a bit plane)
    bn_entry = next(e for e in layers if e["name"] == bn)
    src_entry = next(e for e in layers if e["name"] == src)
    ab = _fold(bn_entry, {r: _lookup(variables, p, bn) for r, p in
                          bn_entry["params"].items()},
               {r: _lookup(variables, p, src) for r, p in
                src_entry["params"].items()},
               src_entry["kernel_quantizer"])
    if ab is not None:  # else (non-finite): unchanged
      folds[src] = (bn, *ab)
  folded_bns = {bn for bn, _, _ in folds.values()}
  for entry in layers:
    e = copy.deepcopy(entry)
    name = e["name"]
    arrays = {role: np.asarray(_lookup(variables, path, name))
              for role, path in entry["params"].items()}
    roles = {}
    if e["op"] in ("dense", "conv"):
      kpath = tuple(entry["params"]["kernel"])
      keep = masks.get(kpath[1:]) if kpath[0] == "params" else None
      storage, enc = _encode_kernel(e, arrays.pop("kernel"), keep)
      e["storage"] = storage
      roles.update(enc)
      if name in folds:
        _, scale, shift = folds[name]
        e["storage"]["batchnorm"] = "folded"
        roles.pop("alpha", None)
        arrays = {"scale": scale, "shift": shift}
    if name in folded_bns:
      e["storage"] = {"batchnorm": "folded"}
      arrays = {}
    if name in thresholds:
      thr = _ops.batchnorm_threshold(
          arrays["mean"], arrays["var"], arrays.get("scale"),
          arrays.get("bias"), e["epsilon"])
      if thr is not None:  # else (non-finite parameters): four vectors
        e["storage"] = {"batchnorm": "threshold"}
        arrays = {"threshold": thr[0]}
        roles["direction"] = _pack.pack(thr[1])
    roles.update({r: np.asarray(a, np.float32) for r, a in arrays.items()})
    e["params"] = {}
    for role, arr in roles.items():
      tname = f"{name}/{role}"
      tensors[tname] = arr
      e["params"][role] = tname
    out_layers.append(e)
  header = {"input_shape": [int(d) for d in input_shape],
            "layers": out_layers, "meta": dict(meta or {})}
  return header, tensors
