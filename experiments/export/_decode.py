"""The arrays of a file's entries in plain float32 form, for other runners.

The evaluator computes with each layer's stored encoding (bit planes, CSR,
a BatchNorm threshold); :func:`layer_arrays` undoes the encoding of one
entry of a file (``_encode.py`` documents them) so that another executor
(e.g. the JAX one, ``experiments.models.load_executor``) can run the same
file with the ops of the layer-list spec:

``dense`` / ``conv``  ``kernel``: the kernel the layer multiplies by
                      (HWIO / (D_in, D_out)): the float32 kernel, the CSR
                      matrix expanded, or the quantizer's view of a binary
                      layer (+-1, 0 where pruned, times ``alpha`` for
                      ``magnitude_aware_sign``), so the entry's
                      ``kernel_quantizer`` is already applied; optional
                      ``bias``; a layer holding a folded BatchNorm has
                      ``scale`` and ``shift`` instead: y = (x . W) * scale
                      + shift.
``batchnorm``         ``mean``, ``var`` and optional ``scale``, ``bias``;
                      the threshold encoding: ``threshold`` (float32) and
                      ``direction`` (bool, True where +1 iff x <= t); a
                      folded BatchNorm: nothing (the identity).
other ops             nothing.

NumPy only; the file is expected to be validated first
(:class:`Model` does it).
"""
from __future__ import annotations

import numpy as np

from experiments.export import _linear
from experiments.export import _pack

F32 = np.float32


def layer_arrays(entry: dict, tensors: dict) -> dict[str, np.ndarray]:
  """{role: float32 (bool for ``direction``) array} of one file entry,
  its storage decoded (module docstring)."""
  t = {role: tensors[name] for role, name in entry["params"].items()}
  st = entry.get("storage") or {}
  if entry["op"] in ("dense", "conv"):
    shape = tuple(st["kernel_shape"])
    out = {"kernel": _linear.dense_view(entry, t, shape)}
    for role in ("bias", "scale", "shift"):
      if role in t:
        out[role] = np.asarray(t[role], F32)
    return out
  if entry["op"] == "batchnorm":
    kind = st.get("batchnorm")
    if kind == "folded":
      return {}
    if kind == "threshold":
      c = int(entry["shape"][-1])
      return {"threshold": np.asarray(t["threshold"], F32),
              "direction": _pack.unpack(t["direction"], c)}
    return {role: np.asarray(a, F32) for role, a in t.items()}
  return {}
