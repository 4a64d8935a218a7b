"""The masked optimizer: any optax optimizer that keeps pruned weights at 0."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsity import _masks


class MaskedState(NamedTuple):
  """State of :func:`masked`: the inner optimizer's state, masked."""
  inner_state: optax.OptState


def _is_state_leaf(x: Any) -> bool:
  """Holes in a parameter-shaped state tree (optax.masked, partition)."""
  return x is None or isinstance(x, optax.MaskedNode)


def _zero_pruned(leaf: Any, mask_leaf: Any) -> Any:
  """``leaf`` with pruned positions set to 0 (if it has the mask's shape)."""
  if mask_leaf is None or leaf is None or not hasattr(leaf, "shape"):
    return leaf
  if tuple(leaf.shape) != tuple(mask_leaf.shape):
    return leaf  # e.g. Adafactor's factored row/column statistics
  return jnp.where(mask_leaf, leaf, jnp.zeros((), dtype=jnp.result_type(leaf)))


def _init_runs_on_placeholder(inner: optax.GradientTransformation) -> bool:
  """Whether ``inner.init`` runs on optax's params placeholder.

  ``optax.tree_utils.tree_map_params`` finds the parameter-shaped parts of a
  state by calling ``inner.init`` on a placeholder with no leaves. An init
  that reads a leaf (``optax.lbfgs`` indexes the first leaf) cannot run on
  it; that is the one case probed here, once, when :func:`masked` is built,
  and only the errors of reading a missing leaf count. Every other error,
  and every error of the masking itself, propagates.
  """
  # pylint: disable-next=protected-access
  placeholder = optax.tree_utils._state_utils._ParamsPlaceholder()
  try:
    jax.eval_shape(inner.init, placeholder)
  except (IndexError, AttributeError, TypeError, KeyError):
    return False
  return True


def _zero_pruned_state(state, mask, inner=None):
  """Zeroes pruned positions in every parameter-shaped tree of ``state``:
  located through ``inner``'s init when given, else by structure."""
  if inner is None:
    return mask_opt_state(state, mask)
  return optax.tree_utils.tree_map_params(
      inner, _zero_pruned, state, mask, is_leaf=_is_state_leaf)


def mask_opt_state(opt_state: Any, mask: Any) -> Any:
  """Zeroes pruned positions in every parameter-shaped part of a state.

  Every subtree of ``opt_state`` with the structure of the params (the
  mask's structure, ``None`` leaves included: momentum traces, Adam's
  ``mu`` and ``nu``, ...) is multiplied by the mask; everything else (step
  counts, scalars) is kept:

  .. math:: s' = s \\odot m

  Args:
    opt_state: an optax state (any nesting of NamedTuples and tuples).
    mask: the mask.

  Returns:
    The masked state, same structure and dtypes.

  Example:
    >>> import jax.numpy as jnp, optax, sparsity
    >>> state = (optax.TraceState(trace={"k": jnp.array([3., 4.])}),
    ...          optax.EmptyState())
    >>> masked = sparsity.mask_opt_state(state, {"k": jnp.array([True, False])})
    >>> masked[0].trace["k"].tolist()
    [3.0, 0.0]
  """
  params_def = jax.tree.structure(mask, is_leaf=lambda x: x is None)
  mask_leaves = jax.tree.leaves(mask, is_leaf=lambda x: x is None)
  nnx_names = _masks.nnx_leaf_names(mask)

  def is_params_tree(x):
    if x is None:
      return False
    if jax.tree.structure(x) == params_def:
      return True
    # NNX: the same leaf names without Variable wrappers or State/dict
    # containers (nnx.Optimizer keeps moments in OptVariable wrappers).
    return nnx_names is not None and _masks.nnx_leaf_names(x) == nnx_names

  def one(x):
    if is_params_tree(x):
      leaves, treedef = jax.tree.flatten(x)
      return treedef.unflatten([_zero_pruned(leaf, m)
                                for leaf, m in zip(leaves, mask_leaves)])
    return x

  return jax.tree.map(one, opt_state, is_leaf=is_params_tree)


MASK_MOMENTS = ("per_step", "on_entry")
"""The values of :func:`masked`'s ``mask_moments``."""


def masked(inner: optax.GradientTransformation, *,
           mask_moments: str = "per_step"
           ) -> optax.GradientTransformationExtraArgs:
  """Wraps an optimizer so that pruned weights and their moments stay 0.

  With mask ``m`` (passed to every update as the keyword ``mask``):

  .. math::
     g' = g \\odot m, \\quad (u, s') = \\mathrm{inner}(g', s, \\theta),
     \\quad u' = u \\odot m, \\quad s'' = s' \\odot m

  where ``s' \\odot m`` zeroes every leaf of the inner state that
  corresponds to a parameter (momentum, Adam's ``mu`` and ``nu``, ...; found
  with ``optax.tree_utils.tree_map_params``, so any inner optimizer works,
  including ``optax.masked``/``optax.partition`` inners; for the rare inner
  whose ``init`` cannot run on optax's placeholder, e.g. ``optax.lbfgs``,
  the subtrees of the state shaped like the params are used) at pruned
  positions. Hence, if the params are 0 at pruned positions before
  a step, they are exactly 0 after it, and so are all their moments: under
  SGD, momentum, Nesterov, Adam and AdamW (whose decay term ``wd * w`` is 0
  for a pruned weight). When the mask changes, the stale moments of newly
  pruned weights are cleared at the next update, and a weight that is
  unpruned later starts from zero moments. State leaves whose shape differs
  from the parameter's (e.g. Adafactor's factored statistics) are left as
  they are.

  ``mask_moments="on_entry"`` is the fast form for *zero-preserving* inner
  optimizers: the state is masked on its way into the update instead of on
  its way out (gradient and update are masked as above):

  .. math::
     g' = g \\odot m, \\quad (u, s') = \\mathrm{inner}(g', s \\odot m,
     \\theta), \\quad u' = u \\odot m

  An inner optimizer is zero-preserving when, elementwise, a zero gradient
  on a zero state entry and a zero param gives a zero state entry and a
  zero update: SGD (stateless), momentum and Nesterov (``t = g + beta t =
  0``), Adam (``mu = b1 mu + (1 - b1) g = 0``, ``nu = 0``, update
  ``mu_hat / (sqrt(nu_hat) + eps) = 0 / eps = 0``), AdamW (its decay
  ``wd * w`` is 0 on a pruned, hence zero, weight), and chains of these
  with coupled weight decay, clipping by global norm, learning-rate
  schedules and BinaryConnect's ``binary.scale_by_glorot`` and
  ``binary.clip_params``. For such an inner, ``s \\odot m`` changes the
  state only at the first update after a mask change (it clears the stale
  moments of newly pruned weights: no event function is needed), pruned
  moments are exactly 0 after every update, and params, updates and
  state have ``"per_step"``'s values (bit for bit op by op; two jitted
  programs may differ by an ulp where XLA contracts ``a * b + c`` into an
  FMA in one of them only). Masking the incoming state
  fuses into the loops that read it anyway; masking the outgoing state
  makes XLA compute every moment twice (once for the update, once for the
  masked state) and copy the old moments: on CPU that is most of the
  masked step's overhead over the dense one (``python -m
  bench.masked_step``). For an inner that is not zero-preserving (one that
  adds a term to a zero gradient, or LAMB, whose trust ratio is a norm over
  the whole update) ``"on_entry"`` may leave pruned moments non-zero or
  change kept updates after a mask change: keep the default, which is
  exact for any inner.

  The mask is an argument, not state: changing its values never retraces a
  jitted step (same shapes and dtypes), and the trainer keeps one mask.

  Flax NNX: build the mask on ``nnx.state(model, nnx.Param)`` (or its
  ``nnx.to_pure_dict``; it is matched to the updates by leaf name, see
  :func:`sparsity.align_mask`) and pass it through ``nnx.Optimizer``:
  ``opt = nnx.Optimizer(model, sparsity.masked(optax.adam(lr)),
  wrt=nnx.Param)`` then ``opt.update(model, grads, mask=mask)`` inside an
  ``nnx.jit`` step that takes ``mask`` as an argument. A functional loop
  over ``graphdef, params, rest = nnx.split(model, nnx.Param, ...)`` with
  ``tx.init(params)`` and ``tx.update(grads, state, params, mask=mask)``
  works the same way (README, "Flax NNX").
  Other extra keyword arguments are forwarded to ``inner`` (ignored if it
  does not take any).

  Args:
    inner: any optax gradient transformation (e.g. ``optax.adamw(...)``).
    mask_moments: ``"per_step"`` (default: the inner state is masked after
      every update, exact for any inner) or ``"on_entry"`` (masked before
      every update: exact, and faster, for zero-preserving inners only;
      see above).

  Returns:
    A ``GradientTransformationExtraArgs`` with ``init(params) ->
    MaskedState`` and ``update(updates, state, params=None, *, mask,
    **extra_args) -> (updates, state)``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, sparsity
    >>> params = {"Dense_0": {"kernel": jnp.array([[1., 0.], [0., 2.]]),
    ...                       "bias": jnp.zeros(2)}}
    >>> mask = sparsity.create_mask(params)
    >>> mask["Dense_0"]["kernel"] = jnp.array([[True, False], [False, True]])
    >>> tx = sparsity.masked(optax.sgd(0.5, momentum=0.9))
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params, mask=mask)
    >>> optax.apply_updates(params, updates)["Dense_0"]["kernel"].tolist()
    [[0.5, 0.0], [0.0, 1.5]]
    >>> state.inner_state[0].trace["Dense_0"]["kernel"].tolist()
    [[1.0, 0.0], [0.0, 1.0]]

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (masked
    training); open_lth ``pruning/pruned_model.py`` (mask re-applied around
    every step).
  """
  if mask_moments not in MASK_MOMENTS:
    raise ValueError(f"mask_moments must be one of {MASK_MOMENTS}, got "
                     f"{mask_moments!r}")
  on_entry = mask_moments == "on_entry"
  inner = optax.with_extra_args_support(inner)
  locate = inner if _init_runs_on_placeholder(inner) else None

  def init_fn(params):
    return MaskedState(inner_state=inner.init(params))

  def update_fn(updates, state, params=None, *, mask, **extra_args):
    mask = _masks.align_mask(mask, updates)  # e.g. an NNX pure-dict mask
    inner_state = state.inner_state
    if on_entry:  # zero-preserving inner: clears stale moments, fuses
      inner_state = _zero_pruned_state(inner_state, mask, locate)
    updates = _masks.apply_mask(updates, mask)
    updates, inner_state = inner.update(updates, inner_state, params,
                                        **extra_args)
    updates = _masks.apply_mask(updates, mask)
    if not on_entry:
      inner_state = _zero_pruned_state(inner_state, mask, locate)
    return updates, MaskedState(inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

