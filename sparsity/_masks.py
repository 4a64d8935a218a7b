"""Mask algebra: create, apply, combine, count and summarize masks.

A *mask* is a pytree with the structure of the params. Each prunable leaf
holds a ``bool`` array of the leaf's shape (``True`` = the weight is kept,
``False`` = it is pruned); every other leaf holds ``None``. ``None`` is an
empty subtree for JAX, so every function here maps over the mask with
``is_leaf=lambda x: x is None`` and treats ``None`` as "not masked". A mask
never changes shape, so a jitted step that takes it as an argument never
retraces when its values change.

Leaves are named by their path joined with ``/``, e.g. ``"Dense_0/kernel"``
(see :func:`leaf_name`); these names are what :func:`summarize` reports and
what per-layer rate dictionaries in :mod:`sparsity` are keyed by.

Flax NNX: every function here also takes an ``nnx.State`` (e.g.
``nnx.state(model, nnx.Param)``, whose leaves sit under each
``nnx.Variable``'s ``value``) or its pure form ``nnx.to_pure_dict(state)``.
The Variable's ``value`` key is not part of a leaf's name or path
(``"linear1/kernel"``, as in Linen), and a mask built on either form can be
applied to the other (see :func:`align_mask`).
"""

from collections.abc import Callable, Iterable, Sequence
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsity import _nm_patterns

PyTree = Any
Mask = Any  # A pytree of bool arrays and None, shaped like the params.
Prunable = Callable[[tuple[str, ...], Any], bool]


def is_none(x: Any) -> bool:
  """``is_leaf`` predicate that keeps ``None`` mask leaves visible to maps."""
  return x is None


def _key_str(key: Any) -> str:
  """One entry of a JAX key path as a plain string."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _is_variable_key(key: Any) -> bool:
  """Whether a JAX key path entry is an ``nnx.Variable``'s own child.

  A Flax NNX ``Variable`` (``nnx.Param``, ...) is a pytree node whose one
  child is its array, under ``GetAttrKey("value")``; that key names the
  wrapper, not the parameter, so paths and names skip it.
  """
  return (isinstance(key, jax.tree_util.GetAttrKey)
          and key.name in ("value", "raw_value"))


def path_tuple(key_path: Sequence[Any]) -> tuple[str, ...]:
  """A JAX key path (``DictKey``, ``GetAttrKey``, ...) as a tuple of str.

  The key of an ``nnx.Variable``'s value is dropped, so a kernel of an NNX
  state has the path ``("linear1", "kernel")``, as in Linen.
  """
  return tuple(_key_str(k) for k in key_path if not _is_variable_key(k))


def leaf_name(path: Iterable[Any]) -> str:
  """The ``/``-joined name of a leaf, e.g. ``"Dense_0/kernel"``.

  Args:
    path: a tuple of str keys, or a JAX key path (as given by
      ``jax.tree_util.tree_flatten_with_path``). The key of an NNX
      ``Variable``'s value (``GetAttrKey("value")``) is skipped.

  Returns:
    The keys joined by ``/``.

  Example:
    >>> import sparsity
    >>> sparsity.leaf_name(("Conv_0", "kernel"))
    'Conv_0/kernel'
  """
  return "/".join(_key_str(k) for k in path if not _is_variable_key(k))


def _nnx_module_type() -> Any:
  """``flax.nnx.Module`` if flax's NNX is loaded (nothing is imported)."""
  nnx = sys.modules.get("flax.nnx")
  return getattr(nnx, "Module", None) if nnx is not None else None


def nnx_leaf_names(tree: PyTree) -> list[str] | None:
  """Names of every leaf of ``tree`` (``None`` leaves included), or None.

  Two NNX forms of one set of params (``nnx.State`` or dict, with or
  without ``nnx.Variable`` wrappers) have the same list. None when Flax NNX
  is not loaded (no tree can hold a Variable then) or ``tree`` is not a
  container.
  """
  if "flax.nnx" not in sys.modules or not hasattr(tree, "keys"):
    return None
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)[0]
  return [leaf_name(p) for p, _ in flat]


def _check_not_module(tree: Any, where: str) -> None:
  module = _nnx_module_type()
  if module is not None and isinstance(tree, module):
    raise TypeError(f"{where}: got an nnx.Module; pass its parameters, "
                    "nnx.state(model, nnx.Param)")


def align_mask(mask: Mask, tree: PyTree) -> Mask:
  """``mask`` rebuilt on the structure of ``tree``, matching leaves by name.

  A mask has the structure of the tree it was created on. Flax NNX holds the
  same parameters in several structures: an ``nnx.State`` of
  ``nnx.Variable`` wrappers (``nnx.state(model, nnx.Param)``), the same
  State without wrappers (what ``nnx.Optimizer`` hands to optax) and a
  plain dict (``nnx.to_pure_dict(state)``). All give the same leaf names
  (:func:`leaf_name`), so a mask of one can be moved onto another. When the
  structures already agree, ``mask`` is returned as it is (the common case;
  under ``jit`` the check runs at trace time only).

  Args:
    mask: a mask.
    tree: a pytree holding (at least) every masked leaf of ``mask``, by
      name and shape.

  Returns:
    A mask with the structure of ``tree`` (``None`` where ``mask`` has no
    leaf of that name).

  Raises:
    ValueError: a masked leaf of ``mask`` has no leaf of the same name in
      ``tree``, or one of another shape.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> mask = {"d": {"kernel": jnp.array([True, False])}}
    >>> tree = {"d": {"kernel": jnp.ones(2), "bias": jnp.ones(1)}}
    >>> sparsity.align_mask(mask, tree)["d"]["bias"] is None
    True
  """
  if (jax.tree.structure(mask, is_leaf=is_none)
      == jax.tree.structure(tree, is_leaf=is_none)):
    return mask
  wanted = dict(masked_leaves(mask))
  flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
  out = []
  for key_path, leaf in flat:
    m = wanted.pop(leaf_name(key_path), None)
    if m is not None and np.shape(m) != np.shape(leaf):
      raise ValueError(f"mask leaf {leaf_name(key_path)!r} has shape "
                       f"{np.shape(m)}, the tree's {np.shape(leaf)}")
    out.append(m)
  if wanted:
    raise ValueError("the mask does not fit the tree: masked leaves "
                     f"{sorted(wanted)} are not in it")
  return jax.tree_util.tree_unflatten(treedef, out)


def masked_leaves(mask: Mask, tree: PyTree | None = None) -> list[tuple]:
  """``(name, mask_leaf[, tree_leaf])`` for every non-``None`` mask leaf.

  The order is JAX's flattening order (sorted dict keys), which is the order
  used everywhere in :mod:`sparsity` (summaries, global tie-breaking).

  Args:
    mask: a mask.
    tree: optionally a pytree with the structure of the params (e.g. the
      params themselves, or another NNX form of them, see
      :func:`align_mask`); its leaf at each masked position is returned too.

  Returns:
    A list of ``(name, mask_leaf)`` or ``(name, mask_leaf, tree_leaf)``.
  """
  if tree is not None:
    mask = align_mask(mask, tree)
  flat, treedef = jax.tree_util.tree_flatten_with_path(mask, is_leaf=is_none)
  if tree is None:
    return [(leaf_name(p), m) for p, m in flat if m is not None]
  others = treedef.flatten_up_to(tree)
  return [(leaf_name(p), m, x) for (p, m), x in zip(flat, others)
          if m is not None]


def default_prunable(path: tuple[str, ...], leaf: Any) -> bool:
  """Whether a parameter is pruned by default: Dense and Conv kernels.

  A leaf is prunable when its name (the last key of ``path``) is ``kernel``
  and it has at least 2 dimensions: Flax ``Dense`` kernels ``(in, out)`` and
  ``Conv`` kernels ``(kh, kw, in, out)``, Linen or NNX (``nnx.Linear``,
  ``nnx.Conv``; a trailing ``"value"``, the key of an ``nnx.Variable``'s
  array, is skipped). Biases and BatchNorm scales are not pruned, as in the
  lottery-ticket literature (LeNet-300-100 has 784*300 + 300*100 + 100*10 =
  266,200 prunable weights).

  Args:
    path: the leaf's path, a tuple of str keys, e.g. ``("Dense_0",
      "kernel")`` or ``("linear1", "kernel", "value")``.
    leaf: the parameter (an array or anything with a ``shape``).

  Returns:
    True if the leaf should get a mask.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> sparsity.default_prunable(("Dense_0", "kernel"), jnp.zeros((3, 4)))
    True
    >>> sparsity.default_prunable(("Dense_0", "bias"), jnp.zeros((4,)))
    False
    >>> sparsity.default_prunable(("lin", "kernel", "value"), jnp.zeros((3, 4)))
    True

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019.
  """
  names = tuple(str(k) for k in path)
  if len(names) > 1 and names[-1] in ("value", "raw_value"):
    names = names[:-1]  # the nnx.Variable wrapper, not the parameter
  return bool(names) and names[-1] == "kernel" and len(np.shape(leaf)) >= 2


def _leaf_list(params: PyTree, limit: int = 8) -> str:
  """The first ``limit`` leaf names of ``params``, for error messages."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  names = [leaf_name(p) or "<root>" for p, _ in flat]
  more = f", ... ({len(names)} in all)" if len(names) > limit else ""
  return (", ".join(names[:limit]) or "none") + more


def create_mask(params: PyTree,
                prunable: Prunable = default_prunable, *,
                allow_empty: bool = False) -> Mask:
  """A mask that keeps every weight: all ``True`` on prunable leaves.

  A tree with no prunable leaf is an error: pruning it would silently train
  a dense network (e.g. a tree whose kernels are named otherwise, or a
  prunable test that never matches).

  Flax NNX: pass ``nnx.state(model, nnx.Param)`` (the mask is then an
  ``nnx.State`` of ``Param`` wrappers holding the bool arrays and ``None``)
  or ``nnx.to_pure_dict(nnx.state(model, nnx.Param))`` (a plain dict, as
  for Linen). Either one works with every function of :mod:`sparsity` on
  either form of the params (:func:`align_mask`), and as the ``mask`` of
  :func:`masked` under ``nnx.Optimizer``. Paths skip the Variable's
  ``value`` key, so ``prunable`` sees ``("linear1", "kernel")`` as for
  Linen.

  Args:
    params: the parameter pytree (a nested dict for Flax Linen, an
      ``nnx.State`` or its pure dict for Flax NNX).
    prunable: ``prunable(path, leaf) -> bool`` with ``path`` a tuple of str
      keys; defaults to :func:`default_prunable`.
    allow_empty: return an all-``None`` mask instead of raising when no
      leaf is prunable.

  Returns:
    A mask: ``jnp.ones(leaf.shape, bool)`` on prunable leaves, ``None``
    elsewhere.

  Raises:
    ValueError: no leaf is prunable (and ``allow_empty`` is False).
    TypeError: ``params`` is an ``nnx.Module`` (pass its state).

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> params = {"Dense_0": {"kernel": jnp.ones((2, 3)),
    ...                       "bias": jnp.ones((3,))}}
    >>> mask = sparsity.create_mask(params)
    >>> mask["Dense_0"]["kernel"].dtype, mask["Dense_0"]["bias"]
    (dtype('bool'), None)
  """
  _check_not_module(params, "create_mask")
  found = []

  def make(key_path, leaf):
    if prunable(path_tuple(key_path), leaf):
      found.append(key_path)
      return jnp.ones(np.shape(leaf), dtype=jnp.bool_)
    return None
  mask = jax.tree_util.tree_map_with_path(make, params)
  if not found and not allow_empty:
    what = ("Dense/Conv 'kernel' with >= 2 dims"
            if prunable is default_prunable else "accepted by `prunable`")
    raise ValueError(f"create_mask: no prunable leaf ({what}) in the tree; "
                     f"got leaves: {_leaf_list(params)} (pass "
                     "allow_empty=True for an all-None mask)")
  return mask


def apply_mask(params: PyTree, mask: Mask) -> PyTree:
  """Zeroes pruned entries: ``w * m`` on masked leaves.

  .. math:: \\theta' = \\theta \\odot m

  Implemented with ``jnp.where`` so the dtype of every leaf is preserved
  (and a non-finite pruned value still becomes 0). Leaves whose mask is
  ``None`` are returned untouched. Works under ``jit`` and on any tree with
  the params' structure (gradients, updates), or another NNX form of them
  (:func:`align_mask`).

  Args:
    params: a pytree with the structure of the params.
    mask: a mask for it.

  Returns:
    The masked pytree.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> p = {"d": {"kernel": jnp.array([[1., -2.], [3., 4.]])}}
    >>> m = {"d": {"kernel": jnp.array([[True, False], [True, True]])}}
    >>> sparsity.apply_mask(p, m)["d"]["kernel"].tolist()
    [[1.0, 0.0], [3.0, 4.0]]
  """
  def one(m, p):
    if m is None:
      return p
    return jnp.where(m, p, jnp.zeros((), dtype=jnp.result_type(p)))
  return jax.tree.map(one, align_mask(mask, params), params, is_leaf=is_none)


def combine_masks(a: Mask, b: Mask) -> Mask:
  """Logical AND of two masks (a weight survives if both keep it).

  ``None`` means "not masked", i.e. keep everything: ``None AND None`` is
  ``None`` and ``None AND m`` is ``m``.

  Args:
    a: a mask.
    b: a mask of the same params.

  Returns:
    The combined mask.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> a = {"k": jnp.array([True, True, False]), "b": None}
    >>> b = {"k": jnp.array([True, False, True]), "b": None}
    >>> c = sparsity.combine_masks(a, b)
    >>> c["k"].tolist(), c["b"]
    ([True, False, False], None)
  """
  def one(x, y):
    if x is None:
      return y
    if y is None:
      return x
    return jnp.logical_and(x, y)
  return jax.tree.map(one, a, b, is_leaf=is_none)


def count(mask: Mask) -> tuple[int, int]:
  """Numbers of remaining and total weights over the masked leaves.

  Args:
    mask: a mask.

  Returns:
    ``(remaining, total)`` as Python ints (this synchronises with the
    device), summed over the non-``None`` leaves.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> sparsity.count({"k": jnp.array([True, False, True]), "b": None})
    (2, 3)
  """
  leaves = [m for _, m in masked_leaves(mask)]
  sums = jax.device_get([jnp.sum(m, dtype=jnp.int32) for m in leaves])
  return int(sum(int(s) for s in sums)), int(sum(int(np.size(m))
                                                 for m in leaves))


def remaining_fraction(mask: Mask) -> float:
  """Fraction of masked weights that remain, ``||m||_0 / |m|``.

  After ``n`` rounds of pruning a fraction ``p`` of the survivors this is
  ``(1 - p) ** n``. A mask with no masked leaves gives 1.0.

  Args:
    mask: a mask.

  Returns:
    remaining / total over the masked leaves, as a Python float.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> mask = {"k": jnp.array([True, False, True, False]), "b": None}
    >>> sparsity.remaining_fraction(mask)
    0.5
  """
  remaining, total = count(mask)
  return remaining / total if total else 1.0


def summarize(mask: Mask) -> list[dict[str, Any]]:
  """Per-leaf sizes and remaining counts, one row per masked leaf.

  Args:
    mask: a mask.

  Returns:
    A list, in flattening order, of dicts ``{"name": "Dense_0/kernel",
    "size": int, "remaining": int}``; format it with
    :func:`format_summary_table`. A leaf whose mask keeps exactly N of
    every M consecutive weights along its input axis (axis -2), for M in
    (4, 8), also has ``"n_m": "N:M"`` (e.g. ``"2:4"``; see
    :func:`n_m_patterns`).

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> sparsity.summarize({"Dense_0": {"kernel": jnp.array([[True, False]]),
    ...                                 "bias": None}})
    [{'name': 'Dense_0/kernel', 'size': 2, 'remaining': 1}]
  """
  named = masked_leaves(mask)
  sums = jax.device_get([jnp.sum(m, dtype=jnp.int32) for _, m in named])
  patterns = _nm_patterns.n_m_patterns([m for _, m in named])
  rows = [{"name": name, "size": int(np.size(m)), "remaining": int(s)}
          for (name, m), s in zip(named, sums)]
  for row, pattern in zip(rows, patterns):
    if pattern is not None:
      row["n_m"] = pattern
  return rows


def format_summary_table(rows: Sequence[dict[str, Any]]) -> str:
  """A plain-text table of :func:`summarize` rows with a total row.

  Args:
    rows: dicts with keys ``name``, ``size`` and ``remaining`` (and
      ``n_m`` for N:M layers).

  Returns:
    The table as one string: one line per row with the remaining percentage,
    then a ``total`` line. When some row has ``n_m``, a last column ``n:m``
    gives it (``-`` for the other rows).

  Example:
    >>> import sparsity
    >>> print(sparsity.format_summary_table(
    ...     [{"name": "Dense_0/kernel", "size": 8, "remaining": 2}]))
    layer           size  remaining  remaining %
    Dense_0/kernel     8          2        25.00
    total              8          2        25.00
  """
  total_size = sum(int(r["size"]) for r in rows)
  total_rem = sum(int(r["remaining"]) for r in rows)
  body = [(str(r["name"]), int(r["size"]), int(r["remaining"])) for r in rows]
  body.append(("total", total_size, total_rem))
  name_w = max(len("layer"), *(len(n) for n, _, _ in body))
  size_w = max(len("size"), *(len(str(s)) for _, s, _ in body))
  rem_w = max(len("remaining"), *(len(str(r)) for _, _, r in body))
  def pct(r, s):
    return f"{100.0 * r / s:.2f}" if s else "-"
  lines = [f"{'layer':<{name_w}}  {'size':>{size_w}}  "
           f"{'remaining':>{rem_w}}  {'remaining %':>11}"]
  for name, size, rem in body:
    lines.append(f"{name:<{name_w}}  {size:>{size_w}}  {rem:>{rem_w}}  "
                 f"{pct(rem, size):>11}")
  if any(r.get("n_m") for r in rows):  # N:M layers: one more column
    notes = ["n:m"] + [str(r.get("n_m") or "-") for r in rows] + [""]
    lines = [f"{line}  {note}".rstrip() for line, note in zip(lines, notes)]
  return "\n".join(lines)
