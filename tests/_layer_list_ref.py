"""Test-only NumPy interpreter of the layer list (no JAX import).

Follows the format in ``experiments/export/_spec.py`` literally, computing
in float64, and checks every entry's ``"shape"`` and ``"inputs"`` as it goes.
It exists to prove that the layer lists are right; the real CPU evaluator
lives with the export code.
"""
from __future__ import annotations

import numpy as np

_KEYS = ("name", "op", "inputs", "params", "shape")


def _get(variables, path):
  node = variables
  for key in path:
    node = node[key]
  return np.asarray(node, dtype=np.float64)


def _pad(x, padding, value):
  (t, b), (l, r) = padding
  return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _windows(x, window, strides):
  """(N, H, W, C) -> (N, Ho, Wo, C, KH, KW), strided."""
  w = np.lib.stride_tricks.sliding_window_view(x, tuple(window), axis=(1, 2))
  return w[:, ::strides[0], ::strides[1]]


def _conv(x, kernel, bias, entry):
  kh, kw, cin_g, cout = kernel.shape
  assert [kh, kw] == entry["kernel_size"], entry["name"]
  groups = entry["feature_group_count"]
  n, _, _, cin = x.shape
  assert cin == cin_g * groups and cout % groups == 0, entry["name"]
  win = _windows(_pad(x, entry["padding"], 0.0), (kh, kw), entry["strides"])
  _, ho, wo = win.shape[:3]
  win = win.reshape(n, ho, wo, groups, cin_g, kh, kw)
  k = kernel.reshape(kh, kw, cin_g, groups, cout // groups)
  y = np.einsum("nhwgcij,ijcgo->nhwgo", win, k, optimize=True)
  y = y.reshape(n, ho, wo, cout)
  return y if bias is None else y + bias


def _pool(x, entry):
  kind = entry["kind"]
  if entry["global"]:
    return x.mean(axis=(1, 2)) if kind == "avg" else x.max(axis=(1, 2))
  window, strides, padding = entry["window"], entry["strides"], entry["padding"]
  if kind == "max":
    return _windows(_pad(x, padding, -np.inf), window, strides).max(axis=(-2, -1))
  if kind != "avg":
    raise ValueError(f"unknown pool kind {kind!r}")
  sums = _windows(_pad(x, padding, 0.0), window, strides).sum(axis=(-2, -1))
  if entry["count_include_pad"]:
    return sums / (window[0] * window[1])
  ones = _pad(np.ones((1,) + x.shape[1:3] + (1,)), padding, 0.0)
  counts = _windows(ones, window, strides).sum(axis=(-2, -1))
  return sums / counts


def _relu6(x):
  return np.minimum(np.maximum(x, 0.0), 6.0)


_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": _relu6,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "hard_sigmoid": lambda x: _relu6(x + 3.0) / 6.0,
    "hard_swish": lambda x: x * _relu6(x + 3.0) / 6.0,
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "abs": np.abs,
}


def wta(g, k):
  """Per row, keeps the k largest entries (ties: lower index), zeroes the rest.

  Written as a rank count, independently of ``np.argsort``: entry c is kept
  iff fewer than k entries beat it, an entry j beating c when g[j] > g[c],
  or g[j] == g[c] and j < c.
  """
  c = g.shape[-1]
  assert 1 <= k <= c, (k, c)
  gi, gj = g[..., :, None], g[..., None, :]
  lower = np.arange(c)[None, :] < np.arange(c)[:, None]  # [c, j]: j < c
  beaten_by = np.sum((gj > gi) | ((gj == gi) & lower), axis=-1)
  return np.where(beaten_by < k, g, 0.0)


def _quantize_input(x, kind):
  """The ``input_quantizer`` of a dense/conv entry (before any padding)."""
  if kind is None:
    return x
  if kind == "sign":
    return np.where(x >= 0, 1.0, -1.0)
  if kind == "heaviside":
    return np.where(x > 0, 1.0, 0.0)
  raise ValueError(f"unknown input_quantizer {kind!r}")


def _kernel_view(kernel, kind):
  """The ``kernel_quantizer`` view of a stored kernel (0 stays 0)."""
  if kind is None:
    return kernel
  view = np.where(kernel == 0, 0.0, np.where(kernel >= 0, 1.0, -1.0))
  if kind == "sign":
    return view
  if kind == "magnitude_aware_sign":
    axes = tuple(range(kernel.ndim - 1))
    return view * np.abs(kernel).mean(axis=axes, keepdims=True)
  raise ValueError(f"unknown kernel_quantizer {kind!r}")


def run(layers, variables, x):
  """Evaluates ``layers`` on the batch ``x``; returns the last entry's output."""
  values = {"input": np.asarray(x, dtype=np.float64)}
  for entry in layers:
    for key in _KEYS:
      assert key in entry, f"entry {entry.get('name')} lacks {key!r}"
    name, op = entry["name"], entry["op"]
    assert name not in values, f"duplicate or reserved name {name!r}"
    ins = [values[i] for i in entry["inputs"]]  # KeyError: not an earlier one
    p = {role: _get(variables, path) for role, path in entry["params"].items()}
    x0 = ins[0]
    if op in ("dense", "conv"):
      x0 = _quantize_input(x0, entry.get("input_quantizer"))
      p["kernel"] = _kernel_view(p["kernel"], entry.get("kernel_quantizer"))
    else:
      assert "kernel_quantizer" not in entry, name
      assert "input_quantizer" not in entry, name
    if op == "dense":
      assert len(ins) == 1
      y = np.tensordot(x0, p["kernel"], axes=([-1], [0]))
      if "bias" in p:
        y = y + p["bias"]
    elif op == "conv":
      assert len(ins) == 1
      y = _conv(x0, p["kernel"], p.get("bias"), entry)
    elif op == "batchnorm":
      assert len(ins) == 1
      y = (x0 - p["mean"]) / np.sqrt(p["var"] + entry["epsilon"])
      y = y * p.get("scale", 1.0) + p.get("bias", 0.0)
    elif op == "activation":
      y = _ACTIVATIONS[entry["kind"]](x0)
    elif op == "sign":
      y = np.where(x0 >= 0, 1.0, -1.0)
    elif op == "pool":
      y = _pool(x0, entry)
    elif op == "flatten":
      y = x0.reshape(x0.shape[0], -1)
    elif op == "add":
      assert len(ins) >= 2 and all(v.shape == x0.shape for v in ins)
      y = sum(ins[1:], x0)
    elif op == "concat":
      assert entry["axis"] < 0
      y = np.concatenate(ins, axis=entry["axis"])
    elif op == "upsample":
      assert entry["method"] == "nearest"
      fh, fw = entry["scale"]
      y = x0.repeat(fh, axis=1).repeat(fw, axis=2)
    elif op == "gate":
      g = ins[1]
      assert g.ndim == 2 and g.shape[-1] == x0.shape[-1]
      y = x0 * g[:, None, None, :]
    elif op == "wta":
      assert len(ins) == 1 and x0.ndim == 2, name
      assert 0.0 < entry["density"] <= 1.0, name
      y = wta(x0, entry["k"])
    else:
      raise ValueError(f"unknown op {op!r} in {name!r}")
    assert list(y.shape[1:]) == entry["shape"], (
        f"{name}: computed shape {y.shape[1:]} != recorded {entry['shape']}")
    values[name] = y
  return values[layers[-1]["name"]]
