"""The scratch baselines' budgets of a filter-pruned network.

The MACs of a filter-pruned layer list (removed filters, the input
channels they leave dead, optionally the kept weights of each kernel) are
``experiments.macs.structured_macs``, re-exported here for the drivers
that read it as ``structured.structured_macs``.

Liu et al., "Rethinking the Value of Network Pruning" (ICLR 2019):
Scratch-E trains the pruned architecture from a fresh initialization for
as many steps as the original training; Scratch-B for the same compute,
``steps * dense MACs / pruned MACs`` (`scratch_b_steps`).
"""
from __future__ import annotations

import math

from experiments.macs import structured_macs as structured_macs  # re-export

__all__ = ["scratch_b_steps", "structured_macs"]


def scratch_b_steps(steps: int, macs_fraction: float,
                    max_factor: float = 0.0) -> tuple[int, float]:
  """(steps, factor) of Scratch-B: ``ceil(steps / macs_fraction)``.

  ``max_factor > 0`` caps the factor (0 = no cap).
  """
  factor = 1.0 / max(macs_fraction, 1e-12)
  if max_factor and max_factor > 0:
    factor = min(factor, float(max_factor))
  return int(math.ceil(steps * factor - 1e-9)), float(factor)
