r"""The layer-list spec: the op set every layer list is written in.

A model is exported as a list of layers from a small op set; this module is
the one place that says which ops exist, which attributes and how many
inputs each takes, the names of the binary quantizers and the activation
kinds.  The model zoo records its lists against it
(``experiments/models/_layers.py``: a misspelt attribute or an unknown op
is refused when the model is traced), the NumPy evaluator validates a file
against it (``_evaluator.py``) and the FBS/structured MAC accounting reads
:data:`ZERO_PRESERVING` from it.  Pure Python (no NumPy, no JAX).

Format
------
``layer_list(model, input_shape)`` returns ``list[dict]``; every value is
JSON-serialisable (str, int, float, bool, list, dict).  ``input_shape`` and
every ``"shape"`` are per-example shapes **without** the batch axis; the
evaluator runs on a batch ``(N, *input_shape)`` and every op acts on axis 0 as
the batch axis.  Images are NHWC.

Keys of every entry:

``"name"``    str, unique in the list.  Ops with parameters are named by
              their Flax module path joined with ``"/"`` (e.g.
              ``"BasicBlock_3/Conv_0"``; a module applied twice gets
              ``"<path>_call1"``...); the others ``"<op or kind>_<k>"``
              (``"relu_4"``, ``"add_0"``).  ``"input"`` is reserved.
``"op"``      one of the ops below.
``"inputs"``  list of names of *earlier* entries, or ``"input"`` for the
              model input.  Always explicit (never an implied "previous
              layer"), in the order given below for each op.
``"params"``  dict role -> path, a path being the list of keys into the
              variables dict (``{"params": ..., "batch_stats": ...}``) that
              ``model.init`` returns, e.g.
              ``{"kernel": ["params", "Conv_0", "kernel"]}``.  ``{}`` when
              the op has none.  Roles not listed are absent (e.g. no
              ``"bias"`` for a conv with ``use_bias=False``).
``"shape"``   list[int], the output shape without the batch axis.

The last entry is the model output (the logits).  Entries whose output no
later entry uses are allowed only as the last entry.

Ops (attributes in addition to the keys above; x is the first input):

``dense``      y = x @ kernel + bias over the last axis of x.
               params: kernel (D_in, D_out), optional bias (D_out,).
``conv``       2-D cross-correlation of NHWC x with kernel
               (KH, KW, C_in / G, C_out) (Flax HWIO layout), zero padding.
               attrs: ``kernel_size`` [KH, KW]; ``strides`` [SH, SW];
               ``padding`` [[top, bottom], [left, right]] (explicit pairs,
               'SAME' already resolved); ``feature_group_count`` G (C_in for
               depthwise; output channel o uses input group o // (C_out/G)).
               params: kernel, optional bias (C_out,).
``batchnorm``  inference batch norm over the last axis:
               y = (x - mean) / sqrt(var + epsilon) * scale + bias.
               attrs: ``epsilon``.  params: mean, var (from
               ``batch_stats``), optional scale and bias (from ``params``;
               absent means 1 and 0).
``activation`` attrs: ``kind``, one of
               relu       max(x, 0)
               relu6      min(max(x, 0), 6)
               sigmoid    1 / (1 + exp(-x))
               tanh       tanh(x)
               hard_sigmoid  relu6(x + 3) / 6
               hard_swish    x * relu6(x + 3) / 6
               hard_tanh  clip(x, -1, 1)
               abs        |x|
``sign``       +1 where x >= 0, else -1 (sign(0) = +1), as float.
``pool``       attrs: ``kind`` "max" | "avg"; ``global`` bool.
               global: reduce H and W of NHWC x, output (C,).
               otherwise: ``window`` [WH, WW], ``strides`` [SH, SW],
               ``padding`` [[top, bottom], [left, right]]; max pooling pads
               with -inf; avg pooling pads with 0 and also has
               ``count_include_pad`` (true: divide by WH*WW; false: by the
               number of non-padding elements in the window).
``flatten``    reshape (N, ...) -> (N, prod(...)) in C order (for NHWC:
               H, then W, then C), i.e. ``x.reshape(N, -1)``.
``add``        elementwise sum of all inputs (same shapes, no broadcasting).
``concat``     concatenate inputs along ``axis`` (negative, counted from the
               end, never the batch axis).
``upsample``   attrs: ``method`` "nearest", ``scale`` [FH, FW] (integers):
               y[n, i, j, c] = x[n, i // FH, j // FW, c].
``gate``       channel gate (squeeze-excite): inputs [x, g], x (H, W, C),
               g (C,): y[n, h, w, c] = x[n, h, w, c] * g[n, c].
``wta``        k-winners-take-all over the last axis of x (C,) (FBS,
               ``sparsity.winners_take_all``): per example the k largest
               entries are kept, the others set to exactly 0; among equal
               values the lower index wins.  attrs: ``k`` (int, 1 <= k <=
               C) and ``density`` (the d with k = ceil(d * C), for reports).
               A ``gate`` whose g is a ``wta`` output is sparse: channels
               with g = 0 are 0 whatever x is, so an evaluator may skip
               computing them (and the producer of x for them).

Binary layers (``dense`` and ``conv`` only)
-------------------------------------------
A ``dense`` or ``conv`` entry MAY carry two more attributes; an absent one
means null.  They name the *forward* function (the STE variants of training
all forward to the same thing), so the evaluator needs no gradient rules:

``kernel_quantizer``  null | "sign" | "magnitude_aware_sign".  The kernel
               the layer multiplies by is the *view* of the stored (latent,
               real) kernel W:
               null                  W itself;
               sign                  where(W == 0, 0, s(W));
               magnitude_aware_sign  alpha * where(W == 0, 0, s(W)), with
                                     alpha[o] = mean(|W[..., o]|) over all
                                     axes but the last (zeros included);
               s(w) = +1 where w >= 0 else -1.  A 0 weight (pruned) is 0 in
               the view, never +-1.  Stochastic BinaryConnect records null:
               its test-time kernel is W itself.
``input_quantizer``   null | "sign" | "heaviside", applied elementwise to x
               BEFORE the product and BEFORE zero padding (so conv padding
               stays 0, not +-1):
               sign       +1 where x >= 0, else -1;
               heaviside  1 where x > 0, else 0 (x = 0 gives 0, as
                          binary.ste_heaviside).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

LAYER_OPS = ("dense", "conv", "batchnorm", "activation", "sign", "pool",
             "flatten", "add", "concat", "upsample", "gate", "wta")
# Keys of every entry; an attribute may not take one of these names.
RESERVED_KEYS = ("name", "op", "inputs", "params", "shape")
# The ops that may carry the binary attributes, and their values.
QUANTIZED_OPS = ("dense", "conv")
KERNEL_QUANTIZERS = (None, "sign", "magnitude_aware_sign")
INPUT_QUANTIZERS = (None, "sign", "heaviside")
ACTIVATION_KINDS = ("relu", "relu6", "sigmoid", "tanh", "hard_sigmoid",
                    "hard_swish", "hard_tanh", "abs")
# Activations with f(0) = 0: an all-zero channel stays all zero.  The
# evaluator's gating, the FBS MAC accounting and the structured MACs use it.
ZERO_PRESERVING = ("relu", "relu6", "tanh", "hard_tanh", "hard_swish", "abs")
POOL_KINDS = ("max", "avg")
UPSAMPLE_METHODS = ("nearest",)

# op -> (fewest, most inputs); None: no upper bound.
ARITY: dict[str, tuple[int, int | None]] = {
    **{op: (1, 1) for op in LAYER_OPS},
    "add": (2, None), "concat": (1, None), "gate": (2, 2)}

# op -> (required attributes, optional attributes).  A windowed pool also
# requires window/strides/padding, an avg one count_include_pad
# (:func:`check_attributes`).
_BINARY = ("kernel_quantizer", "input_quantizer")
ATTRIBUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dense": ((), _BINARY),
    "conv": (("kernel_size", "strides", "padding", "feature_group_count"),
             _BINARY),
    "batchnorm": (("epsilon",), ()),
    "activation": (("kind",), ()),
    "sign": ((), ()),
    "pool": (("kind", "global"),
             ("window", "strides", "padding", "count_include_pad")),
    "flatten": ((), ()),
    "add": ((), ()),
    "concat": (("axis",), ()),
    "upsample": (("method", "scale"), ()),
    "gate": ((), ()),
    "wta": (("k", "density"), ()),
}
# Added by the encoder (``_encode.py``): how a layer's tensors are stored.
STORAGE_KEY = "storage"


class SpecError(ValueError):
  """An entry that the layer-list spec does not allow (one line)."""


def wta_count(density: float, channels: int) -> int:
  """k = ceil(density * channels) (rounded to 9 decimals first), clipped to
  [1, channels]: the ``k`` of a ``wta`` entry (``sparsity.wta_count``).

    >>> wta_count(0.5, 64), wta_count(0.01, 8), wta_count(1.0, 3)
    (32, 1, 3)
  """
  k = math.ceil(round(density * channels, 9))
  return int(min(max(k, 1), channels))


def _ints(v, n=None) -> bool:
  return isinstance(v, list) and (n is None or len(v) == n) and all(
      isinstance(d, int) and not isinstance(d, bool) for d in v)


def _pairs(v) -> bool:
  return isinstance(v, list) and len(v) == 2 and all(
      _ints(p, 2) and min(p) >= 0 for p in v)


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_op(entry: Mapping[str, Any]) -> None:
  """Raises :class:`SpecError` unless ``entry["op"]`` is one of
  :data:`LAYER_OPS`."""
  if entry.get("op") not in LAYER_OPS:
    raise SpecError(f"layer {entry.get('name')!r}: unknown op "
                    f"{entry.get('op')!r} (ops: {', '.join(LAYER_OPS)})")


def check_arity(entry: Mapping[str, Any]) -> None:
  """Raises :class:`SpecError` unless the op takes ``len(entry["inputs"])``
  inputs (:data:`ARITY`)."""
  op, n = entry["op"], len(entry["inputs"])
  lo, hi = ARITY[op]
  if n < lo or (hi is not None and n > hi):
    raise SpecError(f"layer {entry['name']!r}: {op} takes "
                    f"{lo}..{hi or 'n'} inputs, got {n}")


def check_attributes(entry: Mapping[str, Any], *,
                     strict: bool = True) -> None:
  """Raises :class:`SpecError` unless the attributes of a known op are
  valid.

  Checks the binary attributes (dense/conv only, values from
  :data:`KERNEL_QUANTIZERS` / :data:`INPUT_QUANTIZERS`), then each op's
  required attributes and their types and ranges (integer pairs, explicit
  non-negative padding, a known activation kind, k of a ``wta`` equal to
  :func:`wta_count` of its density and channels).  ``strict`` also refuses
  attributes the op does not have (a misspelt name); the evaluator is
  lenient there (an unknown key of a file is ignored), the recorder strict.
  """
  name, op = entry.get("name"), entry["op"]
  bad = lambda what: SpecError(f"layer {name!r} ({op}): bad {what}")
  for attr, allowed in (("kernel_quantizer", KERNEL_QUANTIZERS),
                        ("input_quantizer", INPUT_QUANTIZERS)):
    if attr not in entry:
      continue
    if op not in QUANTIZED_OPS:
      raise SpecError(f"layer {name!r} ({op}): unknown {attr} "
                      f"{entry[attr]!r} ({attr} is an attribute of "
                      "dense/conv only)")
    if entry[attr] not in allowed:
      raise SpecError(f"layer {name!r} ({op}): unknown {attr} "
                      f"{entry[attr]!r}, not one of {allowed}")
  required, optional = ATTRIBUTES[op]
  if strict:
    unknown = sorted(set(entry) - set(RESERVED_KEYS) - set(required)
                     - set(optional) - {STORAGE_KEY})
    if unknown:
      raise SpecError(f"layer {name!r} ({op}): unknown attribute(s) "
                      f"{unknown}; {op} takes "
                      f"{list(required + optional) or 'none'}")
  e = entry
  if op == "conv":
    if not (_ints(e.get("kernel_size"), 2) and _ints(e.get("strides"), 2)
            and min(e["strides"]) > 0 and _pairs(e.get("padding"))):
      raise bad("kernel_size/strides/padding")
    g = e.get("feature_group_count")
    if not (isinstance(g, int) and not isinstance(g, bool) and g >= 1):
      raise bad(f"feature_group_count {g!r}")
  elif op == "batchnorm":
    if not _number(e.get("epsilon")) or e["epsilon"] < 0:
      raise bad("epsilon")
  elif op == "activation":
    if e.get("kind") not in ACTIVATION_KINDS:
      raise SpecError(f"layer {name!r}: unknown activation "
                      f"{e.get('kind')!r}")
  elif op == "pool":
    if e.get("kind") not in POOL_KINDS or not isinstance(e.get("global"),
                                                         bool):
      raise bad("kind/global")
    if not e["global"] and not (
        _ints(e.get("window"), 2) and _ints(e.get("strides"), 2) and
        min(e["window"] + e["strides"]) > 0 and _pairs(e.get("padding")) and
        (e["kind"] == "max" or isinstance(e.get("count_include_pad"), bool))):
      raise bad("window/strides/padding")
  elif op == "concat":
    if not isinstance(e.get("axis"), int) or e["axis"] >= 0:
      raise bad("axis")
  elif op == "upsample":
    if e.get("method") not in UPSAMPLE_METHODS or not _ints(
        e.get("scale"), 2) or min(e["scale"]) < 1:
      raise bad("method/scale")
  elif op == "wta":
    k, d = e.get("k"), e.get("density")
    c = e["shape"][-1] if e["shape"] else 0
    if not _number(d) or not 0 < d <= 1:
      raise bad(f"density {d!r} (must be in (0, 1])")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= c:
      raise bad(f"k {k!r} (must be in [1, {c}])")
    if k != wta_count(d, c):
      raise bad(f"k {k} (density {d} of {c} channels gives "
                f"{wta_count(d, c)})")


def check_entry(entry: Mapping[str, Any], *, strict: bool = True) -> None:
  """:func:`check_op`, :func:`check_arity` and :func:`check_attributes` of
  one entry (its inputs and shapes are the caller's to check).

    >>> check_entry({"name": "r", "op": "activation", "kind": "relu",
    ...              "inputs": ["input"], "params": {}, "shape": [4]})
    >>> try:
    ...   check_entry({"name": "p", "op": "pool", "kind": "max",
    ...                "global": True, "windw": [2, 2],
    ...                "inputs": ["input"], "params": {}, "shape": [4]})
    ... except SpecError as e:
    ...   print(str(e).split(";")[0])
    layer 'p' (pool): unknown attribute(s) ['windw']
  """
  check_op(entry)
  check_arity(entry)
  check_attributes(entry, strict=strict)
