"""Model summary of a binary network: parameters per bit width, memory, MACs.

Computed from a *layer list* (the plain ``list[dict]`` of
``experiments.models.layer_list``; this package does not import
``experiments``) and the variables, one row per op that has parameters.

Counting rules (per row):

* **Bit widths.** The kernel of a ``dense``/``conv`` entry whose
  ``"kernel_quantizer"`` is not null is 1-bit; every other parameter the
  entry names is 32-bit: real kernels, biases, BatchNorm scale/bias *and*
  its running mean/var (inference needs them). Pruned weights are still
  counted (the ``remaining`` column says how many are left).
* **memory_bytes_32**: every parameter at 32 bits, ``4 * (n_1 + n_32)``.
* **memory_bytes_packed**: a binary kernel of shape ``(*window, C_in,
  C_out)`` is packed per output channel into uint32 words, so each of the
  ``C_out`` channels takes ``ceil(fan_in / 32)`` words, ``fan_in =
  prod(window) * C_in`` (the last word is padded: the rounding is *up*,
  per channel); ``magnitude_aware_sign`` adds one 32-bit scale per output
  channel; everything else is 32-bit. A 0 (pruned) weight has no 1-bit
  code, so sparse storage is not modelled here: the packed size is that of
  the dense binary kernel.
* **MACs** per example: ``dense`` ``D_in * D_out``; ``conv``
  ``H_out * W_out * KH * KW * (C_in / G) * C_out``; other ops 0. They are
  ``"binary"`` when both the kernel and the input are binary (non-null
  ``"kernel_quantizer"`` and ``"input_quantizer"``: XNOR/AND-popcount),
  ``"float"`` otherwise -- in particular a layer with a binary kernel and
  real inputs (BinaryConnect, or a BNN's first layer) counts ``"float"``
  MACs (additions and subtractions of real inputs) while its weights still
  count as 1-bit. Pruned weights are counted (dense MACs).
* **remaining / size**: for a kernel that has a mask leaf, the number of
  kept weights and the kernel size; ``None`` otherwise.

References:
  Geiger & Team, "Larq", JOSS 2020 (``larq.models.summary``, which reports
  the same three views).
  Rastegari et al., "XNOR-Net", ECCV 2016 (binary ops via XNOR-popcount).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

_KERNEL_OPS = ("dense", "conv")


def _leaf(tree: Any, path: Sequence[str]) -> Any:
  node = tree
  for key in path:
    node = node[key]
  return node


def _mask_leaf(mask: Any, path: Sequence[str]) -> Any:
  """The mask leaf of a variables path (masks are shaped like params)."""
  if mask is None or not path or path[0] != "params":
    return None
  try:
    return _leaf(mask, path[1:])
  except (KeyError, TypeError, IndexError):
    return None


def _words(bits: int) -> int:
  return -(-bits // 32)


def _row(entry: dict[str, Any], variables: Any, mask: Any) -> dict[str, Any]:
  op = entry["op"]
  kq = entry.get("kernel_quantizer") if op in _KERNEL_OPS else None
  iq = entry.get("input_quantizer") if op in _KERNEL_OPS else None
  n1 = n32 = packed = 0
  remaining = size = None
  kernel_shape = None
  for role, path in entry["params"].items():
    shape = tuple(int(d) for d in np.shape(_leaf(variables, path)))
    n = int(np.prod(shape, dtype=np.int64))
    if role == "kernel" and op in _KERNEL_OPS:
      kernel_shape = shape
      m = _mask_leaf(mask, path)
      if m is not None:
        size, remaining = n, int(np.count_nonzero(np.asarray(m)))
      if kq is not None:
        n1 += n
        c_out = shape[-1]
        fan_in = n // c_out
        packed += 4 * c_out * _words(fan_in)
        if kq == "magnitude_aware_sign":
          packed += 4 * c_out
        continue
    n32 += n
    packed += 4 * n
  macs = 0
  if kernel_shape is not None:
    macs = int(np.prod(kernel_shape, dtype=np.int64))
    if op == "conv":
      macs *= int(np.prod(entry["shape"][:-1], dtype=np.int64))
  is_binary = kq is not None and iq is not None
  return {"name": entry["name"], "op": op,
          "params": {"1": n1, "32": n32},
          "memory_bytes_32": 4 * (n1 + n32),
          "memory_bytes_packed": packed,
          "macs": {"binary": macs if is_binary else 0,
                   "float": 0 if is_binary else macs},
          "remaining": remaining, "size": size}


def model_summary(layers: Sequence[dict[str, Any]], variables: Any,
                  mask: Any = None) -> list[dict[str, Any]]:
  """Per-op parameter counts by bit width, memory and MACs, plus a total.

  See the module docstring for the counting rules.

  Args:
    layers: a layer list (``list[dict]``, see
      ``experiments/export/_spec.py``); ``dense``/``conv`` entries may
      carry ``"kernel_quantizer"`` and ``"input_quantizer"``.
    variables: the variables its ``"params"`` paths index
      (``{"params": ..., "batch_stats": ...}``); arrays or anything with a
      shape (``jax.ShapeDtypeStruct`` works, except for ``remaining``).
    mask: optionally a mask shaped like ``variables["params"]`` (bool
      leaves on pruned kernels, ``None`` elsewhere).

  Returns:
    One dict per op with parameters, in layer-list order, then a ``total``
    row: ``name``, ``op`` (``""`` for the total), ``params`` ``{"1": n,
    "32": n}``, ``memory_bytes_32``, ``memory_bytes_packed``, ``macs``
    ``{"binary": n, "float": n}``, ``remaining`` and ``size`` (ints, or
    ``None`` where no kernel is masked).

  Example:
    >>> import numpy as np, binary
    >>> layers = [{"name": "d", "op": "dense", "inputs": ["input"],
    ...            "params": {"kernel": ["params", "d", "kernel"],
    ...                       "bias": ["params", "d", "bias"]},
    ...            "shape": [3], "kernel_quantizer": "sign",
    ...            "input_quantizer": "sign"}]
    >>> v = {"params": {"d": {"kernel": np.ones((40, 3)),
    ...                       "bias": np.zeros(3)}}}
    >>> row = binary.model_summary(layers, v)[0]
    >>> row["params"], row["memory_bytes_packed"], row["macs"]
    ({'1': 120, '32': 3}, 36, {'binary': 120, 'float': 0})
  """
  rows = [_row(e, variables, mask) for e in layers if e["params"]]
  masked = [r for r in rows if r["size"] is not None]
  total = {
      "name": "total", "op": "",
      "params": {b: sum(r["params"][b] for r in rows) for b in ("1", "32")},
      "memory_bytes_32": sum(r["memory_bytes_32"] for r in rows),
      "memory_bytes_packed": sum(r["memory_bytes_packed"] for r in rows),
      "macs": {k: sum(r["macs"][k] for r in rows)
               for k in ("binary", "float")},
      "remaining": (sum(r["remaining"] for r in masked) if masked else None),
      "size": sum(r["size"] for r in masked) if masked else None,
  }
  return rows + [total]


def format_model_summary(rows: Sequence[dict[str, Any]]) -> str:
  """An aligned plain-text table of :func:`model_summary` rows.

  Columns: layer, op, 1-bit and 32-bit parameter counts, memory in bytes
  with every parameter at 32 bits (``mem32 B``) and with binary kernels
  packed (``packed B``), binary and float MACs, remaining % of the masked
  kernel (``-`` where unmasked).

  Example:
    >>> import binary
    >>> print(binary.format_model_summary([
    ...     {"name": "d", "op": "dense", "params": {"1": 120, "32": 3},
    ...      "memory_bytes_32": 492, "memory_bytes_packed": 36,
    ...      "macs": {"binary": 120, "float": 0}, "remaining": 60,
    ...      "size": 120}]))
    layer  op     1-bit  32-bit  mem32 B  packed B  bin MACs  flt MACs  rem %
    d      dense    120       3      492        36       120         0  50.00
  """
  head = ("layer", "op", "1-bit", "32-bit", "mem32 B", "packed B",
          "bin MACs", "flt MACs", "rem %")
  body = []
  for r in rows:
    pct = ("-" if r.get("size") in (None, 0)
           else f"{100.0 * r['remaining'] / r['size']:.2f}")
    body.append((str(r["name"]), str(r["op"]), str(r["params"]["1"]),
                 str(r["params"]["32"]), str(r["memory_bytes_32"]),
                 str(r["memory_bytes_packed"]), str(r["macs"]["binary"]),
                 str(r["macs"]["float"]), pct))
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
            for i, h in enumerate(head)]

  def line(cells):
    out = [f"{cells[0]:<{widths[0]}}", f"{cells[1]:<{widths[1]}}"]
    out += [f"{c:>{w}}" for c, w in zip(cells[2:], widths[2:])]
    return "  ".join(out).rstrip()

  return "\n".join([line(head)] + [line(b) for b in body])
