r"""Multiply-accumulates of a layer list: static (removed filters) and FBS.

Every count here comes from one per-layer formula.  A ``conv`` with C_in
input and C_out output channels in G groups (output channel o reads the
C_in / G inputs of group o // (C_out / G)) and a ``dense`` over the last
axis cost, per example,

.. math::

   \mathrm{MACs} = P \cdot T \sum_{o\ \mathrm{live}}
   \#\{\text{live inputs of the group of } o\},

with P the output positions (:func:`positions`: H_out W_out for a conv,
the product of the non-channel output axes for a dense, 1 for a vector)
and T the kernel taps (KH KW, 1 for a dense); :func:`pair_macs` is
P T, the MACs of one (input channel, output channel) pair.  With every
channel live this is the dense count P T (C_in / G) C_out
(:func:`layer_macs`).  With a kernel mask (unstructured pruning) a layer
costs P MACs per kept weight between a live input and a live output.
Pools, adds and BatchNorm are not counted (the FLOPs convention of the
papers).

Removed filters (:func:`structured_macs`)
-----------------------------------------
``alive`` (``{layer: (C_out,) bool}``) removes filters: a removed filter
removes its output channel, and a channel that is 0 for every input also
removes the matching input channels (kernel rows) of the layers that read
it. Liveness follows the layer list (:func:`live_channels`):

* conv / dense: an output channel is live iff its filter is kept; a dense
  layer after ``flatten`` reads H * W rows per channel.
* batchnorm: keeps its input's liveness when it belongs to a pruned layer
  (its scale and shift are masked with the filter, so a dead channel stays
  0); otherwise every channel is live (a shift makes 0 into a constant).
* the activations with f(0) = 0 (``experiments.export.ZERO_PRESERVING``),
  pools, upsample, gate, wta: keep liveness; other activations and
  ``sign`` make every channel live. add: live in any input; concat: joined.

FBS gates (:func:`mac_plan`, :func:`executed_macs`, :func:`macs_metrics`)
------------------------------------------------------------------------
Gao et al., "Dynamic Channel Pruning: Feature Boosting and Suppression",
ICLR 2019.  From the layer list :func:`mac_plan` finds, for every ``conv``
and ``dense`` layer:

* the *gate of its output*: a ``gate`` op whose g is a ``wta`` output and
  whose x comes from the layer through channel-wise ops (BatchNorm,
  activations): an output channel with pi = 0 is 0 whatever the conv
  computes, so it need not be computed;
* the *gate of its input*: following the layer's input back through ops
  that map a zero channel to a zero channel (``pool`` max/avg, local or
  global, and the zero-preserving activations) to such a gate: the input
  channels that gate zeroed are 0, so their MACs can be skipped too.
  BatchNorm, ``sign``, ``sigmoid``, ``add``, ``flatten`` ... stop the chain
  (a BatchNorm adds its shift to a zero channel), and grouped convs (G > 1)
  never count input gating;
* whether it is a *saliency predictor*: a dense (or conv) whose output
  reaches a ``wta`` through activations.

Per example the formula above with n_in / n_out live channels (C_in / G and
C_out when not gated) is ``factor * n_in * n_out``, ``factor`` =
:func:`pair_macs`.  A channel counts as skipped when its gate value pi is
exactly 0: the wta losers, and also a winner whose ReLU saliency is 0 (its
channel is 0 as well).

The saliency predictors are **overhead**: they are not part of the dense
baseline and are counted in full (C_in x C_out per example, even when
their input is gated); the subsample mean|x| (additions only) is not
counted.  So

    macs_fraction = (sum of executed layer MACs + predictor MACs)
                    / sum of dense layer MACs

is 1 + overhead (not 1) when nothing is skipped; ``macs_overhead_fraction``
is the predictors' share alone.  Both are averaged over the examples of
the evaluated split.

Callers: the filter-pruning, gradient-counting and main/subsidiary drivers
(:func:`structured_macs`), the trainer's FBS evaluation (:func:`mac_plan`,
:func:`executed_macs`, :func:`macs_metrics`); ``experiments.structured``
and ``experiments.fbs`` re-export these names.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from experiments.export import ZERO_PRESERVING  # the layer-list spec's

_LINEAR = ("conv", "dense")


# ------------------------------------------------------ the formula --
def positions(entry: Mapping[str, Any]) -> int:
  """Output positions per example at which each kernel weight is used:
  H_out W_out for a conv, the product of the non-channel output axes for a
  dense (1 on a vector)."""
  if entry["op"] not in _LINEAR:
    raise ValueError(f"{entry['name']!r} is a {entry['op']}, not conv/dense")
  return math.prod(int(d) for d in entry["shape"][:-1])


def pair_macs(entry: Mapping[str, Any]) -> int:
  """MACs of one (input channel, output channel) pair of a conv/dense
  layer: :func:`positions` times the kernel taps (KH KW; 1 for a dense)."""
  taps = (math.prod(int(k) for k in entry["kernel_size"])
          if entry["op"] == "conv" else 1)
  return positions(entry) * taps


def groups(entry: Mapping[str, Any]) -> int:
  """G: the feature groups of a conv (1 for a dense)."""
  return int(entry.get("feature_group_count", 1)) if (
      entry["op"] == "conv") else 1


def layer_macs(entry: Mapping[str, Any], in_channels: int) -> int:
  """The dense MACs of a conv/dense layer reading ``in_channels``:
  :func:`pair_macs` * (C_in / G) * C_out.

    >>> conv = {"name": "c", "op": "conv", "shape": [4, 4, 8],
    ...         "kernel_size": [3, 3], "feature_group_count": 2}
    >>> layer_macs(conv, 4), layer_macs(
    ...     {"name": "d", "op": "dense", "shape": [10]}, 128)
    (2304, 1280)
  """
  return pair_macs(entry) * (int(in_channels) // groups(entry)) * int(
      entry["shape"][-1])


def _live_macs(entry, in_live, out_live) -> int:
  """The formula with live-channel masks: pair_macs * sum over live
  outputs of the live inputs of their group."""
  g, c_out = groups(entry), int(entry["shape"][-1])
  group_of_out = np.arange(c_out) // (c_out // g)
  in_per_group = in_live.reshape(g, -1).sum(axis=1)
  return pair_macs(entry) * int(np.sum(in_per_group[group_of_out][out_live]))


def _masked_macs(entry, kernel_mask, in_live, out_live) -> int:
  """One MAC per position per kept weight between live channels."""
  g, c_out = groups(entry), int(entry["shape"][-1])
  per_in = in_live.size // g
  km = np.asarray(kernel_mask, bool).reshape(-1, per_in, c_out)
  group_of_out = np.arange(c_out) // (c_out // g)
  rows_live = in_live.reshape(g, per_in)[group_of_out].T  # (per_in, C_out)
  kept = km & rows_live[None] & out_live[None, None, :]
  return positions(entry) * int(kept.sum())


# ---------------------------------------------- removed filters --
def live_channels(layers: Sequence[Mapping[str, Any]],
                  alive: Mapping[str, Any], masked_bn: bool = True
                  ) -> dict[str, np.ndarray]:
  """{entry name: (C,) bool} live channels of every entry's output when
  the filters of ``alive`` are removed (module docstring)."""
  pruned_bn = set()
  consumers: dict[str, list] = {}
  for e in layers:
    for i in e["inputs"]:
      consumers.setdefault(i, []).append(e)
  for name in (alive if masked_bn else ()):
    for c in consumers.get(name, ()):
      if c["op"] == "batchnorm":
        pruned_bn.add(c["name"])
  live: dict[str, np.ndarray] = {}
  for e in layers:
    op, c = e["op"], int(e["shape"][-1])
    ins = [None if i == "input" else live[i] for i in e["inputs"]]  # None: all
    if op in _LINEAR:
      keep = alive.get(e["name"])
      out = (np.ones((c,), bool) if keep is None
             else np.asarray(keep, bool).copy())
    elif op == "batchnorm":
      out = (ins[0].copy() if e["name"] in pruned_bn and ins[0] is not None
             else np.ones((c,), bool))
    elif op == "activation":
      out = (ins[0].copy() if e.get("kind") in ZERO_PRESERVING
             and ins[0] is not None else np.ones((c,), bool))
    elif op in ("pool", "upsample", "wta", "gate"):
      out = ins[0].copy() if ins[0] is not None else np.ones((c,), bool)
    elif op == "flatten":
      src = ins[0]
      out = (np.ones((c,), bool) if src is None
             else np.tile(src, c // src.size))
    elif op == "add":
      out = np.zeros((c,), bool)
      for x in ins:
        out |= np.ones((c,), bool) if x is None else x
    elif op == "concat":
      out = np.concatenate([np.ones((1,), bool) if x is None else x
                            for x in ins])
      if out.size != c:
        out = np.ones((c,), bool)
    else:  # sign and anything else: every channel live
      out = np.ones((c,), bool)
    live[e["name"]] = out
  return live


def structured_macs(layers: Sequence[Mapping[str, Any]],
                    alive: Mapping[str, Any] | None = None, *,
                    input_shape: Sequence[int],
                    kernel_masks: Mapping[str, Any] | None = None,
                    masked_bn: bool = True) -> dict:
  """Per-layer and total MACs with the filters of ``alive`` removed.

  Args:
    layers: a layer list.
    alive: ``{conv/dense name: (C_out,) bool}``, True = kept; layers not
      named keep every filter.
    input_shape: the per-example input shape (no batch axis).
    kernel_masks: optional ``{layer: bool kernel mask}`` of unstructured
      pruning: a layer then costs one MAC per kept weight between a live
      input and a live output channel (per output position).
    masked_bn: whether the BatchNorm after a pruned layer has its scale and
      shift masked too (``sparsity.expand_filter_masks``); if not, its
      output channels are all live (a shift turns 0 into a constant).

  Returns:
    ``{"layers": [{"name", "dense_macs", "macs", "filters_kept",
    "filters"}], "dense_macs": int, "macs": int, "macs_fraction": float}``.

  Example (hand-computed): a 3x3 conv 1 -> 4 channels on 4x4 (SAME), ReLU,
  global pool, dense 4 -> 2, with 2 of the 4 filters removed: the conv
  costs 16 * 9 * 1 * 2 = 288 of 576 MACs, the dense 2 * 2 = 4 of 8.

    >>> layers = [
    ...   {"name": "Conv_0", "op": "conv", "inputs": ["input"], "params": {},
    ...    "shape": [4, 4, 4], "kernel_size": [3, 3], "strides": [1, 1],
    ...    "feature_group_count": 1},
    ...   {"name": "relu_0", "op": "activation", "kind": "relu",
    ...    "inputs": ["Conv_0"], "params": {}, "shape": [4, 4, 4]},
    ...   {"name": "pool_0", "op": "pool", "kind": "avg", "global": True,
    ...    "inputs": ["relu_0"], "params": {}, "shape": [4]},
    ...   {"name": "Dense_0", "op": "dense", "inputs": ["pool_0"],
    ...    "params": {}, "shape": [2]}]
    >>> out = structured_macs(layers, {"Conv_0": [True, False, True, False]},
    ...                       input_shape=[4, 4, 1])
    >>> [(r["macs"], r["dense_macs"]) for r in out["layers"]]
    [(288, 576), (4, 8)]
  """
  alive = dict(alive or {})
  live = live_channels(layers, alive, masked_bn)
  channels = {e["name"]: int(e["shape"][-1]) for e in layers}
  channels["input"] = int(input_shape[-1])
  rows = []
  for e in layers:
    if e["op"] not in _LINEAR:
      continue
    src = e["inputs"][0]
    in_live = (np.ones((channels[src],), bool) if src == "input"
               else live[src])
    out_live = live[e["name"]]
    km = (kernel_masks or {}).get(e["name"])
    macs = (_live_macs(e, in_live, out_live) if km is None
            else _masked_macs(e, km, in_live, out_live))
    rows.append({"name": e["name"],
                 "dense_macs": layer_macs(e, channels[src]),
                 "macs": int(macs), "filters_kept": int(out_live.sum()),
                 "filters": int(e["shape"][-1])})
  total_dense = sum(r["dense_macs"] for r in rows)
  total = sum(r["macs"] for r in rows)
  return {"layers": rows, "dense_macs": int(total_dense), "macs": int(total),
          "macs_fraction": float(total / total_dense) if total_dense else 1.0}


# ------------------------------------------------------- FBS gates --
def _zero_preserving(entry: dict) -> bool:
  if entry["op"] == "pool":
    return True
  return entry["op"] == "activation" and entry["kind"] in ZERO_PRESERVING


def _source(by_name: dict, name: str, through) -> dict | None:
  """The first entry up the first-input chain from `name` that `through`
  does not pass (None when the chain reaches the model input)."""
  while name != "input":
    entry = by_name[name]
    if not through(entry):
      return entry
    name = entry["inputs"][0]
  return None


def _channelwise(entry: dict) -> bool:
  return entry["op"] in ("batchnorm", "activation")


def mac_plan(layers: list, input_shape) -> list[dict]:
  """Per conv/dense layer of a layer list: what its FBS MACs depend on.

  Args:
    layers: ``models.layer_list(model, input_shape)``.
    input_shape: per-example input shape (no batch axis).

  Returns:
    One dict per conv/dense layer, in order: ``name``, ``op``,
    ``predictor`` (bool), ``factor`` (MACs per input-output channel pair,
    :func:`pair_macs`: H_out W_out KH KW for a conv, 1 for a dense on a
    vector), ``c_in`` (the input channels each output channel reads:
    C_in / G), ``c_out``, ``dense_macs`` (= factor c_in c_out,
    :func:`layer_macs`), ``gate_in``, ``gate_out`` (the key of the gate in
    the ``"fbs_gates"`` collection, i.e. the FBS module's path, or None).
  """
  by_name = {e["name"]: e for e in layers}

  def channels(name: str) -> int:
    return int(input_shape[-1] if name == "input"
               else by_name[name]["shape"][-1])

  # wta -> (gate key, predictor); the key is the predictor's module path.
  predictors, wta_key = set(), {}
  for e in layers:
    if e["op"] != "wta":
      continue
    pred = _source(by_name, e["inputs"][0],
                   lambda x: x["op"] == "activation")
    if pred is None or pred["op"] not in _LINEAR:
      raise ValueError(f"wta {e['name']!r}: its input does not come from a "
                       "dense/conv saliency predictor")
    predictors.add(pred["name"])
    wta_key[e["name"]] = pred["name"].rpartition("/")[0]
  gate_key, gated_layer = {}, {}   # gate name -> key; layer name -> key
  for e in layers:
    if e["op"] == "gate" and e["inputs"][1] in wta_key:
      key = wta_key[e["inputs"][1]]
      gate_key[e["name"]] = key
      src = _source(by_name, e["inputs"][0], _channelwise)
      if src is not None and src["op"] in _LINEAR:
        gated_layer[src["name"]] = key

  plan = []
  for e in layers:
    if e["op"] not in _LINEAR:
      continue
    c_in = channels(e["inputs"][0])
    src = _source(by_name, e["inputs"][0], _zero_preserving)
    gate_in = (gate_key.get(src["name"]) if src is not None
               and groups(e) == 1 else None)
    is_pred = e["name"] in predictors
    plan.append({"name": e["name"], "op": e["op"], "predictor": is_pred,
                 "factor": pair_macs(e), "c_in": c_in // groups(e),
                 "c_out": int(e["shape"][-1]),
                 "dense_macs": layer_macs(e, c_in),
                 "gate_in": None if is_pred else gate_in,
                 "gate_out": gated_layer.get(e["name"])})
  return plan


def executed_macs(plan: list, gates: dict) -> dict:
  """Per layer, the MACs executed for each example.

  Args:
    plan: :func:`mac_plan`.
    gates: {gate key: (N, C) bool, True = channel kept}
      (``experiments.fbs.gates_of``); NumPy or JAX arrays.

  Returns:
    {layer name: (N,) float32 MACs}: factor * n_in * n_out, n = the kept
    channels of the layer's input / output gate, or c_in / c_out where not
    gated.  Predictors count in full.

  Example (a 1x1 conv 2 -> 3 on 2x2 maps, output gated, 2 examples):
    >>> import numpy as np
    >>> plan = [{"name": "c", "predictor": False, "factor": 4, "c_in": 2,
    ...          "c_out": 3, "gate_in": None, "gate_out": "L"}]
    >>> keep = np.array([[True, False, True], [False, False, True]])
    >>> executed_macs(plan, {"L": keep})["c"].tolist()  # 4*2*2, 4*2*1
    [16.0, 8.0]
  """
  n = next(iter(gates.values())).shape[0] if gates else 1

  def live(key, c):
    if key is None:
      return jnp.full((n,), float(c), jnp.float32)
    if key not in gates:
      raise KeyError(f"no gate {key!r} sown; have {sorted(gates)}")
    return jnp.sum(jnp.asarray(gates[key]), axis=-1).astype(jnp.float32)

  return {r["name"]: float(r["factor"]) * live(r["gate_in"], r["c_in"])
          * live(r["gate_out"], r["c_out"]) for r in plan}


def macs_metrics(plan: list, mean_macs: dict) -> dict:
  """Scalars of an evaluation from per-layer mean executed MACs.

  Returns ``macs_fraction`` (layers + predictors over dense layers),
  ``macs_overhead_fraction`` (predictors over dense layers) and
  ``macs/<layer>`` (mean executed MACs per example).
  """
  dense = sum(r["dense_macs"] for r in plan if not r["predictor"])
  over = sum(float(mean_macs[r["name"]]) for r in plan if r["predictor"])
  done = sum(float(mean_macs[r["name"]]) for r in plan)
  out = {"macs_fraction": done / dense, "macs_overhead_fraction": over / dense}
  out.update({f"macs/{k}": float(v) for k, v in mean_macs.items()})
  return out
