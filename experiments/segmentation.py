"""Segmentation metrics and the per-layer report of a (filter-)pruned model.

Metrics come from one confusion matrix over a whole split, accumulated
batch by batch on device (:func:`confusion_matrix`, rows = true class,
columns = predicted class, padding examples weigh 0). For class c with
TP_c = cm[c, c], FP_c = sum_r cm[r, c] - TP_c, FN_c = sum_p cm[c, p] - TP_c:

    IoU_c  = TP_c / (TP_c + FP_c + FN_c)
    Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)

``mean_iou`` and ``dice`` are the means over the classes that occur (in the
labels or the predictions: TP + FP + FN > 0); a class absent from both is
left out rather than counted as 1 or 0. Background is a class like any
other. These are dataset-level scores (pixels pooled over all images), not
means of per-image scores.

Test-time memory (:func:`layer_report`), per ``conv``/``dense`` entry of a
layer list, when the dropped filters are physically removed and the kernel
is stored in the cheaper of two forms (as ``experiments.export`` does):

    dense  4 * F_kept * d                     (float32, d = fan-in)
    csr    nnz * (4 + i) + 4 * (F_kept + 1)   (i = 2 if d < 65536 else 4)

plus 4 bytes per kept channel for its bias and 16 per kept channel for each
BatchNorm that follows it (scale, bias, running mean and variance). Every
other parameter (a BatchNorm that does not follow a conv, SE layers' biases)
is counted at 4 bytes. Conservative: the input channels of a consumer that
read a removed filter are not removed (the layer list may route a channel
through concat or add), so the true saving is at least this.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

import sparsity


# ---------------------------------------------------------------- metrics --
def confusion_matrix(logits, labels, num_classes: int, weight=None):
  """(C, C) float32 counts: [true, predicted], over every pixel of a batch.

  Args:
    logits: (N, ..., C) scores (argmax taken) or (N, ...) int predictions.
    labels: (N, ...) int true classes.
    num_classes: C.
    weight: optional (N,) per-example weight (0 for padding rows).
  """
  pred = (jnp.argmax(logits, -1) if logits.ndim == labels.ndim + 1
          else logits).astype(jnp.int32)
  w = jnp.ones(labels.shape, jnp.float32)
  if weight is not None:
    w = w * jnp.reshape(weight, (-1,) + (1,) * (labels.ndim - 1))
  idx = labels.astype(jnp.int32).reshape(-1) * num_classes + pred.reshape(-1)
  cm = jnp.zeros((num_classes * num_classes,), jnp.float32).at[idx].add(
      w.reshape(-1))
  return cm.reshape(num_classes, num_classes)


def _parts(cm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  cm = np.asarray(cm, np.float64)
  tp = np.diag(cm)
  return tp, cm.sum(0) - tp, cm.sum(1) - tp


def iou_per_class(cm) -> np.ndarray:
  """TP / (TP + FP + FN) per class (NaN for a class absent everywhere)."""
  tp, fp, fn = _parts(cm)
  den = tp + fp + fn
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, tp / den, np.nan)


def dice_per_class(cm) -> np.ndarray:
  """2 TP / (2 TP + FP + FN) per class (NaN for a class absent everywhere)."""
  tp, fp, fn = _parts(cm)
  den = 2 * tp + fp + fn
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, 2 * tp / den, np.nan)


def mean_iou(cm) -> float:
  """Mean of :func:`iou_per_class` over the classes that occur.

  Example:
    >>> mean_iou([[3, 1], [0, 2]])  # IoU 3/4 and 2/3
    0.7083333333333333
  """
  v = iou_per_class(cm)
  return float(np.nanmean(v)) if np.any(~np.isnan(v)) else 0.0


def mean_dice(cm) -> float:
  """Mean of :func:`dice_per_class` over the classes that occur.

  Example:
    >>> mean_dice([[3, 1], [0, 2]])  # Dice 6/7 and 4/5
    0.8285714285714285
  """
  v = dice_per_class(cm)
  return float(np.nanmean(v)) if np.any(~np.isnan(v)) else 0.0


# ----------------------------------------------------------------- report --
def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _mask_at(mask, path):
  if mask is None or path[0] != "params":
    return None
  try:
    return _get(mask, path[1:])
  except (KeyError, TypeError):
    return None


def layer_report(layers: Sequence[dict], variables: dict, mask=None
                 ) -> list[dict[str, Any]]:
  """One row per layer with parameters: kept filters, weights and memory.

  Args:
    layers: the layer list (``experiments.models.layer_list``).
    variables: ``{"params": ..., "batch_stats": ...}``.
    mask: the run's mask (``None`` = nothing pruned).

  Returns:
    Rows ``{"name", "op", "filters", "filters_kept", "weights",
    "weights_kept", "memory_bytes", "memory_bytes_dense"}``; ``filters`` and
    ``weights`` are ``None`` for layers without a kernel. ``memory_bytes``
    follows the module docstring; ``memory_bytes_dense`` is every parameter
    at 4 bytes (nothing removed).
  """
  params = variables["params"]
  groups = sparsity.channel_groups(layers)
  owner = {bn: name for name, bns in groups.items() for bn in bns}
  kept_of: dict[str, np.ndarray] = {}
  rows = []
  for e in layers:
    if not e["params"]:
      continue
    dense_bytes = 4 * sum(int(np.size(_get(variables, p)))
                          for p in e["params"].values())
    row = {"name": e["name"], "op": e["op"], "filters": None,
           "filters_kept": None, "weights": None, "weights_kept": None,
           "memory_bytes_dense": dense_bytes}
    if e["op"] in ("conv", "dense") and "kernel" in e["params"]:
      kpath = e["params"]["kernel"]
      kernel = np.asarray(_get(variables, kpath))
      m = _mask_at(mask, kpath)
      m = np.ones(kernel.shape, bool) if m is None else np.asarray(m, bool)
      cout, fan_in = kernel.shape[-1], int(np.prod(kernel.shape[:-1]))
      keep = m.reshape(-1, cout).any(0)
      kept_of[e["name"]] = keep
      nnz = int(m.sum())
      f = int(keep.sum())
      dense = 4 * f * fan_in
      csr = nnz * (4 + (2 if fan_in < 65536 else 4)) + 4 * (f + 1)
      mem = min(dense, csr) if nnz < kernel.size else dense
      if "bias" in e["params"]:
        mem += 4 * f
      row.update(filters=int(cout), filters_kept=f, weights=int(kernel.size),
                 weights_kept=nnz, memory_bytes=int(mem))
    elif e["op"] == "batchnorm" and owner.get(e["name"]) in kept_of:
      f = int(kept_of[owner[e["name"]]].sum())
      row["memory_bytes"] = 4 * f * len(e["params"])
    else:
      row["memory_bytes"] = dense_bytes
    rows.append(row)
  return rows


def totals(rows: Sequence[dict]) -> dict[str, Any]:
  """Sums over a :func:`layer_report`: kept/total filters of the conv
  layers, kept/total weights, memory; and the two fractions."""
  conv = [r for r in rows if r["op"] == "conv"]
  kern = [r for r in rows if r["weights"] is not None]
  filters = sum(r["filters"] for r in conv)
  filters_kept = sum(r["filters_kept"] for r in conv)
  weights = sum(r["weights"] for r in kern)
  weights_kept = sum(r["weights_kept"] for r in kern)
  return {"filters": filters, "filters_kept": filters_kept,
          "weights": weights, "weights_kept": weights_kept,
          "filters_remaining_fraction": filters_kept / max(filters, 1),
          "remaining_fraction": weights_kept / max(weights, 1),
          "memory_bytes": int(sum(r["memory_bytes"] for r in rows)),
          "memory_bytes_dense": int(sum(r["memory_bytes_dense"]
                                        for r in rows))}


def format_layer_report(rows: Sequence[dict]) -> str:
  """A plain-text table of :func:`layer_report` with a total line."""
  w = max([len(r["name"]) for r in rows] + [5])
  lines = [f"{'layer':<{w}}  {'op':<9} {'filters':>11} {'weights':>17} "
           f"{'bytes':>10} {'dense':>10}"]
  for r in rows:
    fl = ("" if r["filters"] is None
          else f"{r['filters_kept']}/{r['filters']}")
    wt = ("" if r["weights"] is None
          else f"{r['weights_kept']}/{r['weights']}")
    lines.append(f"{r['name']:<{w}}  {r['op']:<9} {fl:>11} {wt:>17} "
                 f"{r['memory_bytes']:>10} {r['memory_bytes_dense']:>10}")
  t = totals(rows)
  fl = f"{t['filters_kept']}/{t['filters']}"
  wt = f"{t['weights_kept']}/{t['weights']}"
  lines.append(f"{'total':<{w}}  {'':<9} {fl:>11} {wt:>17} "
               f"{t['memory_bytes']:>10} {t['memory_bytes_dense']:>10}")
  return "\n".join(lines)


def output_layers(layers: Sequence[dict]) -> list[str]:
  """conv/dense layers whose output reaches the model output through
  parameter-free ops only (the logits layers; never filter-pruned)."""
  by_name = {e["name"]: e for e in layers}
  out, todo = set(), [layers[-1]["name"]]
  while todo:
    name = todo.pop()
    e = by_name.get(name)
    if e is None:
      continue
    if e["op"] in ("conv", "dense"):
      out.add(name)
      continue
    if e["op"] == "batchnorm":
      continue
    todo.extend(e["inputs"])
  return [e["name"] for e in layers if e["name"] in out]


__all__ = ["confusion_matrix", "iou_per_class", "dice_per_class", "mean_iou",
           "mean_dice", "layer_report", "totals", "format_layer_report",
           "output_layers"]
