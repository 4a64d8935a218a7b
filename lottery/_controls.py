"""The lottery-ticket controls: random reinitialization and random pruning.

A winning ticket is the pair (mask, initialization). The controls break one
half of the pair: random reinitialization keeps the mask and draws new
weights from the same initializer; random pruning keeps the per-layer
sparsity and draws new positions.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import sparsity

PyTree = Any
Mask = Any


def random_reinit(key: jax.Array, init_fn: Callable[[jax.Array], PyTree],
                  params: PyTree, mask: Mask) -> PyTree:
  """The ticket's mask on a fresh draw of the initialization.

  .. math:: \\theta'_0 \\sim \\mathcal{D}_\\theta, \\qquad
            \\theta_{\\text{start}} = m \\odot \\theta'_0

  ``init_fn`` is the model's own initializer (e.g. ``lambda k:
  model.init(k, x)["params"]``), so the new weights come from the same
  distribution family; only the random draw changes.

  Args:
    key: a PRNG key, different from the one that drew ``theta_0``.
    init_fn: ``init_fn(key) -> params``.
    params: the ticket's params (only their structure and shapes are used).
    mask: the ticket's mask.

  Returns:
    ``apply_mask(init_fn(key), mask)``.

  Raises:
    ValueError: if ``init_fn`` returns a tree with another structure or
      other leaf shapes than ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, lottery
    >>> init = lambda k: {"kernel": jax.random.normal(k, (2, 2))}
    >>> m = {"kernel": jnp.array([[True, False], [False, True]])}
    >>> p = lottery.random_reinit(jax.random.key(1), init, init(
    ...     jax.random.key(0)), m)
    >>> (p["kernel"] == 0).tolist()
    [[False, True], [True, False]]

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (random
    reinitialization control); open_lth
    ``lottery/branch/randomly_reinitialize.py``.
  """
  fresh = init_fn(key)
  want = jax.tree.structure(params)
  got = jax.tree.structure(fresh)
  if got != want:
    raise ValueError(f"init_fn returned a tree of structure {got}, "
                     f"expected {want}")
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(fresh)):
    if np.shape(a) != np.shape(b):
      raise ValueError(f"init_fn returned a leaf of shape {np.shape(b)}, "
                       f"expected {np.shape(a)}")
  return sparsity.apply_mask(fresh, mask)


def random_prune(key: jax.Array, mask: Mask) -> Mask:
  """A random mask with the same number of survivors in every layer.

  Each masked leaf keeps exactly as many weights as in ``mask``, at
  uniformly random positions (pruned or not in ``mask``); ``None`` leaves
  stay ``None``. A thin name for :func:`sparsity.random_mask_like`.

  Args:
    key: a PRNG key.
    mask: the ticket's mask, whose per-layer counts are copied.

  Returns:
    The random mask.

  Example:
    >>> import jax, jax.numpy as jnp, sparsity, lottery
    >>> m = {"k": jnp.array([True, False, False, True]), "b": None}
    >>> sparsity.count(lottery.random_prune(jax.random.key(0), m))
    (2, 4)

  References:
    Frankle & Carbin, ICLR 2019 (random pruning control); open_lth
    ``lottery/branch/randomly_prune.py``.
  """
  return sparsity.random_mask_like(key, mask)
