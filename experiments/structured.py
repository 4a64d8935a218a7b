"""MACs of a filter-pruned network, and the scratch baselines' budgets.

`structured_macs(layers, alive)` counts the multiply-accumulates of every
conv and dense layer of a layer list (``models.layer_list``) when the
filters in ``alive`` (``{layer: (C_out,) bool}``) are removed: a removed
filter removes its output channel, and a channel that is 0 for every input
also removes the matching input channels (kernel rows) of the layers that
read it. Liveness follows the layer list:

* conv / dense: an output channel is live iff its filter is kept; a dense
  layer after ``flatten`` reads H * W rows per channel.
* batchnorm: keeps its input's liveness when it belongs to a pruned layer
  (its scale and shift are masked with the filter, so a dead channel stays
  0); otherwise every channel is live (a shift makes 0 into a constant).
* activations with f(0) = 0 (relu, relu6, tanh, hard_tanh, hard_swish,
  abs), pools, upsample, gate, wta: keep liveness; other activations and
  ``sign`` make every channel live. add: live in any input; concat: joined.

MACs of a conv: ``H_out * W_out * KH * KW * (live inputs of the group) *
(live outputs)``; of a dense layer ``live inputs * live outputs``. Pools,
adds and BatchNorm are not counted (the FLOPs convention of the papers).

Liu et al., "Rethinking the Value of Network Pruning" (ICLR 2019):
Scratch-E trains the pruned architecture from a fresh initialization for
as many steps as the original training; Scratch-B for the same compute,
``steps * dense MACs / pruned MACs`` (`scratch_b_steps`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from experiments.export import ZERO_PRESERVING  # the layer-list spec's


def _live_of(layers: Sequence[Mapping[str, Any]],
             alive: Mapping[str, Any], masked_bn: bool = True
             ) -> dict[str, np.ndarray]:
  """{entry name: (C,) bool} live channels of every entry's output."""
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
    if op in ("conv", "dense"):
      keep = alive.get(e["name"])
      out = (np.ones((c,), bool) if keep is None
             else np.asarray(keep, bool).copy())
    elif op == "batchnorm":
      out = (ins[0].copy() if e["name"] in pruned_bn and ins[0] is not None
             else np.ones((c,), bool))
    elif op == "activation":
      out = (ins[0].copy() if e.get("kind") in ZERO_PRESERVING
             and ins[0] is not None else np.ones((c,), bool))
    elif op in ("pool", "upsample", "wta"):
      out = ins[0].copy() if ins[0] is not None else np.ones((c,), bool)
    elif op == "gate":
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
      input and a live output channel (per output position for a conv).
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
  live = _live_of(layers, alive, masked_bn)
  shapes = {e["name"]: list(e["shape"]) for e in layers}
  shapes["input"] = list(input_shape)
  rows = []
  for e in layers:
    if e["op"] not in ("conv", "dense"):
      continue
    src = e["inputs"][0]
    in_shape = shapes[src]
    in_live = (np.ones((int(in_shape[-1]),), bool) if src == "input"
               else live[src])
    out_live = live[e["name"]]
    c_out = int(e["shape"][-1])
    km = (kernel_masks or {}).get(e["name"])
    if km is not None:
      km = np.asarray(km, bool)
      if e["op"] == "conv":
        kh, kw = e["kernel_size"]
        g = int(e.get("feature_group_count", 1))
        per_in = int(in_shape[-1]) // g
        spatial = int(e["shape"][0]) * int(e["shape"][1])
        m = km.reshape(kh * kw, per_in, c_out)
        group_of_out = np.arange(c_out) // (c_out // g)
        rows_live = in_live.reshape(g, per_in)[group_of_out].T  # (per_in, C)
        kept = m & rows_live[None] & out_live[None, None, :]
        dense = spatial * kh * kw * per_in * c_out
        macs = spatial * int(kept.sum())
      else:
        dense = int(np.prod(in_shape)) * c_out
        macs = int((km & in_live[:, None] & out_live[None, :]).sum())
    elif e["op"] == "conv":
      kh, kw = e["kernel_size"]
      g = int(e.get("feature_group_count", 1))
      c_in = int(in_shape[-1])
      spatial = int(e["shape"][0]) * int(e["shape"][1]) * kh * kw
      per_out_in = c_in // g
      dense = spatial * per_out_in * c_out
      group_of_out = np.arange(c_out) // (c_out // g)
      in_per_group = in_live.reshape(g, per_out_in).sum(axis=1)
      macs = spatial * int(np.sum(in_per_group[group_of_out][out_live]))
    else:
      d_in = int(np.prod(in_shape))
      dense = d_in * c_out
      macs = int(in_live.sum()) * int(out_live.sum())
    rows.append({"name": e["name"], "dense_macs": int(dense),
                 "macs": int(macs), "filters_kept": int(out_live.sum()),
                 "filters": c_out})
  total_dense = sum(r["dense_macs"] for r in rows)
  total = sum(r["macs"] for r in rows)
  return {"layers": rows, "dense_macs": int(total_dense), "macs": int(total),
          "macs_fraction": float(total / total_dense) if total_dense else 1.0}


def scratch_b_steps(steps: int, macs_fraction: float,
                    max_factor: float = 0.0) -> tuple[int, float]:
  """(steps, factor) of Scratch-B: ``ceil(steps / macs_fraction)``.

  ``max_factor > 0`` caps the factor (0 = no cap).
  """
  factor = 1.0 / max(macs_fraction, 1e-12)
  if max_factor and max_factor > 0:
    factor = min(factor, float(max_factor))
  return int(math.ceil(steps * factor - 1e-9)), float(factor)
