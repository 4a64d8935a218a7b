"""Flip ratio: how many binary weights changed sign between two steps.

For a latent kernel ``W`` with binary view ``b(W) = where(W == 0, 0,
sign(W))`` (``sign(0) = +1``, but an exact 0 is a pruned weight, whose view
is 0), the flip ratio of one layer between ``W`` (before) and ``W'``
(after) is

.. math::
   \\mathrm{flips} = \\frac{\\#\\{i : b(W_i) \\ne b(W'_i),\\ W_i \\ne 0
   \\lor W'_i \\ne 0\\}}{\\#\\{i : W_i \\ne 0 \\lor W'_i \\ne 0\\}}

so weights pruned in both (0 in both) are left out of numerator and
denominator; a weight pruned in between (``+-1 -> 0``) counts as changed.
A layer with no live weight has ratio 0.

A high flip ratio late in training signals that the latent weights hover
around 0 (Helwegen et al. argue the latent weights are inertia, and that
flips, not latent values, are what an optimizer for BNNs controls).

References:
  Courbariaux et al., "BinaryConnect", NeurIPS 2015.
  Helwegen et al., "Latent Weights Do Not Exist: Rethinking Binarized
  Neural Network Optimization", NeurIPS 2019 (flip ratio monitoring).
"""

from collections.abc import Callable, Collection
from typing import Any

import jax
import jax.numpy as jnp

import sparsity

Quantized = Collection[str] | Callable[[tuple[str, ...], Any], bool] | None


def _view(w: jax.Array) -> jax.Array:
  one = jnp.ones((), jnp.int8)
  return jnp.where(w == 0, jnp.zeros((), jnp.int8), jnp.where(w >= 0, one,
                                                              -one))


def layer_flip_ratio(prev: jax.Array, new: jax.Array) -> jax.Array:
  """The flip ratio of one kernel (see the module docstring), float32.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> r = binary.layer_flip_ratio(jnp.array([0.5, -0.1, 0.0, 0.2]),
    ...                             jnp.array([0.4, 0.3, 0.0, -0.1]))
    >>> round(float(r), 4)  # 2 flips among 3 live weights
    0.6667
  """
  alive = (prev != 0) | (new != 0)
  flipped = (_view(prev) != _view(new)) & alive
  n = jnp.sum(alive, dtype=jnp.int32)
  return jnp.where(n > 0, jnp.sum(flipped, dtype=jnp.int32) /
                   jnp.maximum(n, 1), 0.0).astype(jnp.float32)


def flip_ratio(prev_params: Any, params: Any,
               quantized: Quantized) -> dict[str, jax.Array]:
  """Per-layer fraction of binary weights whose sign changed.

  Pure; jit-able (``quantized`` is static: close over it, e.g.
  ``jax.jit(lambda a, b: binary.flip_ratio(a, b, names))``).

  Args:
    prev_params: the params before (a pytree of latent weights).
    params: the params after, same structure.
    quantized: which leaves are binary: a collection of leaf names as
      :func:`sparsity.leaf_name` writes them (``"Dense_0/kernel"``), or a
      predicate ``(path: tuple[str, ...], leaf) -> bool`` such as
      :func:`sparsity.default_prunable` (also the default, for ``None``).

  Returns:
    ``{leaf name: float32 scalar}`` in flattening order, one per selected
    leaf (see the module docstring for the formula).

  Raises:
    ValueError: ``quantized`` names a leaf that does not exist, or the two
      pytrees differ in structure or shapes.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> prev = {"Dense_0": {"kernel": jnp.array([[0.5, -0.5], [0.0, 0.1]]),
    ...                     "bias": jnp.zeros(2)}}
    >>> new = {"Dense_0": {"kernel": jnp.array([[0.4, 0.5], [0.0, -0.1]]),
    ...                    "bias": jnp.ones(2)}}
    >>> {k: round(float(v), 4) for k, v in
    ...  binary.flip_ratio(prev, new, ["Dense_0/kernel"]).items()}
    {'Dense_0/kernel': 0.6667}
  """
  flat_prev, tdef = jax.tree_util.tree_flatten_with_path(prev_params)
  flat_new, tdef_new = jax.tree_util.tree_flatten_with_path(params)
  if tdef != tdef_new:
    raise ValueError("prev_params and params differ in structure")
  if quantized is None:
    quantized = sparsity.default_prunable
  names = None if callable(quantized) else set(quantized)
  out, seen = {}, set()
  for (path, a), (_, b) in zip(flat_prev, flat_new):
    name = sparsity.leaf_name(path)
    keys = tuple(name.split("/"))
    if names is not None:
      chosen = name in names
    else:
      chosen = hasattr(a, "shape") and bool(quantized(keys, a))
    if not chosen:
      continue
    if jnp.shape(a) != jnp.shape(b):
      raise ValueError(f"{name}: shapes differ, {jnp.shape(a)} vs "
                       f"{jnp.shape(b)}")
    seen.add(name)
    out[name] = layer_flip_ratio(a, b)
  if names is not None and names - seen:
    raise ValueError(f"no such leaves: {sorted(names - seen)}")
  return out
