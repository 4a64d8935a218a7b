"""Random values for every variable of a model, for tests and benchmarks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, input_shape, seed: int = 0, *,
                     scale_range: tuple[float, float] = (0.5, 1.5),
                     other_std: float = 0.3,
                     binary_uniform: bool = False) -> dict:
  """Random values for every variable of `model` (``params`` and
  ``batch_stats``), without running its init (slow, op by op).

  Kernels are N(0, 2 / fan_in) (He), or U(-1, 1) for a binary layer's
  latent kernel (a path component starting with ``Binary``) when
  `binary_uniform`; BatchNorm variances U(0.5, 2), BatchNorm scales
  U(`scale_range`), biases, shifts and means N(0, `other_std`). Init's
  zeros and ones would hide a wrong role (mean / var or scale / bias
  swapped), which is why the statistics are not trivial. One
  ``np.random.default_rng(seed)`` draws the leaves in tree order, so the
  values are a function of `seed` and the model alone.

  Args:
    model: a Flax Linen module of the zoo or a user's.
    input_shape: one example's shape, e.g. ``(8, 8, 1)``.
    seed: the NumPy seed.
    scale_range: the BatchNorm scales' uniform range (a low end near 0
      gives channels that Network Slimming removes).
    other_std: the standard deviation of biases, shifts and means.
    binary_uniform: latent binary kernels U(-1, 1) instead of He.

  Returns:
    The variables as ``jnp`` arrays in each leaf's dtype.

  >>> from experiments import models
  >>> model = models.MLP(num_classes=2, hidden=(4,))
  >>> v = models.random_variables(model, (3,))
  >>> v["params"]["Dense_0"]["kernel"].shape
  (3, 4)
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    keys = [getattr(p, "key", str(p)) for p in path]
    shape, last = leaf.shape, keys[-1]
    if last == "kernel":
      if binary_uniform and any(str(k).startswith("Binary") for k in keys):
        new = rng.uniform(-1.0, 1.0, shape)
      else:
        new = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    elif last == "var":
      new = rng.uniform(0.5, 2.0, shape)
    elif last == "scale":
      new = rng.uniform(*scale_range, shape)
    else:  # bias, mean, BatchNorm shift
      new = rng.normal(0.0, other_std, shape)
    return jnp.asarray(new, leaf.dtype)

  x = jax.ShapeDtypeStruct((1, *tuple(input_shape)), jnp.float32)
  abstract = jax.eval_shape(  # as models.abstract_variables
      lambda x: model.init(jax.random.key(0), x, train=False), x)
  return jax.tree_util.tree_map_with_path(draw, abstract)
