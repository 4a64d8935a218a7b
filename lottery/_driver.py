"""The pure decisions of the IMP driver: each level's mask, seed and result.

The loop over levels lives with the trainer (``experiments/lottery_run.py``:
one checkpointed phase per level and per branch); everything it decides is
a pure function here, so it can be checked by hand:

* :func:`level_mask`: the mask a level trains with (iterative: prune the
  previous level's trained weights; one-shot: prune the dense level-0
  weights straight to the level's fraction);
* :func:`derive_seed`: the data-order and control seeds of a level;
* :func:`early_stop`: the early-stopping point of a level's evaluations.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import sparsity
from lottery import _levels

PyTree = Any
Mask = Any


def level_mask(level: int, params: PyTree, mask: Mask, *,
               rates: float | Mapping[str, float] | None = None,
               global_rate: float | None = None,
               include: Callable[[str], bool] | None = None,
               oneshot: bool = False) -> Mask:
  """The mask of IMP level ``level >= 1``.

  Iterative (``oneshot=False``): ``params`` are the trained weights of level
  ``level - 1`` and ``mask`` its mask; one :func:`lottery.prune_level` at the
  given rates removes a fraction ``p`` of the survivors, so
  ``(1 - p)^level`` remains.

  One-shot (``oneshot=True``): ``params`` are the trained weights of the
  dense level 0 and ``mask`` its (full) mask; every layer is pruned at once
  at rate :func:`lottery.oneshot_rate` ``(level, p) = 1 - (1 - p)^level``,
  reaching the same fraction as ``level`` iterative levels.

  Args:
    level: the level to make the mask for (``>= 1``).
    params: trained weights (see above).
    mask: their mask (see above).
    rates: per-layer rates (float or ``{name or prefix: rate, "default":
      rate}``), exclusive with ``global_rate``.
    global_rate: one rate over the included leaves together.
    include: with ``global_rate``, ``leaf_name -> bool`` (others keep
      their mask).
    oneshot: see above.

  Returns:
    The new mask.

  Example:
    >>> import jax.numpy as jnp, sparsity, lottery
    >>> p = {"k": jnp.arange(1.0, 11.0)}
    >>> m = sparsity.create_mask(p, lambda path, leaf: True)
    >>> sparsity.count(lottery.level_mask(2, p, m, rates=0.5, oneshot=True))
    (2, 10)

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (iterative
    vs one-shot pruning).
  """
  if level < 1:
    raise ValueError(f"level must be >= 1, got {level}")
  if not oneshot:
    return _levels.prune_level(params, mask, rates=rates,
                               global_rate=global_rate, include=include)
  if global_rate is not None:
    return _levels.prune_level(
        params, mask, global_rate=_levels.oneshot_rate(level, global_rate),
        include=include)
  if rates is None:
    raise ValueError("level_mask takes rates= or global_rate=")
  return _levels.prune_level(
      params, mask, rates=lambda name: _levels.oneshot_rate(
          level, sparsity.resolve_rate(rates, name)))


def derive_seed(seed: int, *tags: int) -> int:
  """A seed in ``[0, 2**31)`` derived from ``seed`` and integer tags.

  Used for the data order of a level (``tags = (1, level)``), the draws of
  a control (``(2, level, control, s)``) and the two instability copies
  (``(3, level, copy)``). Deterministic and independent of the platform
  (NumPy's ``SeedSequence``).

  Example:
    >>> import lottery
    >>> lottery.derive_seed(0, 1, 3) == lottery.derive_seed(0, 1, 3)
    True
    >>> lottery.derive_seed(0, 1, 3) != lottery.derive_seed(0, 1, 4)
    True
  """
  words = np.random.SeedSequence([int(seed), *[int(t) for t in tags]])
  return int(words.generate_state(1)[0] % (2 ** 31))


def early_stop(evals: Sequence[Mapping[str, float]]) -> dict[str, Any]:
  """The early-stopping point: the evaluation with the lowest val loss.

  Determined retroactively (the level trains its full length anyway), as
  in Frankle & Carbin: the step of minimum validation loss, and the test
  accuracy measured at that step. Ties go to the earliest step.

  Args:
    evals: rows with ``"step"``, ``"val_loss"`` and ``"test_accuracy"``
      (e.g. the evaluation lines of a level's metrics.jsonl).

  Returns:
    ``{"early_stop_step": int, "early_stop_test_accuracy": float,
    "early_stop_val_loss": float}``.

  Example:
    >>> import lottery
    >>> lottery.early_stop([
    ...     {"step": 100, "val_loss": 0.5, "test_accuracy": 0.8},
    ...     {"step": 200, "val_loss": 0.3, "test_accuracy": 0.9},
    ...     {"step": 300, "val_loss": 0.3, "test_accuracy": 0.7}])
    {'early_stop_step': 200, 'early_stop_test_accuracy': 0.9, \
'early_stop_val_loss': 0.3}

  References:
    Frankle & Carbin, ICLR 2019, Sec. 2 (early-stopping criterion).
  """
  rows = [r for r in evals if "val_loss" in r]
  if not rows:
    raise ValueError("no evaluation rows with 'val_loss'")
  best = min(rows, key=lambda r: (float(r["val_loss"]), int(r["step"])))
  return {"early_stop_step": int(best["step"]),
          "early_stop_test_accuracy": float(best["test_accuracy"]),
          "early_stop_val_loss": float(best["val_loss"])}
