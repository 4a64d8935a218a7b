"""FBS: the sown gates and the per-layer MAC report.

Gao et al., "Dynamic Channel Pruning: Feature Boosting and Suppression",
ICLR 2019 (the layer is ``experiments.models.FBSConv``, the pure functions
``sparsity.winners_take_all`` ...).

The MAC accounting of the gates (which conv/dense each gate zeroes, on its
output and, through zero-preserving ops, on the next layer's input; the
executed MACs per example; ``macs_fraction``) is ``experiments.macs``
(:func:`mac_plan`, :func:`executed_macs`, :func:`macs_metrics`,
re-exported here).  This module reads the ``"fbs_gates"`` collection
(:func:`gates_of`) and makes the per-layer table of an evaluation
(:func:`layer_table`, :func:`format_layer_table`).

The run driver is ``experiments.fbs_run``.
"""
from __future__ import annotations

import jax

from experiments.macs import executed_macs as executed_macs  # re-exports
from experiments.macs import mac_plan as mac_plan
from experiments.macs import macs_metrics as macs_metrics

__all__ = ["executed_macs", "format_layer_table", "gates_of", "layer_table",
           "mac_plan", "macs_metrics"]


def gates_of(sown) -> dict:
  """The ``"fbs_gates"`` collection as {module path: (N, C) bool keep}.

    >>> import numpy as np
    >>> sown = {"Block_0": {"FBSConv_1": {"keep": np.ones((2, 4), bool)}}}
    >>> {k: v.shape for k, v in gates_of(sown).items()}
    {'Block_0/FBSConv_1': (2, 4)}
  """
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(sown)[0]:
    keys = [str(p.key) for p in path if hasattr(p, "key")]
    if keys and keys[-1] == "keep":
      keys = keys[:-1]
    out["/".join(keys)] = leaf
  return out


def layer_table(plan: list, metrics: dict) -> list[dict]:
  """Per-layer rows from :func:`macs_metrics` output: name, predictor,
  dense_macs (0 for predictors: not in the baseline), executed_macs (mean
  per example), fraction (executed / dense, None for predictors)."""
  rows = []
  for r in plan:
    ex = float(metrics[f"macs/{r['name']}"])
    dense = 0 if r["predictor"] else r["dense_macs"]
    rows.append({"name": r["name"], "predictor": r["predictor"],
                 "dense_macs": int(dense), "executed_macs": ex,
                 "fraction": ex / dense if dense else None})
  return rows


def format_layer_table(rows: list, metrics: dict) -> str:
  """The printed per-layer MAC table with a total line."""
  w = max([len(r["name"]) for r in rows] + [5])
  lines = [f"{'layer':<{w}}  {'dense MACs':>12}  {'executed MACs':>14}  "
           f"{'fraction':>8}"]
  for r in rows:
    frac = ("overhead" if r["predictor"] else f"{r['fraction']:.4f}")
    lines.append(f"{r['name']:<{w}}  {r['dense_macs']:>12d}  "
                 f"{r['executed_macs']:>14.1f}  {frac:>8}")
  dense = sum(r["dense_macs"] for r in rows)
  done = sum(r["executed_macs"] for r in rows)
  lines.append(f"{'total':<{w}}  {dense:>12d}  {done:>14.1f}  "
               f"{metrics['macs_fraction']:>8.4f}   (overhead "
               f"{metrics['macs_overhead_fraction']:.4f})")
  return "\n".join(lines)
