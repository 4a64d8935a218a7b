"""The layer list: a model described as a list of layers from a small op set.

The list is the contract between the model zoo, the export tool
(``launch.export``) and the NumPy-only CPU reference evaluator; its spec
lives with the evaluator (``experiments/export/_spec.py``).

How the list is made (why it cannot drift from ``__call__``)
-------------------------------------------------------------
Models do not keep a second, hand-written description of themselves.  Their
``__call__`` is written with the helpers of this module (``dense``, ``conv``,
``batchnorm``, ``relu``, ``max_pool``, ``add`` ...), which compute the layer
with Flax/JAX and, only while :func:`layer_list` is tracing the model,
append one entry per call.  :func:`layer_list` traces ``model.init`` under
``jax.eval_shape`` (no FLOPs, no real parameters) with ``train=False``.

While recording, every helper checks that each of its inputs is the model
input or the output of an earlier recorded op (by object identity of the
traced arrays), and :func:`layer_list` checks that the model returns the
output of the last recorded op.  So an unrecorded computation anywhere on
the path from input to logits (a bare ``x * 2``, ``nn.relu(x)``,
``x.reshape(...)``) makes :func:`layer_list` raise :class:`LayerListError`
instead of returning a list that silently differs from the model.
Outside :func:`layer_list` the helpers are plain function calls (the check
costs one context-variable lookup at trace time, nothing at run time).

Layers from other packages (e.g. binary Flax layers) describe themselves
with :func:`record`, the primitive all helpers use.

Format
------
The format (entry keys, the ops and their attributes, the binary
quantizers) is the layer-list spec of the export package,
``experiments/export/_spec.py`` (``experiments.export.LAYER_OPS``,
``ATTRIBUTES``, ``check_entry`` ...).  :func:`record` checks every entry
against it, strictly: an unknown op, a misspelt or missing attribute or a
bad value is a one-line :class:`LayerListError` when the model is traced.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments import export

__all__ = [
    "ACTIVATIONS", "INPUT_QUANTIZERS", "KERNEL_QUANTIZERS", "LayerListError",
    "layer_list", "layer_outputs", "record", "recording_active",
    "dense", "conv", "batchnorm", "activation", "relu", "sign", "max_pool",
    "avg_pool", "global_avg_pool", "global_max_pool", "flatten", "add",
    "concat", "upsample", "gate", "wta",
    # For the zoo's own recording helpers (e.g. the binary convs).
    "module_path", "pairs", "explicit_padding",
]

# The spec's names, as the zoo has always read them from here.
OPS = export.LAYER_OPS
KERNEL_QUANTIZERS = export.KERNEL_QUANTIZERS
INPUT_QUANTIZERS = export.INPUT_QUANTIZERS


def _hard_tanh(x):
  return jnp.clip(x, -1.0, 1.0)


# kind -> JAX function (the formulas are in experiments/export/_spec.py).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "hard_swish": jax.nn.hard_swish,
    "hard_tanh": _hard_tanh,
    "abs": jnp.abs,
}
if tuple(ACTIVATIONS) != export.ACTIVATION_KINDS:  # one per kind of the spec
  raise AssertionError(f"{sorted(ACTIVATIONS)} != "
                       f"{sorted(export.ACTIVATION_KINDS)}")


class LayerListError(ValueError):
  """The model cannot be described (exactly) as a layer list."""


class _Recorder:
  """Collects entries while :func:`layer_list` traces a model."""

  def __init__(self):
    self.entries: list[dict[str, Any]] = []
    self._name_of_id: dict[int, str] = {}
    self._keep_alive: list[Any] = []  # so that ids are never reused
    self._counters: collections.Counter = collections.Counter()
    self._names: set[str] = {"input"}
    self.outputs: dict[str, Any] | None = None  # name -> output, if kept

  def bind(self, array, name: str) -> None:
    self._name_of_id[id(array)] = name
    self._keep_alive.append(array)

  def name_of(self, array, op: str) -> str:
    try:
      return self._name_of_id[id(array)]
    except KeyError:
      raise LayerListError(
          f"an input of op {op!r} (shape {getattr(array, 'shape', '?')}) was "
          "not produced by a recorded op: the model computes something "
          "between layers that the layer list would not contain. Use the "
          "helpers of experiments.models._layers (or record()) for every "
          "step from the model input to the output.") from None

  def auto_name(self, base: str) -> str:
    while True:
      name = f"{base}_{self._counters[base]}"
      self._counters[base] += 1
      if name not in self._names:
        return name

  def unique(self, name: str) -> str:
    if name not in self._names:
      return name
    k = 1
    while f"{name}_call{k}" in self._names:
      k += 1
    return f"{name}_call{k}"

  def claim(self, name: str) -> None:
    if name in self._names:
      raise LayerListError(f"duplicate layer name {name!r}")
    self._names.add(name)


_RECORDER: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "experiments_models_layer_recorder", default=None)


def recording_active() -> bool:
  """True while :func:`layer_list` is tracing a model."""
  return _RECORDER.get() is not None


@contextlib.contextmanager
def _recording(rec: _Recorder):
  token = _RECORDER.set(rec)
  try:
    yield rec
  finally:
    _RECORDER.reset(token)


def _jsonable(value):
  if isinstance(value, (bool, int, float, str)) or value is None:
    return value
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if hasattr(value, "item"):  # numpy / jax scalars
    return value.item()
  raise TypeError(f"attribute value {value!r} is not JSON-serialisable")


def record(op: str, inputs: Sequence[Any], output, *,
           params: dict[str, list[str]] | None = None,
           name: str | None = None, **attrs):
  """Appends an entry for ``output = op(*inputs)`` when recording.

  Returns ``output`` unchanged, so it can wrap a computation inline.  A
  no-op outside :func:`layer_list`.  ``name`` defaults to ``"<op>_<k>"``
  (``"<kind>_<k>"`` for activations); a name already taken gets a
  ``"_call<k>"`` suffix.
  """
  rec = _RECORDER.get()
  if rec is None:
    return output
  clash = set(attrs) & set(export.RESERVED_KEYS)
  if clash:
    raise LayerListError(f"attributes may not be named {sorted(clash)}")
  in_names = [rec.name_of(a, op) for a in inputs]
  if name is None:
    name = rec.auto_name(attrs.get("kind", op) if op == "activation" else op)
  else:
    name = rec.unique(name)
  entry = {"name": name, "op": op, "inputs": in_names,
           "params": _jsonable(dict(params or {}))}
  entry.update(_jsonable(attrs))
  entry["shape"] = [int(d) for d in output.shape[1:]]
  try:
    export.check_entry(entry)  # strict: no attribute the op does not have
  except export.SpecError as err:
    raise LayerListError(str(err)) from None
  rec.claim(name)
  rec.entries.append(entry)
  rec.bind(output, name)
  if rec.outputs is not None:
    rec.outputs[name] = output
  return output


def layer_list(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
  """The layer list of ``model`` for per-example ``input_shape``.

  ``input_shape`` has no batch axis, e.g. ``(32, 32, 3)`` or ``(784,)``.
  The model is traced abstractly (``jax.eval_shape`` of ``model.init`` with
  ``train=False``), so this is cheap even for large models.  The parameter
  paths in the list are valid for the variables of any ``model.init`` with
  inputs of this shape.  Raises :class:`LayerListError` if the model does
  anything the list would not describe.
  """
  rec = _Recorder()
  spec = jax.ShapeDtypeStruct((2, *tuple(input_shape)), jnp.float32)

  def trace(x):
    rec.bind(x, "input")
    out, _ = model.init_with_output(jax.random.key(0), x, train=False)
    if not rec.entries:
      raise LayerListError(
          f"{type(model).__name__} recorded no layers; write its __call__ with "
          "the helpers of experiments.models._layers")
    if rec.name_of(out, "<model output>") != rec.entries[-1]["name"]:
      raise LayerListError(
          "the model output is not the output of the last recorded op")
    return out

  with _recording(rec):
    jax.eval_shape(trace, spec)
  used = {n for e in rec.entries for n in e["inputs"]}
  dangling = [e["name"] for e in rec.entries[:-1] if e["name"] not in used]
  if dangling:
    raise LayerListError(f"recorded layers not used by the output: {dangling}")
  return copy.deepcopy(rec.entries)


def layer_outputs(model: nn.Module, variables, x) -> dict[str, jax.Array]:
  """Every recorded layer's output for the batch ``x``, by layer name.

  Runs ``model.apply(variables, x, train=False)`` (jitted) while recording,
  so the names are those of :func:`layer_list` and the values the model's
  own intermediates (not a re-execution of the list); the last entry is
  the model's output.  Raises :class:`LayerListError` as
  :func:`layer_list` does.
  """
  rec = _Recorder()
  rec.outputs = {}

  def run(variables, x):
    rec.bind(x, "input")
    with _recording(rec):
      out = model.apply(variables, x, train=False)
    if not rec.entries or rec.name_of(out, "<model output>") != (
        rec.entries[-1]["name"]):
      raise LayerListError(
          "the model output is not the output of the last recorded op")
    return dict(rec.outputs)

  outs = jax.jit(run)(variables, jnp.asarray(x, jnp.float32))
  return {e["name"]: outs[e["name"]] for e in rec.entries}  # model order


# --------------------------------------------------------------------------
# Helpers with parameters: they call a Flax module and record it.


def module_path(module: nn.Module) -> list[str]:
  """The bound module's scope path (its parameter path), as strings."""
  if module.scope is None:
    raise LayerListError(f"{type(module).__name__} is not bound")
  return [str(p) for p in module.scope.path]


def pairs(value, n: int, what: str) -> list[int]:
  """A Flax int-or-sequence attribute as `n` ints (None -> ones); `what`
  names it in the error."""
  if value is None:
    return [1] * n
  if isinstance(value, int):
    return [value] * n
  value = [int(v) for v in value]
  if len(value) != n:
    raise LayerListError(f"{what} {value} should have {n} entries")
  return value


def explicit_padding(padding, in_spatial, window, strides, what):
  """Flax/lax padding spec -> [[lo, hi], ...] (explicit pairs)."""
  n = len(in_spatial)
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID", "SAME_LOWER"):
      raise LayerListError(f"{what} padding {padding!r} is not supported")
    pads = jax.lax.padtype_to_pads(tuple(in_spatial), tuple(window),
                                   tuple(strides), padding.upper())
    return [[int(lo), int(hi)] for lo, hi in pads]
  if isinstance(padding, int):
    return [[padding, padding]] * n
  out = []
  for p in padding:
    if isinstance(p, int):
      out.append([p, p])
    else:
      lo, hi = p
      out.append([int(lo), int(hi)])
  if len(out) != n:
    raise LayerListError(f"{what} padding {padding!r} should have {n} pairs")
  return out


def dense(module: nn.Dense, x):
  """``module(x)`` for an ``nn.Dense``, recorded as op ``dense``."""
  y = module(x)
  if not recording_active():
    return y
  if not isinstance(module, nn.Dense):
    raise LayerListError(f"dense() needs an nn.Dense, got {type(module)}")
  path = module_path(module)
  params = {"kernel": ["params", *path, "kernel"]}
  if module.use_bias:
    params["bias"] = ["params", *path, "bias"]
  return record("dense", [x], y, params=params, name="/".join(path))


def conv(module: nn.Conv, x):
  """``module(x)`` for a 2-D ``nn.Conv`` on NHWC x, recorded as ``conv``."""
  y = module(x)
  if not recording_active():
    return y
  if type(module) is not nn.Conv:  # not ConvTranspose, ConvLocal, ...
    raise LayerListError(f"conv() needs an nn.Conv, got {type(module)}")
  if x.ndim != 4:
    raise LayerListError(f"conv() needs NHWC input, got shape {x.shape}")
  ks = pairs(module.kernel_size, 2, "kernel_size")
  strides = pairs(module.strides, 2, "strides")
  if pairs(module.kernel_dilation, 2, "kernel_dilation") != [1, 1] or \
      pairs(module.input_dilation, 2, "input_dilation") != [1, 1]:
    raise LayerListError("dilated convolutions are not in the layer-list ops")
  padding = explicit_padding(module.padding, x.shape[1:3], ks, strides,
                              "conv")
  path = module_path(module)
  params = {"kernel": ["params", *path, "kernel"]}
  if module.use_bias:
    params["bias"] = ["params", *path, "bias"]
  return record("conv", [x], y, params=params, name="/".join(path),
                kernel_size=ks, strides=strides, padding=padding,
                feature_group_count=int(module.feature_group_count))


def batchnorm(module: nn.BatchNorm, x):
  """``module(x)`` for an ``nn.BatchNorm`` over the last axis.

  Recorded as ``batchnorm`` (inference form).  While recording the module
  must have ``use_running_average=True`` (``layer_list`` traces with
  ``train=False``).
  """
  y = module(x)
  if not recording_active():
    return y
  if not isinstance(module, nn.BatchNorm):
    raise LayerListError(f"batchnorm() needs an nn.BatchNorm, got {module}")
  if module.use_running_average is not True:
    raise LayerListError("batchnorm() is recorded in inference form only: "
                         "construct it with use_running_average=not train")
  if module.axis not in (-1, x.ndim - 1, (-1,), (x.ndim - 1,)):
    raise LayerListError("batchnorm() normalises the last axis only")
  path = module_path(module)
  params = {}
  if module.use_scale:
    params["scale"] = ["params", *path, "scale"]
  if module.use_bias:
    params["bias"] = ["params", *path, "bias"]
  params["mean"] = ["batch_stats", *path, "mean"]
  params["var"] = ["batch_stats", *path, "var"]
  return record("batchnorm", [x], y, params=params, name="/".join(path),
                epsilon=float(module.epsilon))


# --------------------------------------------------------------------------
# Parameter-free helpers.


def activation(x, kind: str, *, name: str | None = None):
  """Elementwise activation ``kind`` (a key of :data:`ACTIVATIONS`)."""
  try:
    fn = ACTIVATIONS[kind]
  except KeyError:
    raise ValueError(f"unknown activation {kind!r}; choose one of: "
                     f"{', '.join(ACTIVATIONS)}") from None
  return record("activation", [x], fn(x), name=name, kind=kind)


def relu(x, *, name: str | None = None):
  return activation(x, "relu", name=name)


def _sign_forward(x):
  return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def sign(x, quantizer: Callable | None = None, *, name: str | None = None):
  """sign(x) with sign(0) = +1.

  ``quantizer`` (e.g. an STE ``custom_vjp`` from ``binary``) computes it
  instead of the plain forward; its forward must be this sign.
  """
  y = (quantizer or _sign_forward)(x)
  return record("sign", [x], y, name=name)


def max_pool(x, window: Sequence[int], strides: Sequence[int],
             padding="VALID", *, name: str | None = None):
  """Max pooling of NHWC x (``strides`` is required: Flax defaults to 1)."""
  window, strides = pairs(window, 2, "window"), pairs(strides, 2, "strides")
  pads = explicit_padding(padding, x.shape[1:3], window, strides, "pool")
  y = nn.max_pool(x, tuple(window), tuple(strides),
                  tuple(tuple(p) for p in pads))
  return record("pool", [x], y, name=name, kind="max", **{"global": False},
                window=window, strides=strides, padding=pads)


def avg_pool(x, window: Sequence[int], strides: Sequence[int],
             padding="VALID", count_include_pad: bool = True, *,
             name: str | None = None):
  """Average pooling of NHWC x."""
  window, strides = pairs(window, 2, "window"), pairs(strides, 2, "strides")
  pads = explicit_padding(padding, x.shape[1:3], window, strides, "pool")
  y = nn.avg_pool(x, tuple(window), tuple(strides),
                  tuple(tuple(p) for p in pads),
                  count_include_pad=count_include_pad)
  return record("pool", [x], y, name=name, kind="avg", **{"global": False},
                window=window, strides=strides, padding=pads,
                count_include_pad=bool(count_include_pad))


def global_avg_pool(x, *, name: str | None = None):
  """Mean over H and W of NHWC x -> (N, C)."""
  return record("pool", [x], jnp.mean(x, axis=(1, 2)), name=name, kind="avg",
                **{"global": True})


def global_max_pool(x, *, name: str | None = None):
  """Max over H and W of NHWC x -> (N, C)."""
  return record("pool", [x], jnp.max(x, axis=(1, 2)), name=name, kind="max",
                **{"global": True})


def flatten(x, *, name: str | None = None):
  """(N, ...) -> (N, prod(...)) in C order."""
  return record("flatten", [x], x.reshape(x.shape[0], -1), name=name)


def add(*xs, name: str | None = None):
  """Elementwise sum (residual connection); shapes must be equal."""
  if len(xs) < 2:
    raise ValueError("add() needs at least two inputs")
  if any(x.shape != xs[0].shape for x in xs):
    raise ValueError(f"add() inputs differ in shape: {[x.shape for x in xs]}")
  y = xs[0]
  for x in xs[1:]:
    y = y + x
  return record("add", list(xs), y, name=name)


def concat(xs: Sequence[Any], axis: int = -1, *, name: str | None = None):
  """Concatenation along a non-batch ``axis`` (stored as a negative axis)."""
  xs = list(xs)
  ndim = xs[0].ndim
  axis = axis - ndim if axis >= 0 else axis
  if not -ndim < axis < 0:
    raise ValueError(f"concat() axis {axis} is the batch axis or out of range")
  return record("concat", xs, jnp.concatenate(xs, axis=axis), name=name,
                axis=axis)


def upsample(x, scale: Sequence[int] | int = 2, *, name: str | None = None):
  """Nearest-neighbour upsampling of NHWC x by integer factors."""
  fh, fw = pairs(scale, 2, "scale")
  y = jnp.repeat(jnp.repeat(x, fh, axis=1), fw, axis=2)
  return record("upsample", [x], y, name=name, method="nearest",
                scale=[fh, fw])


def gate(x, g, *, name: str | None = None):
  """Channel gate: NHWC x times per-example channel weights g (N, C)."""
  if g.ndim != 2 or g.shape[-1] != x.shape[-1]:
    raise ValueError(f"gate() needs g of shape (N, {x.shape[-1]}), "
                     f"got {g.shape}")
  return record("gate", [x, g], x * g[:, None, None, :], name=name)


def wta(g, density: float, *, name: str | None = None):
  """k-winners-take-all of (N, C) saliencies, k = ceil(density * C) (FBS)."""
  import sparsity  # pylint: disable=g-import-not-at-top
  if g.ndim != 2:
    raise ValueError(f"wta() needs g of shape (N, C), got {g.shape}")
  k = sparsity.wta_count(density, g.shape[-1])
  return record("wta", [g], sparsity.winners_take_all(g, k), name=name, k=k,
                density=float(density))
