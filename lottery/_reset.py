"""Where the next IMP level starts: reset to init, rewind, LR-rewind, finetune.

After a level has pruned the mask ``m``, the next level trains
``m * theta_start`` from schedule step ``t0``:

======================  ==================  =====  =============================
mode                    weights             t0     paper
======================  ==================  =====  =============================
``"init"``              ``m * theta_0``     0      Frankle & Carbin 2019
``"rewind"``            ``m * theta_k``     k      Frankle et al. 2019/2020
``"lr_rewind"``         ``m * theta_T``     k      Renda et al. 2020
``"finetune"``          ``m * theta_T``     0      Renda et al. 2020 (baseline)
======================  ==================  =====  =============================

These are event functions (between jitted phases); the trainer owns the
schedule and the number of steps.
"""

from typing import Any

import sparsity

PyTree = Any
Mask = Any

MODES = ("init", "rewind", "lr_rewind", "finetune")


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"unknown reset mode {mode!r}; choose one of "
                     f"{', '.join(MODES)}")


def reset(mode: str, *, mask: Mask, init_params: PyTree,
          final_params: PyTree, rewind_params: PyTree | None = None,
          rewind_step: int = 0) -> tuple[PyTree, int]:
  """The starting params and schedule step of the next IMP level.

  .. math::
     \\theta_{\\text{start}} = m \\odot \\begin{cases}
       \\theta_0 & \\text{init (reset to initialization), } t_0 = 0\\\\
       \\theta_k & \\text{rewind (weight rewinding), } t_0 = k\\\\
       \\theta_T & \\text{lr\\_rewind (keep final weights, replay the LR
                   schedule from } k), t_0 = k\\\\
       \\theta_T & \\text{finetune, } t_0 = 0
     \\end{cases}

  The mask multiplies every masked leaf; unmasked leaves (biases, BatchNorm)
  come from the same source unchanged. For ``"finetune"`` the returned step
  0 indexes a *constant* small learning rate (the final LR of the schedule,
  0.001 in Renda et al.), trained for ``T - k`` steps: the trainer switches
  to that constant schedule, this function only picks the weights. With
  ``rewind_step == 0``, ``theta_k`` is ``theta_0`` and ``rewind_params`` may
  be omitted.

  Args:
    mode: one of ``"init"``, ``"rewind"``, ``"lr_rewind"``, ``"finetune"``.
    mask: the mask of the new level.
    init_params: ``theta_0``, the params at initialization.
    final_params: ``theta_T``, the params at the end of the last level.
    rewind_params: ``theta_k``, the params saved at step ``rewind_step``
      (needed by ``"rewind"`` when ``rewind_step > 0``).
    rewind_step: ``k``, the rewind step (``>= 0``).

  Returns:
    ``(params, start_step)``: the masked starting params and the schedule
    step (a Python int) that the next level's training starts from.

  Raises:
    ValueError: for an unknown mode, a negative ``rewind_step``, or
      ``"rewind"`` with ``rewind_step > 0`` and no ``rewind_params``.

  Example:
    >>> import jax.numpy as jnp, lottery
    >>> m = {"d": {"kernel": jnp.array([True, False]), "bias": None}}
    >>> p0 = {"d": {"kernel": jnp.array([1., 2.]), "bias": jnp.array([0.])}}
    >>> pT = {"d": {"kernel": jnp.array([3., 4.]), "bias": jnp.array([5.])}}
    >>> params, t0 = lottery.reset("lr_rewind", mask=m, init_params=p0,
    ...                            final_params=pT, rewind_step=7)
    >>> params["d"]["kernel"].tolist(), params["d"]["bias"].tolist(), t0
    ([3.0, 0.0], [5.0], 7)

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (reset to
    init). Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and
    the Lottery Ticket Hypothesis", ICML 2020 (rewinding to step k). Renda,
    Frankle & Carbin, "Comparing Rewinding and Fine-tuning in Neural Network
    Pruning", ICLR 2020 (LR rewinding, fine-tuning).
  """
  _check_mode(mode)
  rewind_step = int(rewind_step)
  if rewind_step < 0:
    raise ValueError(f"rewind_step must be >= 0, got {rewind_step}")
  if mode == "init":
    return sparsity.apply_mask(init_params, mask), 0
  if mode == "rewind":
    if rewind_params is None:
      if rewind_step > 0:
        raise ValueError(f"mode 'rewind' at step {rewind_step} needs "
                         "rewind_params (theta_k)")
      rewind_params = init_params
    return sparsity.apply_mask(rewind_params, mask), rewind_step
  if mode == "lr_rewind":
    return sparsity.apply_mask(final_params, mask), rewind_step
  return sparsity.apply_mask(final_params, mask), 0  # finetune


def reset_opt_state(mode: str, *, mask: Mask,
                    rewind_opt_state: Any | None = None) -> Any | None:
  """The optimizer state that the next IMP level starts from.

  ``"rewind"`` restores the state saved at step ``k`` (momentum, Adam
  moments), masked so that pruned weights carry no stale moments
  (:func:`sparsity.mask_opt_state`). Every other mode, and ``"rewind"`` without a
  saved state (as in open_lth, which builds a new optimizer each level),
  returns ``None``: the trainer starts from ``tx.init(params)``.

  Args:
    mode: one of ``"init"``, ``"rewind"``, ``"lr_rewind"``, ``"finetune"``.
    mask: the mask of the new level.
    rewind_opt_state: the optimizer state saved at the rewind step.

  Returns:
    The masked saved state for ``"rewind"``, else ``None`` (fresh state).

  Raises:
    ValueError: for an unknown mode.

  Example:
    >>> import jax.numpy as jnp, lottery
    >>> lottery.reset_opt_state("init", mask={"k": jnp.array([True])}) is None
    True

  References:
    Frankle et al., "Linear Mode Connectivity and the Lottery Ticket
    Hypothesis", ICML 2020.
  """
  _check_mode(mode)
  if mode != "rewind" or rewind_opt_state is None:
    return None
  return sparsity.mask_opt_state(rewind_opt_state, mask)
