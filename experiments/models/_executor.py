r"""A jit-compiled JAX executor of a layer list (the ops of the spec).

The layer list (``experiments/export/_spec.py``) describes a network as
entries of a small op set; the NumPy evaluator (``experiments.export.Model``)
runs it on a CPU without JAX.  :class:`LayerExecutor` runs the same list
with JAX, one jitted function of (arrays, x), so a network described only
by its list (a shrunk network, an exported file) runs on CPU, GPU or TPU
without a hand-written model class:

* :func:`layer_executor` ``(layers, variables)``: a live list
  (``models.layer_list(model, input_shape)``) and the variables of
  ``model.init`` (``{"params": ..., "batch_stats": ...}``), the entries'
  ``"params"`` being paths into them.  Binary layers apply their
  ``kernel_quantizer`` to the latent kernel, as the model does at test time.
* :func:`load_executor` ``(path)``: an ``.sbn`` file, validated by the
  evaluator and decoded by ``experiments.export.layer_arrays`` (bit planes
  and CSR expanded to the kernel view, BatchNorm thresholds, BatchNorm
  folded into a binary layer as ``y * scale + shift``).

Semantics are the spec's, as the evaluator computes them: NHWC; explicit
conv and pool padding; the input quantizer before zero padding; BatchNorm
in Flax's order :math:`(x - \mu)\,(\mathrm{rsqrt}(\sigma^2 + \epsilon)
\gamma) + \beta`; max pools pad with -inf, avg pools with 0 (dividing by
the window or by the non-padding count); ``wta`` is
``sparsity.winners_take_all``.  Products run at ``precision="highest"``
by default (float32 on GPUs too, where the default may be TF32).  Every
array is an argument of the jitted function, not a constant folded into
it: one compilation per input shape, whatever the weights.

Example (a 2 -> 3 dense layer and a ReLU):

  >>> import numpy as np
  >>> layers = [
  ...   {"name": "D", "op": "dense", "inputs": ["input"],
  ...    "params": {"kernel": ["params", "D", "kernel"]}, "shape": [3]},
  ...   {"name": "relu_0", "op": "activation", "kind": "relu",
  ...    "inputs": ["D"], "params": {}, "shape": [3]}]
  >>> w = np.array([[1., -1., 2.], [0., 1., -3.]], np.float32)
  >>> run = layer_executor(layers, {"params": {"D": {"kernel": w}}})
  >>> np.asarray(run(np.array([[1., 2.]], np.float32))).tolist()
  [[1.0, 1.0, 0.0]]
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from experiments import export
from experiments.models import _layers
import sparsity


def _sign(x):
  return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def _heaviside(x):
  return jnp.where(x > 0, 1.0, 0.0).astype(x.dtype)


_INPUT_QUANTIZERS = {"sign": _sign, "heaviside": _heaviside}


def _kernel_view(w, quantizer):
  """The kernel a binary layer multiplies by (the spec's view of W)."""
  if quantizer is None:
    return w
  view = jnp.where(w == 0, 0.0, _sign(w)).astype(w.dtype)
  if quantizer == "magnitude_aware_sign":
    view = view * jnp.mean(jnp.abs(w), axis=tuple(range(w.ndim - 1)))
  return view


def _pool(x, e):
  if e["global"]:
    return (jnp.mean(x, axis=(1, 2)) if e["kind"] == "avg"
            else jnp.max(x, axis=(1, 2)))
  window = (1, *e["window"], 1)
  strides = (1, *e["strides"], 1)
  pads = ((0, 0), *map(tuple, e["padding"]), (0, 0))
  if e["kind"] == "max":
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides,
                                 pads)
  sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
  if e["count_include_pad"]:
    return sums / (e["window"][0] * e["window"][1])
  ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
  return sums / jax.lax.reduce_window(ones, 0.0, jax.lax.add, window,
                                      strides, pads)


def _linear(e, a, x, precision):
  q = _INPUT_QUANTIZERS.get(e.get("input_quantizer"))
  if q is not None:
    x = q(x)
  w = _kernel_view(a["kernel"], e.get("kernel_quantizer"))
  if e["op"] == "dense":
    y = jnp.matmul(x, w, precision=precision)
  else:
    y = jax.lax.conv_general_dilated(
        x, w, tuple(e["strides"]), [tuple(p) for p in e["padding"]],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=e["feature_group_count"], precision=precision)
  if "scale" in a:  # a BatchNorm folded into a binary layer (files)
    return y * a["scale"] + a["shift"]
  return y + a["bias"] if "bias" in a else y


def _batchnorm(e, a, x):
  if "threshold" in a:  # read only through a sign: +1 iff x >= t (x <= t)
    sgn = jnp.where(a["direction"], -1.0, 1.0).astype(x.dtype)
    return jnp.where(x * sgn >= a["threshold"] * sgn, 1.0, -1.0).astype(
        x.dtype)
  if "mean" not in a:  # folded into the layer it reads
    return x
  mul = jax.lax.rsqrt(a["var"] + e["epsilon"])
  if "scale" in a:
    mul = mul * a["scale"]
  y = (x - a["mean"]) * mul
  return y + a["bias"] if "bias" in a else y


def _apply(e, a, xs, precision):
  op, x = e["op"], xs[0]
  if op in ("dense", "conv"):
    return _linear(e, a, x, precision)
  if op == "batchnorm":
    return _batchnorm(e, a, x)
  if op == "activation":
    return _layers.ACTIVATIONS[e["kind"]](x)
  if op == "sign":
    return _sign(x)
  if op == "pool":
    return _pool(x, e)
  if op == "flatten":
    return x.reshape(x.shape[0], -1)
  if op == "add":
    y = x
    for z in xs[1:]:
      y = y + z
    return y
  if op == "concat":
    return jnp.concatenate(xs, axis=e["axis"])
  if op == "upsample":
    fh, fw = e["scale"]
    return jnp.repeat(jnp.repeat(x, fh, axis=1), fw, axis=2)
  if op == "gate":
    return x * xs[1][:, None, None, :]
  if op == "wta":
    return sparsity.winners_take_all(x, e["k"])
  # Every op of the spec is handled above; a new one must be added here.
  raise ValueError(f"layer {e['name']!r}: op {op!r} is not supported by the "
                   "JAX executor")


class LayerExecutor:
  """A layer list and its arrays; ``executor(x)`` -> logits (jitted).

  Attributes:
    layers: the entries (validated against the spec at construction).
    arrays: ``{layer name: {role: array}}``, the jitted function's
      argument.
    input_shape: per-example input shape, or None when not known.
    traces: how many times the function was traced (one per input shape
      and dtype; a second call with the same shape does not retrace).
  """

  def __init__(self, layers: Sequence[Mapping[str, Any]],
               arrays: Mapping[str, Mapping[str, Any]], *,
               input_shape: Sequence[int] | None = None,
               precision: Any = "highest"):
    self.layers = [dict(e) for e in layers]
    seen = {"input"}
    for e in self.layers:
      try:
        export.check_entry(e, strict=False)
      except export.SpecError as err:
        raise ValueError(str(err)) from None
      missing = [i for i in e["inputs"] if i not in seen]
      if missing:
        raise ValueError(f"layer {e['name']!r}: inputs {missing} are not "
                         "earlier layers")
      seen.add(e["name"])
    self.arrays = {name: {role: jnp.asarray(v) for role, v in a.items()}
                   for name, a in arrays.items()}
    self.input_shape = None if input_shape is None else tuple(input_shape)
    self.precision = precision
    self.traces = 0
    self._fn = jax.jit(self._forward)

  def _forward(self, arrays, x):
    self.traces += 1  # Python side effect: runs only while tracing
    values = {"input": x}
    for e in self.layers:
      xs = [values[i] for i in e["inputs"]]
      values[e["name"]] = _apply(e, arrays.get(e["name"], {}), xs,
                                 self.precision)
    return values[self.layers[-1]["name"]]

  def __call__(self, x) -> jax.Array:
    """Logits of the batch ``x`` (N, *input_shape), float32."""
    x = jnp.asarray(x, jnp.float32)
    if self.input_shape is not None and x.shape[1:] != self.input_shape:
      raise ValueError(f"input of shape {x.shape[1:]}, the layer list takes "
                       f"{self.input_shape}")
    return self._fn(self.arrays, x)


def _lookup(variables, path, name):
  node = variables
  for key in path:
    if not isinstance(node, Mapping) or key not in node:
      raise ValueError(f"layer {name!r}: no variable at {'/'.join(path)}")
    node = node[key]
  return node


def layer_executor(layers: Sequence[Mapping[str, Any]], variables, *,
                   input_shape: Sequence[int] | None = None,
                   precision: Any = "highest") -> LayerExecutor:
  """The executor of a live layer list with the variables of
  ``model.init`` (``{"params": ..., "batch_stats": ...}``; the entries'
  ``"params"`` are paths into them).  See the module docstring."""
  arrays = {e["name"]: {role: _lookup(variables, path, e["name"])
                        for role, path in e["params"].items()}
            for e in layers}
  return LayerExecutor(layers, arrays, input_shape=input_shape,
                       precision=precision)


def load_executor(path: str, *, precision: Any = "highest"
                  ) -> LayerExecutor:
  """The executor of an ``.sbn`` file (``launch.export``): validated by
  ``experiments.export.Model`` (a :class:`experiments.export.FormatError`
  otherwise), its tensors decoded by ``experiments.export.layer_arrays``.
  The file's kernels are already the quantizers' views, so the entries run
  without their ``kernel_quantizer``."""
  header, tensors = export.read(path)
  export.Model(header, tensors, skip_gated=False,
               use_numba=False)  # validates the file (NumPy only)
  layers, arrays = [], {}
  for e in header["layers"]:
    arrays[e["name"]] = export.layer_arrays(e, tensors)
    e = copy.deepcopy(e)
    e.pop("kernel_quantizer", None)
    e["params"] = {}
    layers.append(e)
  return LayerExecutor(layers, arrays, input_shape=header["input_shape"],
                       precision=precision)

