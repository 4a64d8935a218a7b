r"""Shrink: a filter-masked network made physically smaller, logits unchanged.

:func:`shrink` takes a layer list (``experiments.models.layer_list``, the
ops of ``experiments/export/_spec.py``), the variables its entries' paths
point into (``{"params": ..., "batch_stats": ...}``) and optional filter
masks, and returns a smaller layer list and variables that compute the
same logits (to float32 rounding): every channel that is exactly 0 for
every input (or a constant its readers can take into their biases) is
removed from the tensors that carry it, with the kernel rows that read it
and the kernel columns, biases and BatchNorm entries that make it.

Dead channels (value-based, never assumed)
------------------------------------------
A channel of an entry's output is *dead* when it is 0 whatever the input
is; it follows the list in order, from the variables' values:

* conv / dense: output o is dead iff its bias is 0 (or absent) and every
  kernel weight of o that reads a live input channel of its group is 0
  (an input quantizer ``sign`` maps 0 to 1: its inputs are all live;
  ``heaviside`` maps 0 to 0; a kernel quantizer keeps a 0 weight 0);
* batchnorm :math:`(x - \mu)\,\gamma / \sqrt{\sigma^2 + \epsilon} + \beta`:
  dead iff :math:`\beta = 0` and (:math:`\gamma = 0`, or x dead and
  :math:`\mu = 0`).  A filter removed by ``sparsity.expand_filter_masks``
  has its following BatchNorm's scale and shift masked, so it stays dead;
  a soft-pruned filter (FPGM between selections) keeps its shift, is the
  constant :math:`\beta - \mu\gamma/\sqrt{\sigma^2+\epsilon}`, not
  dead (it goes only where it can be folded, below);
* the activations with f(0) = 0 (``experiments.export.ZERO_PRESERVING``),
  pools, upsample, wta: dead iff x is; other activations and ``sign``:
  never; add: dead iff dead in every input; concat: its parts; flatten
  (C order, NHWC: position-major, channel-minor): row p C + c is dead iff
  channel c is; gate: dead iff x or g is.

Which channels can go (the dependency rules)
--------------------------------------------
Channel indices are tied into classes (union-find) wherever an op cannot
change them independently: a channel-wise op (batchnorm, activation,
sign, pool, upsample) ties output c to input c; add ties output c to c of
every input; concat ties its parts (with their offsets) to the output;
flatten ties rows p C + c for all positions p to channel c; gate ties
x, g and the output at c (a squeeze-excite branch loses the channels its
gated tensor loses: the dense making g loses its column); a depthwise
conv (C_in = C_out = G) ties output c to input c.  A class is removed
iff nothing in it is *needed*:

* a conv / dense reading a channel needs it unless it is dead (then its
  kernel rows multiply exact zeros), or a constant it can fold: a channel
  with the same value k at every position for every input
  (:func:`constant_channels`: e.g. a zero filter whose BatchNorm shift is
  intact, a pruned neuron that keeps its bias) read by a dense or by a
  conv without padding (no quantizers, one group) goes, its rows times k
  summed over the taps added to the reader's bias (:func:`fold_constants`;
  a reader without a bias gets one; equal to float32 rounding).  A padded
  conv reads the constant as 0 at the border: it keeps the channel.  So a
  residual sum's channel is removed only where every branch is dead (or
  constant) and the sum feeds no layer that needs it;
* fixed: the model input, the logits (the last entry), the first channel
  of a tensor that would otherwise lose every channel (a whole layer
  pruned: the file format has no empty tensors), the input and
  output of a ``wta`` (its k winners are taken across channels), both
  sides of a grouped conv other than depthwise, the input of a layer with
  an input quantizer ``sign`` or the kernel quantizer
  ``magnitude_aware_sign`` (its alpha is a mean over the input rows), and
  both sides of a layer whose parameters another entry shares.

A removed class drops, from every tensor of it, that channel: producers
(conv/dense) lose the kernel column and bias entry, BatchNorms their four
entries, consumers the kernel rows (``H * W`` rows of a dense after a
flatten, one per position), a depthwise conv one group; shapes and
``feature_group_count`` follow.  Nothing else changes (names, paths,
attributes), so the result runs in ``models.layer_executor``, the NumPy
evaluator and ``experiments.export.write_model``.  :func:`shrink` is
:func:`kept_channels`, :func:`fold_constants` then
:func:`remove_channels`; the latter also cuts any tree the paths point
into the same way (a params-shaped mask).

Example: a conv 1 -> 3 whose middle filter is removed, ReLU, global
pool, a dense 3 -> 2: the conv keeps 2 filters, the dense 2 rows.

  >>> import numpy as np
  >>> layers = [
  ...   {"name": "C", "op": "conv", "inputs": ["input"], "shape": [4, 4, 3],
  ...    "params": {"kernel": ["params", "C", "kernel"]},
  ...    "kernel_size": [1, 1], "strides": [1, 1],
  ...    "padding": [[0, 0], [0, 0]], "feature_group_count": 1},
  ...   {"name": "relu_0", "op": "activation", "kind": "relu",
  ...    "inputs": ["C"], "params": {}, "shape": [4, 4, 3]},
  ...   {"name": "pool_0", "op": "pool", "kind": "avg", "global": True,
  ...    "inputs": ["relu_0"], "params": {}, "shape": [3]},
  ...   {"name": "D", "op": "dense", "inputs": ["pool_0"], "shape": [2],
  ...    "params": {"kernel": ["params", "D", "kernel"]}}]
  >>> v = {"params": {"C": {"kernel": np.ones((1, 1, 1, 3), np.float32)},
  ...                 "D": {"kernel": np.ones((3, 2), np.float32)}}}
  >>> small, sv = shrink(layers, v, {"C": [True, False, True]})
  >>> [e["shape"][-1] for e in small], sv["params"]["D"]["kernel"].shape
  ([2, 2, 2, 2], (2, 2))
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from experiments import macs
from experiments.export import ZERO_PRESERVING  # the layer-list spec's
import sparsity

_LINEAR = ("conv", "dense")
_CHANNELWISE = ("batchnorm", "activation", "sign", "pool", "upsample")


class _Classes:
  """Union-find over the channel slots of every tensor."""

  def __init__(self, sizes: Mapping[str, int]):
    self.offset, n = {}, 0
    for name, c in sizes.items():
      self.offset[name] = n
      n += int(c)
    self.parent = np.arange(n)

  def slots(self, name: str, size: int) -> np.ndarray:
    return self.offset[name] + np.arange(size)

  def find(self, i: int) -> int:
    root = i
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[i] != root:
      self.parent[i], i = root, self.parent[i]
    return root

  def union(self, a: np.ndarray, b: np.ndarray) -> None:
    for i, j in zip(np.ravel(a), np.ravel(b)):
      ri, rj = self.find(int(i)), self.find(int(j))
      if ri != rj:
        self.parent[max(ri, rj)] = min(ri, rj)

  def roots(self, idx: np.ndarray) -> np.ndarray:
    return np.array([self.find(int(i)) for i in np.ravel(idx)], int)


def _get(variables, path, name):
  node = variables
  for key in path:
    if not isinstance(node, Mapping) or key not in node:
      raise ValueError(f"layer {name!r}: no variable at {'/'.join(path)}")
    node = node[key]
  return np.asarray(node)


def _zero(a) -> np.ndarray:
  return np.asarray(a) == 0


def _groups(e) -> int:
  return int(e.get("feature_group_count", 1)) if e["op"] == "conv" else 1


def _depthwise(e, c_in: int) -> bool:
  g = _groups(e)
  return e["op"] == "conv" and g > 1 and c_in == g == int(e["shape"][-1])


def dead_channels(layers: Sequence[Mapping[str, Any]], variables,
                  input_shape: Sequence[int] | None = None
                  ) -> dict[str, np.ndarray]:
  """{entry name: (C,) bool}: the output channels that are exactly 0 for
  every input, from the values of ``variables`` (module docstring)."""
  dead: dict[str, np.ndarray] = {}

  def of(name, c):
    return np.zeros((c,), bool) if name == "input" else dead[name]

  channels = {e["name"]: int(e["shape"][-1]) for e in layers}
  if input_shape is not None:
    channels["input"] = int(input_shape[-1])
  for e in layers:
    op, c, name = e["op"], int(e["shape"][-1]), e["name"]
    a = {role: _get(variables, path, name)
         for role, path in e["params"].items()}
    src = e["inputs"][0]
    if op in _LINEAR:
      out = _dead_but_bias(e, variables, dead)
      if "bias" in a:
        out &= _zero(a["bias"])
    elif op == "batchnorm":
      shift0 = _zero(a["bias"]) if "bias" in a else np.ones((c,), bool)
      scale0 = _zero(a["scale"]) if "scale" in a else np.zeros((c,), bool)
      out = shift0 & (scale0 | (of(src, c) & _zero(a["mean"])))
    elif op == "activation":
      out = (of(src, c).copy() if e["kind"] in ZERO_PRESERVING
             else np.zeros((c,), bool))
    elif op in ("pool", "upsample", "wta"):
      out = of(src, c).copy()
    elif op == "flatten":
      x = of(src, channels.get(src, c))
      out = np.tile(x, c // x.size)
    elif op == "add":
      out = np.ones((c,), bool)
      for i in e["inputs"]:
        out &= of(i, c)
    elif op == "concat":
      if e["axis"] == -1:
        out = np.concatenate([of(i, channels[i]) for i in e["inputs"]])
      else:
        out = np.ones((c,), bool)
        for i in e["inputs"]:
          out &= of(i, c)
    elif op == "gate":
      out = of(src, c) | of(e["inputs"][1], c)
    else:  # sign, and anything new: never dead
      out = np.zeros((c,), bool)
    dead[name] = out
  return dead


def _relu6(x):
  return np.minimum(np.maximum(x, 0.0), 6.0)


# kind -> NumPy function (the spec's formulas), for constant channels.
_NUMPY_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0), "relu6": _relu6,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "tanh": np.tanh,
    "hard_sigmoid": lambda x: _relu6(x + 3.0) / 6.0,
    "hard_swish": lambda x: x * _relu6(x + 3.0) / 6.0,
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0), "abs": np.abs}


def constant_channels(layers: Sequence[Mapping[str, Any]], variables,
                      input_shape: Sequence[int] | None = None
                      ) -> dict[str, np.ndarray]:
  """{entry name: (C,) float64}: the value of every output channel that is
  the same constant at every position for every input, NaN elsewhere (a
  dead channel is 0).  A conv/dense output whose live weights are all 0
  is its bias; channel-wise ops map the constant (a windowed average pool
  that counts padding only keeps 0); add sums, concat and flatten
  rearrange, gate multiplies."""
  dead = dead_channels(layers, variables, input_shape)
  const: dict[str, np.ndarray] = {}
  nan = lambda c: np.full((c,), np.nan)

  def of(name, c):
    return nan(c) if name == "input" else const[name]

  channels = {e["name"]: int(e["shape"][-1]) for e in layers}
  for e in layers:
    op, c, name = e["op"], int(e["shape"][-1]), e["name"]
    a = {role: _get(variables, path, name).astype(np.float64)
         for role, path in e["params"].items()}
    src = e["inputs"][0]
    if op in _LINEAR:
      bias = a["bias"] if "bias" in a else np.zeros((c,))
      out = np.where(_dead_but_bias(e, variables, dead), bias, np.nan)
    elif op == "batchnorm":
      x = of(src, c)
      mul = 1.0 / np.sqrt(a["var"] + e["epsilon"]) * a.get("scale", 1.0)
      out = (x - a["mean"]) * mul + a.get("bias", 0.0)
      if "scale" in a:
        out = np.where(a["scale"] == 0, a.get("bias", 0.0), out)
    elif op == "activation":
      out = _NUMPY_ACTIVATIONS[e["kind"]](of(src, c))
    elif op == "sign":
      out = np.where(of(src, c) >= 0, 1.0, -1.0)
      out[np.isnan(of(src, c))] = np.nan
    elif op == "pool":
      out = of(src, c).copy()
      if (not e["global"] and e["kind"] == "avg" and e["count_include_pad"]
          and np.any(np.asarray(e["padding"]) > 0)):
        out[out != 0] = np.nan
    elif op == "upsample":
      out = of(src, c).copy()
    elif op == "flatten":
      x = of(src, channels.get(src, c))
      out = np.tile(x, c // x.size)
    elif op == "add":
      out = np.zeros((c,))
      for i in e["inputs"]:
        out = out + of(i, c)
    elif op == "concat" and e["axis"] == -1:
      out = np.concatenate([of(i, channels[i]) for i in e["inputs"]])
    elif op == "gate":
      out = of(src, c) * of(e["inputs"][1], c)
    else:  # wta, a concat along another axis, anything new
      out = nan(c)
    out = np.where(dead[name], 0.0, out)
    const[name] = out
  return const


def _dead_but_bias(e, variables, dead) -> np.ndarray:
  """(C_out,) bool: every weight of the output channel that reads a live
  input is 0 (the channel is its bias)."""
  w = _get(variables, e["params"]["kernel"], e["name"])
  rows, c, g = w.shape[-2], int(e["shape"][-1]), _groups(e)
  src = e["inputs"][0]
  x_dead = (np.zeros((rows * g,), bool) if src == "input"
            or e.get("input_quantizer") == "sign" else dead[src])
  if x_dead.size != rows * g:
    raise ValueError(f"layer {e['name']!r}: kernel reads {rows * g} "
                     f"channels, its input has {x_dead.size}")
  nz = np.any(w.reshape(-1, rows, c) != 0, axis=0)  # (rows, C_out)
  live_rows = (~x_dead).reshape(g, rows)[np.arange(c) // (c // g)].T
  return ~np.any(nz & live_rows, axis=0)


def _foldable(e) -> bool:
  """A linear layer that reads a constant channel as a constant at every
  position and tap (a dense, or a conv without padding; no quantizers, one
  group): the channel's kernel rows times the constant fold into its
  bias."""
  if e.get("input_quantizer") is not None or e.get(
      "kernel_quantizer") is not None or _groups(e) != 1:
    return False
  return e["op"] == "dense" or not np.any(np.asarray(e["padding"]))


def masked_variables(layers: Sequence[Mapping[str, Any]], variables,
                     filter_masks: Mapping[str, Any]):
  """``variables`` with the filters of ``filter_masks`` removed as the
  structured drivers remove them: kernel column, bias and the following
  BatchNorm's scale and shift set to 0 (``sparsity.expand_filter_masks``
  over ``sparsity.channel_groups(layers)``)."""
  params = variables["params"]
  mask = sparsity.expand_filter_masks(
      params, {k: np.asarray(v, bool) for k, v in filter_masks.items()},
      sparsity.channel_groups(layers))
  params = jax.tree_util.tree_map(np.asarray, sparsity.apply_mask(params,
                                                                 mask))
  return {**variables, "params": params}


def shrink(layers: Sequence[Mapping[str, Any]], variables,
           filter_masks: Mapping[str, Any] | None = None, *,
           input_shape: Sequence[int] | None = None):
  """The physically smaller network of a filter-masked one.

  Args:
    layers: a layer list.
    variables: ``{"params": ..., "batch_stats": ...}`` (NumPy or JAX
      arrays), the entries' ``"params"`` paths pointing into it.
    filter_masks: optional ``{conv/dense name: (C_out,) bool}``, True =
      kept, applied first (:func:`masked_variables`); without them the
      variables are taken as they are (e.g. a masked ``TrainState``'s).
    input_shape: per-example input shape (only its channels are read;
      defaults to what the first layers read).

  Returns:
    ``(layers, variables)``: new lists and dicts (the arguments are not
    changed), the same names and paths, every removable channel gone
    (module docstring); variables hold NumPy arrays.
  """
  if filter_masks:
    variables = masked_variables(layers, variables, filter_masks)
  keep = kept_channels(layers, variables, input_shape=input_shape)
  layers, variables = fold_constants(layers, variables, keep,
                                     input_shape=input_shape)
  return remove_channels(layers, variables, keep)


def fold_constants(layers: Sequence[Mapping[str, Any]], variables,
                   keep: Mapping[str, Any], *,
                   input_shape: Sequence[int] | None = None):
  """``(layers, variables)`` where every conv/dense that reads a constant
  channel that ``keep`` removes has it in its bias:
  :math:`b'_o = b_o + \\sum_{r\\ \\mathrm{removed}} k_r \\sum_{taps}
  W_{\\ldots r o}` (a layer without a bias gets one, at its kernel's path
  with ``bias``).  Exact up to float32 rounding (:func:`_foldable`).
  Returns new objects; nothing to fold returns the arguments."""
  if input_shape is None:
    input_shape = _input_shape(layers, variables)
  const = constant_channels(layers, variables, input_shape)
  new_layers, new_vars = list(layers), None
  for k, e in enumerate(layers):
    src = e["inputs"][0]
    if e["op"] not in _LINEAR or src == "input" or not _foldable(e):
      continue  # (a depthwise conv loses a whole group: nothing to fold)
    gone = ~np.asarray(keep[src], bool) & np.isfinite(const[src]) & (
        const[src] != 0)
    if not gone.any():
      continue
    w = _get(variables, e["params"]["kernel"], e["name"]).astype(np.float64)
    taps = w.reshape(-1, w.shape[-2], w.shape[-1]).sum(axis=0)  # (C_in, O)
    delta = const[src][gone] @ taps[gone]
    if new_vars is None:
      new_vars = _to_numpy(variables)
    e = copy.deepcopy(dict(e))
    path = e["params"].get("bias") or [*e["params"]["kernel"][:-1], "bias"]
    e["params"]["bias"] = list(path)
    node = new_vars
    for key in path[:-1]:
      node = node[key]
    old = (node[path[-1]] if path[-1] in node
           and "bias" in layers[k]["params"] else np.zeros(w.shape[-1]))
    node[path[-1]] = (np.asarray(old, np.float64) + delta).astype(
        np.float32)
    new_layers[k] = e
  return new_layers, (variables if new_vars is None else new_vars)


def kept_channels(layers: Sequence[Mapping[str, Any]], variables, *,
                  input_shape: Sequence[int] | None = None
                  ) -> dict[str, np.ndarray]:
  """{entry name (and ``"input"``): (C,) bool}, the output channels that
  :func:`shrink` keeps (module docstring: dead channels, classes, what is
  needed or fixed)."""
  if input_shape is None:
    input_shape = _input_shape(layers, variables)
  sizes = {"input": int(input_shape[-1])}
  sizes.update({e["name"]: int(e["shape"][-1]) for e in layers})
  dead = dead_channels(layers, variables, input_shape)
  const = constant_channels(layers, variables, input_shape)
  uf = _Classes(sizes)
  slots = lambda n: uf.slots(n, sizes[n])
  pinned = [slots("input"), slots(layers[-1]["name"])]
  needed = []
  paths: dict[tuple, list[str]] = {}
  for e in layers:
    for path in e["params"].values():
      paths.setdefault(tuple(path), []).append(e["name"])
  shared = {n for names in paths.values() if len(names) > 1 for n in names}
  for e in layers:
    op, name, ins = e["op"], e["name"], e["inputs"]
    if op in _CHANNELWISE or op == "add" or (
        op == "concat" and e["axis"] != -1):
      for i in ins:
        uf.union(slots(name), slots(i))
    elif op == "concat":
      uf.union(slots(name), np.concatenate([slots(i) for i in ins]))
    elif op == "flatten":
      c = sizes[ins[0]]
      uf.union(slots(name), np.tile(slots(ins[0]), sizes[name] // c))
    elif op == "gate":
      uf.union(slots(name), slots(ins[0]))
      uf.union(slots(name), slots(ins[1]))
    elif op == "wta":
      pinned += [slots(name), slots(ins[0])]
    elif op in _LINEAR:
      src = ins[0]
      if name in shared:
        pinned += [slots(name), slots(src)]
      elif _depthwise(e, sizes[src]):
        uf.union(slots(name), slots(src))
      elif _groups(e) > 1:
        pinned += [slots(name), slots(src)]
      elif (e.get("input_quantizer") == "sign"
            or e.get("kernel_quantizer") == "magnitude_aware_sign"):
        pinned.append(slots(src))
      elif src != "input":
        free = dead[src] | (np.isfinite(const[src]) if _foldable(e)
                            else False)
        needed.append(slots(src)[~free])
    elif op not in _CHANNELWISE:
      pinned += [slots(name)] + [slots(i) for i in ins]
  keep_root = set()
  for idx in pinned + needed:
    keep_root.update(uf.roots(idx).tolist())
  roots = {n: uf.roots(slots(n)) for n in sizes}
  for n in sizes:  # no empty tensor (the file format has none): one stays
    if sizes[n] and not np.isin(roots[n], list(keep_root)).any():
      keep_root.add(int(roots[n][0]))
  return {n: np.isin(roots[n], list(keep_root)) for n in sizes}


def _input_shape(layers, variables):
  for e in layers:
    if "input" in e["inputs"] and e["op"] in _LINEAR:
      w = _get(variables, e["params"]["kernel"], e["name"])
      return [w.shape[-2] * _groups(e)]
  raise ValueError("shrink: pass input_shape (no conv/dense reads the input)")


def remove_channels(layers: Sequence[Mapping[str, Any]], tree,
                    keep: Mapping[str, Any]):
  """``(layers, tree)`` with only the ``keep`` channels
  (:func:`kept_channels`): shapes and ``feature_group_count`` of the
  entries; kernels, biases and BatchNorm vectors of ``tree``.  ``tree`` is
  the variables, or any tree the entries' paths point into (e.g.
  ``{"params": mask}``, a params-shaped mask: a path it lacks, or a None
  leaf, is left as it is).  Returns new objects (NumPy leaves)."""
  new_tree = _to_numpy(tree)

  def put(path, cut):
    node = new_tree
    for key in path[:-1]:
      if not isinstance(node, dict) or key not in node:
        return
      node = node[key]
    if isinstance(node, dict) and path[-1] in node and (
        node[path[-1]] is not None):
      node[path[-1]] = cut(np.asarray(node[path[-1]]))

  new_layers = []
  for e in layers:
    e = copy.deepcopy(dict(e))
    out = np.asarray(keep[e["name"]], bool)
    src = np.asarray(keep[e["inputs"][0]], bool)
    cut_out = lambda a, out=out: a[..., out]
    if e["op"] in _LINEAR:
      if _depthwise(e, src.size):
        e["feature_group_count"] = int(out.sum())
        cut_kernel = cut_out
      elif _groups(e) == 1:
        cut_kernel = lambda a, src=src, out=out: a[..., src, :][..., out]
      else:  # pinned: every channel kept
        cut_kernel = cut_out
      put(e["params"]["kernel"], cut_kernel)
      if "bias" in e["params"]:
        put(e["params"]["bias"], cut_out)
    elif e["op"] == "batchnorm":
      for path in e["params"].values():
        put(path, cut_out)
    e["shape"] = [*e["shape"][:-1], int(out.sum())]
    new_layers.append(e)
  return new_layers, new_tree


def _to_numpy(tree):
  if isinstance(tree, Mapping):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return None if tree is None else np.array(tree)


def parameter_count(layers: Sequence[Mapping[str, Any]], variables) -> int:
  """Number of scalars in the arrays the entries of ``layers`` read
  (each shared path counted once)."""
  seen = {}
  for e in layers:
    for path in e["params"].values():
      seen[tuple(path)] = _get(variables, path, e["name"]).size
  return int(sum(seen.values()))


def shrunk_size(layers: Sequence[Mapping[str, Any]], variables, *,
                input_shape: Sequence[int]) -> dict:
  """What :func:`shrink` of a (masked) network leaves, for a summary.

  Returns ``{"parameters", "shrunk_parameters"}`` (:func:`parameter_count`
  before and after), ``{"dense_macs", "shrunk_macs"}`` (the MACs of every
  conv/dense layer of the list and of the shrunk list,
  ``macs.structured_macs`` with nothing removed) and
  ``"channels_removed"`` ``{entry: removed output channels}`` of the
  conv/dense entries that lost any.
  """
  keep = kept_channels(layers, variables, input_shape=input_shape)
  small, small_vars = remove_channels(*fold_constants(
      layers, variables, keep, input_shape=input_shape), keep)
  return {
      "parameters": parameter_count(layers, variables),
      "shrunk_parameters": parameter_count(small, small_vars),
      "dense_macs": macs.structured_macs(layers,
                                         input_shape=input_shape)["macs"],
      "shrunk_macs": macs.structured_macs(small,
                                          input_shape=input_shape)["macs"],
      "channels_removed": {
          e["name"]: int(np.sum(~keep[e["name"]])) for e in layers
          if e["op"] in _LINEAR and not np.all(keep[e["name"]])}}


def state_shrunk_size(layers: Sequence[Mapping[str, Any]], state, *,
                      input_shape: Sequence[int]) -> dict:
  """:func:`shrunk_size` of a ``TrainState``'s (masked) params and
  BatchNorm statistics, fetched from the devices: what a structured
  driver's summary records."""
  variables = {"params": jax.device_get(state.params),
               "batch_stats": jax.device_get(state.batch_stats) or {}}
  return shrunk_size(layers, variables, input_shape=input_shape)
