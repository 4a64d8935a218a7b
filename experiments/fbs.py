r"""FBS: MAC accounting of the dynamic gates (the library the loop uses).

Gao et al., "Dynamic Channel Pruning: Feature Boosting and Suppression",
ICLR 2019 (the layer is ``experiments.models.FBSConv``, the pure functions
``sparsity.winners_take_all`` ...).

MAC accounting
--------------
From the model's layer list (``models.layer_list``) :func:`mac_plan` finds,
for every ``conv`` and ``dense`` layer:

* the *gate of its output*: a ``gate`` op whose g is a ``wta`` output and
  whose x comes from the layer through channel-wise ops (BatchNorm,
  activations): an output channel with pi = 0 is 0 whatever the conv
  computes, so it need not be computed;
* the *gate of its input*: following the layer's input back through ops
  that map a zero channel to a zero channel (``pool`` max/avg, local or
  global, and the activations with f(0) = 0: relu, relu6, tanh, hard_tanh,
  hard_swish, abs) to such a gate: the input channels that gate zeroed
  are 0, so their MACs can be skipped too.  BatchNorm, ``sign``,
  ``sigmoid``, ``add``, ``flatten`` ... stop the chain (a BatchNorm adds its
  shift to a zero channel), and grouped convs (G > 1) never count input
  gating;
* whether it is a *saliency predictor*: a dense (or conv) whose output
  reaches a ``wta`` through activations.

Per example, with n_in / n_out the number of live input / output channels
(C_in / C_out when not gated) and G the feature groups:

.. math::

   \mathrm{MACs}_{\text{conv}} = H_{out} W_{out} K_H K_W\, n_{in}\, n_{out}
   / G, \qquad \mathrm{MACs}_{\text{dense}} = n_{in}\, n_{out},

the *dense* MACs being the same with n = C.  A channel counts as skipped
when its gate value pi is exactly 0: the wta losers, and also a winner
whose ReLU saliency is 0 (its channel is 0 as well).

The saliency predictors are **overhead**: they are not part of the dense
baseline and are counted in full (C_in x C_out per example, even when
their input is gated); the subsample mean|x| (additions only) is not
counted.  So

    macs_fraction = (sum of executed layer MACs + predictor MACs)
                    / sum of dense layer MACs

is 1 + overhead (not 1) when nothing is skipped; ``macs_overhead_fraction``
is the predictors' share alone.  Both are averaged over the examples of
the evaluated split.

The run driver is ``experiments.fbs_run``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.export import ZERO_PRESERVING


# ------------------------------------------------------------- the plan --
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
  """Per conv/dense layer of a layer list: what its MACs depend on.

  Args:
    layers: ``models.layer_list(model, input_shape)``.
    input_shape: per-example input shape (no batch axis).

  Returns:
    One dict per conv/dense layer, in order: ``name``, ``op``,
    ``predictor`` (bool), ``factor`` (MACs per input-output channel pair:
    H_out W_out KH KW / G for a conv, 1 for a dense), ``c_in``, ``c_out``,
    ``dense_macs`` (= factor c_in c_out), ``gate_in``, ``gate_out`` (the
    key of the gate in the ``"fbs_gates"`` collection, i.e. the FBS
    module's path, or None).
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
    if pred is None or pred["op"] not in ("dense", "conv"):
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
      if src is not None and src["op"] in ("conv", "dense"):
        gated_layer[src["name"]] = key

  plan = []
  for e in layers:
    if e["op"] not in ("conv", "dense"):
      continue
    c_in, c_out = channels(e["inputs"][0]), int(e["shape"][-1])
    groups = int(e.get("feature_group_count", 1))
    factor = 1
    if e["op"] == "conv":
      factor = (int(np.prod(e["shape"][:-1])) * int(np.prod(
          e["kernel_size"]))) // groups
    src = _source(by_name, e["inputs"][0], _zero_preserving)
    gate_in = (gate_key.get(src["name"]) if src is not None
               and groups == 1 else None)
    is_pred = e["name"] in predictors
    plan.append({"name": e["name"], "op": e["op"], "predictor": is_pred,
                 "factor": factor, "c_in": c_in, "c_out": c_out,
                 "dense_macs": factor * c_in * c_out,
                 "gate_in": None if is_pred else gate_in,
                 "gate_out": gated_layer.get(e["name"])})
  return plan


def gates_of(sown) -> dict:
  """The ``"fbs_gates"`` collection as {module path: (N, C) bool keep}."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(sown)[0]:
    keys = [str(p.key) for p in path if hasattr(p, "key")]
    if keys and keys[-1] == "keep":
      keys = keys[:-1]
    out["/".join(keys)] = leaf
  return out


def executed_macs(plan: list, gates: dict) -> dict:
  """Per layer, the MACs executed for each example.

  Args:
    plan: :func:`mac_plan`.
    gates: {gate key: (N, C) bool, True = channel kept} (:func:`gates_of`);
      NumPy or JAX arrays.

  Returns:
    {layer name: (N,) float32 MACs}: factor * n_in * n_out, n = the kept
    channels of the layer's input / output gate, or C where not gated.
    Predictors count in full.

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
