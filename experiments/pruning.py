"""Pruning events of a run, read from `config.pruning`.

The trainer asks `prune_events(config)` for {step: target sparsity} and calls
`apply_pruning` at those steps, between jitted steps (an event transform).
Targets are sparsities of whole layers (`prune_*_to`), so an event is
idempotent: re-running it after a resume changes nothing.

`config.pruning` is the plain run's method section: a config without it
(every driver's config, a user's dense run) prunes nothing, as if
`pruning.method` were "none" (`method_of`).
"""
from __future__ import annotations

import sparsity

METHODS = ("none", "magnitude")
SCHEDULES = ("gradual", "oneshot")
SCOPES = ("layerwise", "global")


def method_of(config) -> str:
  """`config.pruning.method`, or "none" when the config has no `pruning`
  section."""
  return config.pruning.method if "pruning" in config else "none"


def prune_events(pcfg) -> dict[int, float]:
  """{step: overall target sparsity} for the config's pruning schedule.

  gradual: Zhu & Gupta (2017) cubic schedule from `begin_step` to `end_step`
  every `frequency` steps; oneshot: the full target at `begin_step`. `pcfg`
  None (a config without a `pruning` section) has no events.
  """
  if pcfg is None or pcfg.method == "none":
    return {}
  if pcfg.schedule == "oneshot":
    return {int(pcfg.begin_step): float(pcfg.target_sparsity)}
  steps = sparsity.prune_steps(pcfg.begin_step, pcfg.end_step, pcfg.frequency)
  return {int(s): float(sparsity.polynomial_sparsity(
      s, final=pcfg.target_sparsity, begin=pcfg.begin_step,
      end=pcfg.end_step)) for s in steps}


def layer_targets(pcfg, target: float) -> dict | float:
  """Per-layer target sparsities at an event whose overall target is `target`.

  `pcfg.layer_sparsity` maps a layer name (or name prefix) to its final
  sparsity; every layer follows the schedule in proportion to its own final
  value. Without overrides every layer gets `target`.
  """
  overrides = dict(pcfg.layer_sparsity or {})
  if not overrides:
    return target
  frac = target / pcfg.target_sparsity if pcfg.target_sparsity else 0.0
  out = {name: frac * float(s) for name, s in overrides.items()}
  out["default"] = target
  return out


def apply_pruning(params, mask, pcfg, target: float):
  """New mask after one magnitude-pruning event to overall sparsity `target`."""
  if pcfg.scope == "global":
    return sparsity.prune_global_to(params, mask, target)
  return sparsity.prune_layerwise_to(params, mask, layer_targets(pcfg, target))
