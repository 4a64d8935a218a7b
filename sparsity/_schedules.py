"""Sparsity schedules for gradual pruning.

A schedule is a pure function of the step. It accepts a Python int (for a
Python driver that decides when to call an event transform such as
:func:`prune_layerwise_to`) or a JAX integer (inside a jitted step, driven by
``state.count``), and returns a float of the same kind.
"""

from typing import Any

import jax.numpy as jnp
import numpy as np


def polynomial_sparsity(step: Any, *, final: float, initial: float = 0.0,
                        begin: int, end: int, exponent: float = 3) -> Any:
  """The gradual-pruning sparsity of Zhu & Gupta (2017) at ``step``.

  .. math::
     s_t = s_f + (s_i - s_f)\\left(1 - \\frac{t - t_0}{t_1 - t_0}\\right)^e
     \\quad\\text{for } t_0 \\le t \\le t_1,

  ``s_t = s_i`` before ``t_0`` and ``s_f`` after ``t_1``. With ``e = 3``
  (the paper's choice) the network is pruned fast at first, when redundant
  weights are plentiful, and slowly near the target. When ``end == begin``
  the schedule jumps to ``final`` at ``begin`` (one-shot).

  Args:
    step: the current step ``t``: a Python int/float, or a JAX/NumPy array.
    final: target sparsity ``s_f``.
    initial: sparsity ``s_i`` at ``begin`` (default 0).
    begin: first pruning step ``t_0``.
    end: last pruning step ``t_1 = t_0 + n * frequency``.
    exponent: ``e`` (default 3).

  Returns:
    The sparsity: a Python float for a Python step, else a float32 array.

  Example:
    >>> import sparsity
    >>> sparsity.polynomial_sparsity(0, final=0.9, begin=0, end=100)
    0.0
    >>> round(sparsity.polynomial_sparsity(50, final=0.9, begin=0, end=100), 4)
    0.7875
    >>> sparsity.polynomial_sparsity(200, final=0.9, begin=0, end=100)
    0.9

  References:
    Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
    pruning for model compression", arXiv:1710.01878, 2017 (Eq. 1).
  """
  if end < begin:
    raise ValueError(f"end ({end}) must be >= begin ({begin})")
  span = end - begin
  if isinstance(step, (jnp.ndarray, np.ndarray, np.generic)):
    t = jnp.asarray(step, jnp.float32)
    if span == 0:
      return jnp.where(t >= begin, jnp.float32(final), jnp.float32(initial))
    frac = jnp.clip((t - begin) / span, 0.0, 1.0)
    return (final + (initial - final) * (1.0 - frac) ** exponent).astype(
        jnp.float32)
  if span == 0:
    return float(final) if step >= begin else float(initial)
  frac = min(max((step - begin) / span, 0.0), 1.0)
  if frac == 1.0:
    return float(final)
  return float(final + (initial - final) * (1.0 - frac) ** exponent)


def prune_steps(begin: int, end: int, frequency: int) -> list[int]:
  """The steps at which a gradual schedule prunes: every ``frequency`` steps.

  ``[begin, begin + frequency, ...]`` up to ``end``; ``end`` itself is always
  included (appended if ``end - begin`` is not a multiple of ``frequency``)
  so that the final sparsity is reached.

  Args:
    begin: first pruning step.
    end: last pruning step (``>= begin``).
    frequency: steps between pruning events (``> 0``).

  Returns:
    The sorted list of event steps.

  Example:
    >>> import sparsity
    >>> sparsity.prune_steps(0, 100, 25)
    [0, 25, 50, 75, 100]
    >>> sparsity.prune_steps(10, 40, 20)
    [10, 30, 40]

  References:
    Zhu & Gupta, arXiv:1710.01878, 2017 (pruning every ``Delta t`` steps).
  """
  begin, end, frequency = int(begin), int(end), int(frequency)
  if frequency <= 0:
    raise ValueError(f"frequency must be > 0, got {frequency}")
  if end < begin:
    raise ValueError(f"end ({end}) must be >= begin ({begin})")
  steps = list(range(begin, end + 1, frequency))
  if steps[-1] != end:
    steps.append(end)
  return steps
