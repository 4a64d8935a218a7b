r"""Main/subsidiary filter pruning of binary networks: pure functions.

The subsidiary component of layer l is one real parameter per output
filter, :math:`M_l \in \mathbb{R}^{C_{out}}`; the filter is kept where

.. math:: \mathrm{keep}_l = \frac{\mathrm{sign}(M_l) + 1}{2} \in \{0, 1\},
   \qquad \frac{\partial\,\mathrm{keep}}{\partial M} = \tfrac12\,
   \mathbb{1}\{|M| \le 1\}

(the sign's straight-through estimator, with an inclusive window; the
released code's ``binactive`` CUDA kernel passes the gradient only for
``|M| < 1`` (``(inp > -1) * (inp < 1)``), so at ``M = +-1`` it gives 0 where
this gives ``g / 2``; and ``sign(0) = +1`` here, the kernel's ``sign(0) = 0``
gives 0.5; pinned by ``tests/reference/test_ref_mainsub.py``).  The keep
vector multiplies the layer's output channels (the binarized kernel's
filters), so a removed filter still receives a gradient
and can come back while its layer is being pruned.

Penalties, weighted by ``alpha``:

* ``"count"`` (ours, the default): :math:`\alpha\sum_l\sum_f
  \mathrm{keep}_{l,f}`, the number of kept filters, differentiable through
  the STE: every mask inside the window is pushed down by ``alpha / 2``.
* ``"l0"`` (the released code's ``torch.norm(M.abs(), 0)``): the count of
  non-zero M, whose gradient is identically 0; pruning pressure then comes
  from the task loss alone.  Kept for comparison.

Controls at equal kept count ``k`` per layer: :func:`greedy_filter_keep`
(keep the k filters of largest mean ``|w|``, i.e. remove the smallest; the
rule-based baseline) and :func:`random_filter_keep`.

A filter keep vector becomes an ordinary weight mask with
:func:`filter_mask` (bool, the kernel's shape) and is baked into a kernel
with :func:`bake_filter_keep`; with a scaled-sign kernel quantizer a zero
filter is exactly 0 in the binary view too.

References:
  Xu, Dong, Li & Su, "A Main/Subsidiary Network Framework for Simplifying
  Binary Neural Networks", CVPR 2019 (code ``justimyhxu/MainSubsidaryBNN``,
  ``model/mainsubsidary.py``, ``train.py``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from binary import _quantizers

# The name suffix of a layer's subsidiary (gate) parameter: "Conv_0" ->
# "Conv_0_subsidiary" (what `is_subsidiary` recognises).
SUBSIDIARY_SUFFIX = "_subsidiary"
PENALTIES = ("count", "l0")


def subsidiary_keep(m: jax.Array) -> jax.Array:
  """``(sign(M) + 1) / 2`` with the STE ``d keep / dM = 1{|M| <= 1} / 2``.

  The window is inclusive; the released CUDA ``binactive`` excludes
  ``|M| = 1`` (see the module docstring).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> subsidiary_keep(jnp.array([0.3, -0.2, 0.0])).tolist()
    [1.0, 0.0, 1.0]
    >>> jax.grad(lambda m: subsidiary_keep(m).sum())(
    ...     jnp.array([0.3, -2.0])).tolist()
    [0.5, 0.0]
  """
  return (_quantizers.ste_sign(m) + 1.0) / 2.0


def keep_count_penalty(masks) -> jax.Array:
  """Number of kept filters over a pytree of subsidiary parameters
  (STE-differentiable)."""
  return sum(jnp.sum(subsidiary_keep(m)) for m in jax.tree.leaves(masks))


def l0_penalty(masks) -> jax.Array:
  """``sum ||M||_0``, the released code's regulariser (zero gradient)."""
  return sum(jnp.sum(jax.lax.stop_gradient(m) != 0).astype(jnp.float32)
             for m in jax.tree.leaves(masks))


def penalty_fn(kind: str) -> Callable[[Any], jax.Array]:
  """``"count"`` -> :func:`keep_count_penalty`, ``"l0"`` ->
  :func:`l0_penalty`."""
  if kind not in PENALTIES:
    raise ValueError(f"unknown penalty {kind!r}; choose one of: "
                     f"{', '.join(PENALTIES)}")
  return keep_count_penalty if kind == "count" else l0_penalty


def is_subsidiary(path, leaf=None) -> bool:
  """Whether a params leaf is a subsidiary mask (name ends in
  ``_subsidiary``)."""
  del leaf  # unused
  path = tuple(str(getattr(p, "key", p)) for p in path)
  return bool(path) and path[-1].endswith(SUBSIDIARY_SUFFIX)


class AddMaskPenaltyState(NamedTuple):
  """No state."""


def add_mask_penalty(alpha: float, kind: str = "count"
                     ) -> optax.GradientTransformation:
  """Adds ``alpha * d penalty / dM`` to the gradients of subsidiary masks.

  The penalty term of the subsidiary loss as a per-step transform (as
  ``optax.add_decayed_weights`` is weight decay's), so any trainer step
  with a task loss trains ``CE + alpha * penalty``. Leaves that are not
  subsidiary masks (:func:`is_subsidiary`) are left as they are.

  Args:
    alpha: the penalty weight.
    kind: ``"count"`` or ``"l0"`` (adds exactly 0).

  Example:
    >>> import jax.numpy as jnp
    >>> tx = add_mask_penalty(0.1)
    >>> p = {"L_subsidiary": jnp.array([0.5, 3.0]), "w": jnp.ones(2)}
    >>> u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
    >>> u["L_subsidiary"].tolist(), u["w"].tolist()
    ([0.05000000074505806, 0.0], [0.0, 0.0])
  """
  fn = penalty_fn(kind)

  def init_fn(params):
    del params  # unused
    return AddMaskPenaltyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("add_mask_penalty needs params")
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    sub = {i for i, (path, _) in enumerate(flat) if is_subsidiary(path)}
    if not sub:
      return updates, state
    leaves = [leaf for _, leaf in flat]
    grads = jax.grad(lambda ms: alpha * fn(ms))([leaves[i] for i in
                                                 sorted(sub)])
    grad_of = dict(zip(sorted(sub), grads))
    u_leaves, treedef = jax.tree.flatten(updates)
    u_leaves = [u + grad_of[i] if i in grad_of else u
                for i, u in enumerate(u_leaves)]
    return jax.tree.unflatten(treedef, u_leaves), state

  return optax.GradientTransformation(init_fn, update_fn)


def budget_removed(num_filters: int, fraction: float, step, anneal_steps: int):
  """Filters a layer's budget removes after ``step`` updates: ``round(
  fraction * num_filters * min(1, step / anneal_steps))``, at most
  ``num_filters - 1`` (a layer keeps at least one filter).

  The budget recipe's schedule: the removed count grows linearly from 0 to
  its target over the first ``anneal_steps`` updates, then holds.  Works on
  Python ints and traced JAX scalars alike (round half to even).

  Example:
    >>> [int(budget_removed(8, 0.25, t, 4)) for t in range(6)]
    [0, 0, 1, 2, 2, 2]
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"fraction={fraction} is not in [0, 1)")
  if anneal_steps < 1:
    raise ValueError(f"anneal_steps={anneal_steps} must be >= 1")
  frac = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / anneal_steps)
  r = jnp.round(fraction * num_filters * frac).astype(jnp.int32)
  return jnp.minimum(r, num_filters - 1)


def project_to_budget(m: jax.Array, removed) -> jax.Array:
  """Shifts the gates ``m`` (shape ``(C,)``) by one scalar so that exactly
  the ``C - removed`` largest are kept (``>= 0``) and the rest removed.

  The shift puts zero halfway between the k-th and (k+1)-th largest gate
  (k = C - removed); with ``removed = 0`` it is ``min(0, min m)`` (every
  gate kept, none moved unless one is negative).  The ranking, i.e. the
  learned order of the filters, is unchanged; ties at the boundary keep
  both tied gates.

  Example:
    >>> import jax.numpy as jnp
    >>> project_to_budget(jnp.array([0.5, -0.25, 0.25, 1.0]), 2).tolist()
    [0.125, -0.625, -0.125, 0.625]
    >>> project_to_budget(jnp.array([0.5, -0.25]), 0).tolist()
    [0.75, 0.0]
  """
  c = m.shape[0]
  v = jnp.sort(m)[::-1]                       # descending
  k = c - jnp.asarray(removed, jnp.int32)     # kept, >= 1
  mid = (v[jnp.clip(k - 1, 0, c - 1)] + v[jnp.clip(k, 0, c - 1)]) / 2
  tau = jnp.where(k >= c, jnp.minimum(0.0, v[c - 1]), mid)
  return m - tau


class MaskBudgetState(NamedTuple):
  """The number of updates so far."""
  count: jax.Array


def mask_budget(fraction: float, anneal_steps: int
                ) -> optax.GradientTransformation:
  """Projects every subsidiary gate vector onto its layer's annealed
  budget after each update (the last transform of the gates' chain).

  After update t (counted from 1) a gate vector ``M`` of C filters keeps
  exactly ``C - budget_removed(C, fraction, t, anneal_steps)`` filters: the
  outgoing update is replaced by ``project_to_budget(M + u, r_t) - M``.
  The gates then rank the filters (under plain SGD, by the summed STE
  gradient of the task loss) and the budget, not a penalty weight, sets
  how many go.  Leaves that are not subsidiary gates pass unchanged.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = mask_budget(0.5, 1)
    >>> p = {"L_subsidiary": jnp.array([0.5, 0.1, 0.3, 0.2])}
    >>> u, _ = tx.update({"L_subsidiary": jnp.zeros(4)}, tx.init(p), p)
    >>> (p["L_subsidiary"] + u["L_subsidiary"] >= 0).tolist()
    [True, False, True, False]
  """
  budget_removed(1, fraction, 0, anneal_steps)  # validates the arguments

  def init_fn(params):
    del params  # unused
    return MaskBudgetState(count=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("mask_budget needs params")
    count = state.count + 1

    def project(path, u, p):
      if u is None or not is_subsidiary(path):
        return u
      r = budget_removed(p.shape[0], fraction, count, anneal_steps)
      return project_to_budget(p + u, r) - p

    updates = jax.tree_util.tree_map_with_path(
        project, updates, params, is_leaf=lambda x: x is None)
    return updates, MaskBudgetState(count=count)

  return optax.GradientTransformation(init_fn, update_fn)


def filter_mean_abs(kernel) -> np.ndarray:
  """Mean ``|w|`` of each output filter (all axes but the last)."""
  k = np.asarray(kernel)
  return np.abs(k).reshape(-1, k.shape[-1]).mean(axis=0)


def greedy_filter_keep(kernel, k: int) -> np.ndarray:
  """Keeps the ``k`` filters of largest mean ``|w|`` (ties: lower index
  first), the rule-based control.

  Example:
    >>> import numpy as np
    >>> w = np.array([[1.0, -0.1, 0.5, 0.5]])
    >>> greedy_filter_keep(w, 2).tolist()
    [True, False, True, False]
  """
  score = filter_mean_abs(kernel)
  c = score.shape[0]
  if not 0 <= k <= c:
    raise ValueError(f"k={k} is not in [0, {c}]")
  order = np.argsort(-score, kind="stable")
  keep = np.zeros(c, bool)
  keep[order[:k]] = True
  return keep


def random_filter_keep(seed: int, num_filters: int, k: int) -> np.ndarray:
  """``k`` of ``num_filters`` filters kept at random (seeded), the random
  control."""
  if not 0 <= k <= num_filters:
    raise ValueError(f"k={k} is not in [0, {num_filters}]")
  keep = np.zeros(num_filters, bool)
  keep[np.random.default_rng(seed).permutation(num_filters)[:k]] = True
  return keep


def filter_mask(kernel, keep) -> np.ndarray:
  """A bool weight mask of ``kernel``'s shape from a filter keep vector."""
  shape = np.shape(kernel)
  return np.broadcast_to(np.asarray(keep, bool), shape).copy()


def bake_filter_keep(kernel, keep):
  """``kernel`` with the removed filters (``keep == 0``) set to 0."""
  return kernel * jnp.asarray(keep, kernel.dtype)
