"""Filter (structured) masks: one bool per output channel of a layer.

A *filter mask* of a Dense or Conv layer is a ``bool`` vector over its
output channels (the last axis of its kernel), ``True`` = the filter is
kept. A dict ``{layer name: (C_out,) bool}`` of them is turned into an
ordinary mask (see :mod:`sparsity._masks`) by :func:`expand_filter_masks`:
the kernel is masked along its last axis, and the bias of the layer and the
1-D parameters (BatchNorm ``scale`` and ``bias``) of the per-channel layers
that follow it (:func:`channel_groups`) are masked per channel. Under
:func:`sparsity.masked` a dropped filter, its bias and its BatchNorm
scale/shift, and all their optimizer moments, then stay exactly 0; its
channel is 0 before and after the BatchNorm (``(0 - mean) / sd * 0 + 0``).

Layer names are Flax module paths joined with ``/`` (``"Conv_0"``,
``"BasicBlock_3/Conv_0"``), as in the layer list of
``experiments.models.layer_list``; this module imports nothing from
``experiments`` and takes the list as an argument.

The structure of an expanded mask depends only on which layers have filter
masks (and on the weight mask it is combined with), never on their values:
expand all-``True`` filter masks of every layer once (e.g. from
:func:`filters_of` of ``None``) to get a run's fixed mask structure, so that
later filter masks never retrace a jitted step.
"""

from collections.abc import Mapping, Sequence
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsity import _masks

PyTree = Any
Mask = Any
FilterMasks = Mapping[str, Any]  # layer name -> bool (C_out,)

_CALL_SUFFIX = re.compile(r"_call\d+$")


def channel_groups(layers: Sequence[Mapping[str, Any]]
                   ) -> dict[str, list[str]]:
  """Per-channel layers that directly follow each Dense/Conv layer.

  For every ``dense`` or ``conv`` entry of a layer list with a kernel, the
  names of the ``batchnorm`` entries with a ``scale`` or ``bias`` that take
  its output as their input: their 1-D parameters belong to the same output
  channels, so a dropped filter takes them along.

  Args:
    layers: a layer list (``experiments.models.layer_list(model,
      input_shape)``): dicts with ``name``, ``op``, ``inputs``, ``params``.

  Returns:
    ``{conv/dense name: [batchnorm names]}``, in layer-list order; a layer
    with no following BatchNorm maps to ``[]``.

  Example:
    >>> import sparsity
    >>> layers = [
    ...     {"name": "Conv_0", "op": "conv", "inputs": ["input"],
    ...      "params": {"kernel": ["params", "Conv_0", "kernel"]}},
    ...     {"name": "BatchNorm_0", "op": "batchnorm", "inputs": ["Conv_0"],
    ...      "params": {"scale": ["params", "BatchNorm_0", "scale"]}},
    ...     {"name": "relu_0", "op": "activation", "inputs": ["BatchNorm_0"],
    ...      "params": {}}]
    >>> sparsity.channel_groups(layers)
    {'Conv_0': ['BatchNorm_0']}
  """
  consumers: dict[str, list[Mapping[str, Any]]] = {}
  for entry in layers:
    for name in entry.get("inputs", ()):
      consumers.setdefault(name, []).append(entry)
  groups = {}
  for entry in layers:
    if entry["op"] not in ("conv", "dense"):
      continue
    if "kernel" not in entry.get("params", {}):
      continue
    groups[entry["name"]] = [
        c["name"] for c in consumers.get(entry["name"], [])
        if c["op"] == "batchnorm"
        and ("scale" in c.get("params", {}) or "bias" in c.get("params", {}))]
  return groups


def _flat(params: PyTree):
  """(names -> index, leaves, treedef) of a params tree."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  names = {_masks.leaf_name(p): i for i, (p, _) in enumerate(flat)}
  return names, [x for _, x in flat], treedef


def _leaf_index(names: Mapping[str, int], layer: str, role: str,
                required: bool) -> int | None:
  """Index of ``<layer>/<role>`` (also tries ``layer`` without ``_callN``)."""
  for cand in (layer, _CALL_SUFFIX.sub("", layer)):
    i = names.get(f"{cand}/{role}")
    if i is not None:
      return i
  if required:
    raise KeyError(f"no parameter {layer}/{role} in the params (filter mask "
                   f"layer names are module paths joined by '/')")
  return None


def _and(base: Any, keep: jax.Array) -> jax.Array:
  return keep if base is None else jnp.logical_and(base, keep)


def expand_filter_masks(params: PyTree, filter_masks: FilterMasks,
                        groups: Mapping[str, Sequence[str]] | None = None,
                        mask: Mask = None) -> Mask:
  """A mask from per-layer filter masks, ANDed with a weight mask.

  For layer ``l`` with filter mask ``k`` of length ``C_out``:

  .. math::
     m'_{\\text{kernel}}[\\ldots, f] = m_{\\text{kernel}}[\\ldots, f] \\wedge
     k_f, \\qquad m'_{\\text{bias}}[f] = m_{\\text{bias}}[f] \\wedge k_f

  and the same for every 1-D parameter of length ``C_out`` (BatchNorm
  ``scale``, ``bias``) of the layers in ``groups[l]``; a ``None`` leaf of
  ``mask`` counts as all-``True``. Leaves of layers without a filter mask
  keep ``mask``'s leaf (``None`` if ``mask`` is ``None``). Pure and
  jit-able (the names are static, the vectors may be traced).

  Args:
    params: the params (only shapes and structure are used: arrays or
      ``jax.ShapeDtypeStruct``).
    filter_masks: ``{layer name: bool (C_out,)}``, ``True`` = kept.
    groups: ``{layer name: [names of per-channel layers]}``, e.g. from
      :func:`channel_groups`; ``None`` = no following layers.
    mask: a weight mask to combine with (a filter mask composes with
      unstructured pruning), or ``None``.

  Returns:
    A mask with the structure of ``params``.

  Raises:
    KeyError: a named layer has no kernel in ``params``.
    ValueError: a filter mask's length is not the layer's ``C_out``.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> params = {"Conv_0": {"kernel": jnp.ones((1, 1, 2, 3)),
    ...                      "bias": jnp.ones(3)},
    ...           "BatchNorm_0": {"scale": jnp.ones(3), "bias": jnp.ones(3)}}
    >>> m = sparsity.expand_filter_masks(
    ...     params, {"Conv_0": jnp.array([True, False, True])},
    ...     groups={"Conv_0": ["BatchNorm_0"]})
    >>> m["Conv_0"]["kernel"][0, 0].tolist()
    [[True, False, True], [True, False, True]]
    >>> m["BatchNorm_0"]["scale"].tolist()
    [True, False, True]

  References:
    Prakash et al., "RePr: Improved Training of Convolutional Filters",
    CVPR 2019 (dropped filters held at 0); Liu et al., "Learning Efficient
    Convolutional Networks through Network Slimming", ICCV 2017 (BatchNorm
    scales of pruned channels).
  """
  groups = groups or {}
  names, leaves, treedef = _flat(params)
  name_of = {i: n for n, i in names.items()}
  if mask is None:
    out = [None] * len(leaves)
  else:
    out = list(treedef.flatten_up_to(mask))
  for layer, keep in filter_masks.items():
    keep = jnp.asarray(keep, dtype=jnp.bool_)
    k = _leaf_index(names, layer, "kernel", required=True)
    shape = tuple(np.shape(leaves[k]))
    if keep.shape != (shape[-1],):
      raise ValueError(f"filter mask of {layer} has shape {keep.shape}; its "
                       f"kernel {shape} has {shape[-1]} output channels")
    out[k] = _and(out[k], jnp.broadcast_to(keep, shape))
    targets = [_leaf_index(names, layer, "bias", required=False)]
    for other in groups.get(layer, ()):
      for role in ("scale", "bias"):
        targets.append(_leaf_index(names, other, role, required=False))
    for i in targets:
      if i is None:
        continue
      if tuple(np.shape(leaves[i])) != keep.shape:
        raise ValueError(f"{name_of[i]} has shape {np.shape(leaves[i])}, "
                         f"not the {keep.shape} channels of {layer}")
      out[i] = _and(out[i], keep)
  return jax.tree_util.tree_unflatten(treedef, out)


def filters_of(mask: Mask, params: PyTree) -> dict[str, jax.Array]:
  """Which filters of every Dense/Conv layer are alive under a mask.

  A filter is kept iff any of its kernel weights is kept:
  :math:`k_f = \\bigvee_{i} m_{\\text{kernel}}[i, f]`.

  Args:
    mask: a mask (``None``, or a ``None`` kernel leaf, keeps everything).
    params: the params (for the layer names and ``C_out``); kernels are the
      leaves named ``kernel`` with at least 2 dimensions.

  Returns:
    ``{layer name: bool (C_out,)}`` for every kernel, in flattening order.

  Example:
    >>> import jax.numpy as jnp, sparsity
    >>> params = {"Dense_0": {"kernel": jnp.ones((2, 3))}}
    >>> mask = {"Dense_0": {"kernel": jnp.array([[True, False, False],
    ...                                          [False, False, True]])}}
    >>> sparsity.filters_of(mask, params)["Dense_0"].tolist()
    [True, False, True]
  """
  names, leaves, treedef = _flat(params)
  mleaves = ([None] * len(leaves) if mask is None
             else treedef.flatten_up_to(mask))
  out = {}
  for name, i in names.items():
    if not (name.endswith("/kernel") or name == "kernel"):
      continue
    shape = tuple(np.shape(leaves[i]))
    if len(shape) < 2:
      continue
    layer = name[:-len("/kernel")] if "/" in name else ""
    m = mleaves[i]
    if m is None:
      out[layer] = jnp.ones((shape[-1],), jnp.bool_)
    else:
      out[layer] = jnp.any(jnp.reshape(m, (-1, shape[-1])), axis=0)
  return out


def project_to_mask() -> optax.GradientTransformationExtraArgs:
  """Per-step transform: a pruned parameter is exactly 0 after the step.

  At pruned positions the outgoing update becomes ``-theta``:

  .. math:: u' = m \\odot u + (1 - m) \\odot (-\\theta)

  so ``theta + u' = 0`` there (exact in floating point), whatever the
  parameter was before. Chain it after :func:`sparsity.masked` when the
  mask gains pruned entries on parameters that were not zeroed by an event
  (e.g. the bias and BatchNorm scale of a filter dropped by
  :func:`expand_filter_masks`). Stateless; the mask is the keyword ``mask``
  of ``update``.

  Returns:
    A ``GradientTransformationExtraArgs``.

  Example:
    >>> import jax.numpy as jnp, optax, sparsity
    >>> params = {"b": jnp.array([1., 2.])}
    >>> tx = optax.chain(sparsity.masked(optax.sgd(0.5)),
    ...                  sparsity.project_to_mask())
    >>> mask = {"b": jnp.array([True, False])}
    >>> u, _ = tx.update({"b": jnp.ones(2)}, tx.init(params), params,
    ...                  mask=mask)
    >>> optax.apply_updates(params, u)["b"].tolist()
    [0.5, 0.0]
  """
  def init_fn(params):
    del params  # unused
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, mask, **extra_args):
    del extra_args  # unused
    if params is None:
      raise ValueError("project_to_mask needs the params")

    def one(m, u, p):
      if m is None:
        return u
      return jnp.where(m, u, -p.astype(jnp.result_type(u)))
    return jax.tree.map(one, mask, updates, params,
                        is_leaf=_masks.is_none), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
