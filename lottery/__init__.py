"""Lottery tickets: the pure functions of iterative magnitude pruning (IMP).

IMP trains, prunes a fraction of the surviving weights, resets the rest and
trains again. This package holds the event functions between the jitted
training phases.

* Levels: :func:`prune_level` (per-layer or global rate of surviving
  weights), the ladders :func:`remaining_after`, :func:`oneshot_rate`,
  :func:`layered_remaining`, :func:`lenet_ladder`.
* Resets: :func:`reset` (``"init"``, ``"rewind"``, ``"lr_rewind"``,
  ``"finetune"`` -> starting params and schedule step),
  :func:`reset_opt_state`, :func:`mask_opt_state`; :data:`MODES`.
* Controls: :func:`random_reinit`, :func:`random_prune`.
* Linear mode connectivity: :func:`interpolate`, :func:`instability`.
* The driver's decisions: :func:`level_mask` (iterative or one-shot),
  :func:`derive_seed`, :func:`early_stop`. The loop over levels, with one
  checkpointed phase per level and branch, is ``experiments.lottery_run``.

This package imports nothing from ``experiments`` or ``launch``.
"""

from lottery._controls import random_prune
from lottery._driver import derive_seed
from lottery._driver import early_stop
from lottery._driver import level_mask
from lottery._controls import random_reinit
from lottery._instability import instability
from lottery._instability import interpolate
from lottery._levels import layered_remaining
from lottery._levels import lenet_ladder
from lottery._levels import oneshot_rate
from lottery._levels import prune_level
from lottery._levels import remaining_after
from sparsity import mask_opt_state  # re-exported: used with resets
from lottery._reset import MODES
from lottery._reset import reset
from lottery._reset import reset_opt_state

__all__ = (
    "MODES",
    "derive_seed",
    "early_stop",
    "instability",
    "interpolate",
    "layered_remaining",
    "lenet_ladder",
    "level_mask",
    "mask_opt_state",
    "oneshot_rate",
    "prune_level",
    "random_prune",
    "random_reinit",
    "remaining_after",
    "reset",
    "reset_opt_state",
)
