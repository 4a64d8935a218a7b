"""Linear-mode-connectivity instability: the error barrier between two nets.

Two copies trained from the same state with different SGD noise are stable
when the error does not rise along the straight line between them.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def interpolate(params_a: PyTree, params_b: PyTree, alpha: float) -> PyTree:
  """The point ``alpha`` of the way from ``params_a`` to ``params_b``.

  .. math:: \\theta(\\alpha) = (1 - \\alpha)\\, \\theta_a + \\alpha\\, \\theta_b

  so ``alpha = 0`` gives ``params_a`` and ``alpha = 1`` gives ``params_b``.
  Floating leaves keep their dtype; other leaves (integer counters) are
  taken from ``params_a``. Two masked nets with the same mask interpolate
  to a net with the same zeros.

  Args:
    params_a: a pytree.
    params_b: a pytree of the same structure and shapes.
    alpha: the interpolation coefficient (usually in [0, 1]).

  Returns:
    The interpolated pytree.

  Example:
    >>> import jax.numpy as jnp, lottery
    >>> lottery.interpolate({"w": jnp.array([0., 4.])},
    ...                     {"w": jnp.array([2., 0.])}, 0.25)["w"].tolist()
    [0.5, 3.0]
  """
  def one(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if not jnp.issubdtype(a.dtype, jnp.inexact):
      return a
    return ((1.0 - alpha) * a + alpha * b).astype(a.dtype)
  return jax.tree.map(one, params_a, params_b)


def instability(params_a: PyTree, params_b: PyTree,
                error_fn: Callable[[PyTree], float],
                num_points: int = 30) -> dict[str, Any]:
  """Error barrier height on the linear path between two nets.

  With ``E`` the error (e.g. test classification error) and ``alpha_i``
  ``num_points`` evenly spaced values in [0, 1], endpoints included:

  .. math::
     \\text{instability} = \\max_i E(\\theta(\\alpha_i))
        - \\tfrac12 \\big(E(\\theta_a) + E(\\theta_b)\\big)

  with :math:`\\theta(\\alpha) = (1-\\alpha)\\theta_a + \\alpha\\theta_b`.
  Frankle et al. call a net stable when this is below 2 % (0.02 as a
  fraction). Note that a path whose error is linear but whose endpoints
  differ has instability ``|E_b - E_a| / 2``, as in the definition.

  Args:
    params_a: the first trained copy.
    params_b: the second copy (same structure and mask).
    error_fn: ``error_fn(params) -> float``; jit it yourself if it is
      expensive (the shapes never change, so it compiles once).
    num_points: number of evenly spaced ``alpha`` (>= 2; 30 in the paper).

  Returns:
    ``{"alphas": [...], "errors": [...], "instability": float}`` with
    Python floats (JSON-ready).

  Example:
    >>> import jax.numpy as jnp, lottery
    >>> a, b = {"w": jnp.array(0.)}, {"w": jnp.array(2.)}
    >>> err = lambda p: float(1.0 - (p["w"] - 1.0) ** 2)
    >>> out = lottery.instability(a, b, err, num_points=3)
    >>> out["alphas"], out["errors"], out["instability"]
    ([0.0, 0.5, 1.0], [0.0, 1.0, 0.0], 1.0)

  References:
    Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the
    Lottery Ticket Hypothesis", ICML 2020.
  """
  num_points = int(num_points)
  if num_points < 2:
    raise ValueError(f"num_points must be >= 2, got {num_points}")
  alphas = [float(a) for a in np.linspace(0.0, 1.0, num_points)]
  errors = [float(error_fn(interpolate(params_a, params_b, a)))
            for a in alphas]
  barrier = max(errors) - 0.5 * (errors[0] + errors[-1])
  return {"alphas": alphas, "errors": errors, "instability": float(barrier)}
