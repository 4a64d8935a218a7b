"""BinaryConnect training pieces: weight clipping, Glorot LR scale, loss.

Two per-step optax transforms, chained with any optimizer:

* :func:`scale_by_glorot` scales the updates of binary kernels by the
  per-layer learning-rate factor of BinaryConnect (chain it after the
  optimizer, before :func:`clip_params`);
* :func:`clip_params` keeps the latent weights in ``[-H, H]`` (chain it
  last).

And the plain functions :func:`hard_sigmoid` and :func:`squared_hinge_loss`.

References:
  Courbariaux, Bengio & David, "BinaryConnect: Training Deep Neural Networks
  with binary weights during propagations", NeurIPS 2015.
  Hubara et al., "Binarized Neural Networks", NeurIPS 2016.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsity

Include = Callable[[tuple[str, ...], Any], bool]


class ClipParamsState(NamedTuple):
  """State of :func:`clip_params` (none is needed)."""


class ScaleByGlorotState(NamedTuple):
  """State of :func:`scale_by_glorot` (none is needed)."""


def _key_str(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _included(include: Include | None, key_path: Any, leaf: Any) -> bool:
  """Whether ``leaf`` (at JAX key path ``key_path``) is a binary kernel."""
  if leaf is None or not hasattr(leaf, "shape"):
    return False
  include = sparsity.default_prunable if include is None else include
  return bool(include(tuple(_key_str(k) for k in key_path), leaf))


def hard_sigmoid(x: jax.Array) -> jax.Array:
  """The hard sigmoid of BinaryConnect: ``clip((x + 1) / 2, 0, 1)``.

  .. math:: \\sigma_h(x) = \\max(0, \\min(1, (x + 1) / 2))

  Its value is the probability of ``+1`` in stochastic binarization
  (:func:`binary.stochastic_sign`). Built with ``jnp.clip``, so its JAX
  gradient at ``x = +-1`` is 0.25 (half of the slope 1/2); it is not used
  as a straight-through estimator anywhere.

  Args:
    x: an array.

  Returns:
    ``clip((x + 1) / 2, 0, 1)``, same shape and dtype.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> binary.hard_sigmoid(jnp.array([-2.0, 0.0, 0.5, 3.0])).tolist()
    [0.0, 0.5, 0.75, 1.0]

  References:
    Courbariaux et al., BinaryConnect, NeurIPS 2015, Eq. (3).
  """
  return jnp.clip((x + 1) / 2, 0, 1)


def squared_hinge_loss(logits: jax.Array, labels: jax.Array,
                       num_classes: int) -> jax.Array:
  """The squared hinge loss of BinaryConnect/BNN, averaged over everything.

  With one-hot targets mapped to ``t \\in \\{-1, +1\\}^{B \\times C}``:

  .. math:: L = \\frac{1}{BC} \\sum_{b,c} \\max(0, 1 - t_{bc} y_{bc})^2

  (the official code's ``T.mean(T.sqr(T.maximum(0., 1. - t * y)))``: the
  mean runs over the batch *and* the classes).

  Args:
    logits: ``(B, C)`` outputs ``y``.
    labels: ``(B,)`` integer class labels.
    num_classes: ``C``.

  Returns:
    The scalar loss (float32 or the logits' float dtype).

  Example:
    >>> import jax.numpy as jnp, binary
    >>> y = jnp.array([[0.5, -2.0]])
    >>> float(binary.squared_hinge_loss(y, jnp.array([0]), 2))  # (.25 + 0)/2
    0.125

  References:
    Courbariaux et al., BinaryConnect (code ``binary_connect.py``), 2015.
  """
  t = 2.0 * jax.nn.one_hot(labels, num_classes, dtype=logits.dtype) - 1.0
  return jnp.mean(jnp.square(jnp.maximum(0.0, 1.0 - t * logits)))


def glorot_lr_scale(shape: tuple[int, ...]) -> float:
  """BinaryConnect's per-layer LR scale ``1 / sqrt(1.5 / (fan_in + fan_out))``.

  For a kernel of shape ``(*spatial, c_in, c_out)`` with receptive field
  ``r = prod(spatial)`` (1 for Dense): ``fan_in = c_in r``,
  ``fan_out = c_out r``.

  Args:
    shape: the kernel's shape (at least 2 dimensions).

  Returns:
    The scale as a Python float.

  Example:
    >>> import binary
    >>> round(binary.glorot_lr_scale((784, 1024)), 2)
    34.72

  References:
    Courbariaux et al., BinaryConnect (code ``binary_connect.py``), 2015.
  """
  if len(shape) < 2:
    raise ValueError(f"a kernel needs >= 2 dimensions, got shape {shape}")
  receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
  fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
  return float(1.0 / np.sqrt(1.5 / (fan_in + fan_out)))


def scale_by_glorot(H: float | None = None,  # pylint: disable=invalid-name
                    include: Include | None = None
                    ) -> optax.GradientTransformationExtraArgs:
  """Scales the updates of binary kernels by BinaryConnect's per-layer LR.

  For every included kernel ``W`` (default: Dense/Conv kernels, as
  :func:`sparsity.default_prunable`):

  .. math:: u' = u / H_W, \\qquad H_W = \\sqrt{1.5 / (\\mathrm{fan\\_in} +
     \\mathrm{fan\\_out})}

  (see :func:`glorot_lr_scale` for the fans of a conv kernel). If ``H`` is
  given, every kernel uses ``H_W = H`` instead, a scale of ``1/H``: this is
  the project's option, not the official code's. There ``W_LR_scale`` is
  either ``"Glorot"`` (the scale above, whatever ``H`` is; with ``H =
  "Glorot"`` it is exactly ``1/H``) or a literal number (the scripts'
  commented alternative is ``W_LR_scale = 1.``), which equals ``1/H`` only
  for the scripts' fixed ``H = 1.``. Other
  leaves (biases, BatchNorm) pass unchanged. Chain it *after* the
  optimizer, as the official code scales the Adam update, and before
  :func:`clip_params`.

  Args:
    H: ``None`` for the Glorot scale, or a fixed binary magnitude.
    include: optional ``(path, leaf) -> bool`` choosing the kernels; the
      path is a tuple of str keys.

  Returns:
    An optax ``GradientTransformationExtraArgs`` (extra arguments such as
    ``mask`` are accepted and ignored).

  Example:
    >>> import jax.numpy as jnp, optax, binary
    >>> tx = optax.chain(optax.adam(1e-3), binary.scale_by_glorot())
    >>> params = {"Dense_0": {"kernel": jnp.zeros((784, 1024))}}
    >>> state = tx.init(params)

  References:
    Courbariaux et al., BinaryConnect, NeurIPS 2015 (code
    ``clipping_scaling``).
  """

  def init_fn(params):
    del params  # unused
    return ScaleByGlorotState()

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args  # unused

    def scale(key_path, u):
      if not _included(include, key_path, u):
        return u
      s = 1.0 / H if H is not None else glorot_lr_scale(tuple(u.shape))
      return (u * jnp.asarray(s, dtype=u.dtype)).astype(u.dtype)

    return jax.tree_util.tree_map_with_path(scale, updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def clip_params(H: float = 1.0,  # pylint: disable=invalid-name
                include: Include | None = None
                ) -> optax.GradientTransformationExtraArgs:
  """Keeps the latent binary kernels in ``[-H, H]``; chain it LAST.

  An update transform cannot change params directly, so it returns the
  update that lands on the clipped value: for every included kernel
  (default: Dense/Conv kernels, as :func:`sparsity.default_prunable`)

  .. math:: u' = \\mathrm{clip}(\\theta + u, -H, H) - \\theta

  so that ``optax.apply_updates(params, u')`` equals
  ``clip(params + u, -H, H)`` (up to one float rounding of ``theta + u'``,
  which is then nudged by one ulp so that the result never leaves
  ``[-H, H]``; ``H`` is taken in the params' dtype, e.g. bfloat16 holds
  0.3 as 0.30078125). Other leaves pass unchanged. A pruned weight (0, with a 0
  update) stays exactly 0.

  Args:
    H: the clipping bound (BinaryConnect's binary magnitude, default 1).
    include: optional ``(path, leaf) -> bool`` choosing the kernels; the
      path is a tuple of str keys.

  Returns:
    An optax ``GradientTransformationExtraArgs`` whose ``update`` requires
    ``params`` (extra arguments such as ``mask`` are ignored).

  Example:
    >>> import jax.numpy as jnp, optax, binary
    >>> tx = optax.chain(optax.sgd(1.0), binary.clip_params(1.0))
    >>> p = {"Dense_0": {"kernel": jnp.array([[0.5, -0.9]])}}
    >>> u, _ = tx.update({"Dense_0": {"kernel": jnp.array([[0.25, 0.5]])}},
    ...                  tx.init(p), p)
    >>> optax.apply_updates(p, u)["Dense_0"]["kernel"].tolist()
    [[0.25, -1.0]]

  References:
    Courbariaux et al., BinaryConnect, NeurIPS 2015, Algorithm 1.
  """
  if H <= 0:
    raise ValueError(f"clip_params needs H > 0, got {H}")

  def init_fn(params):
    del params  # unused
    return ClipParamsState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # unused
    if params is None:
      raise ValueError("clip_params needs params: call update(updates, "
                       "state, params)")

    def clip(key_path, u, p):
      if u is None or not _included(include, key_path, p):
        return u
      dtype = jnp.result_type(p)
      p = jnp.asarray(p)
      h = jnp.asarray(H, dtype)
      target = jnp.clip((p + u.astype(dtype)).astype(dtype), -h, h)
      new_u = (target - p).astype(dtype)
      landed = (p + new_u).astype(dtype)
      new_u = jnp.where(landed > h, jnp.nextafter(new_u, -jnp.inf),
                        jnp.where(landed < -h,
                                  jnp.nextafter(new_u, jnp.inf), new_u))
      return new_u.astype(u.dtype)

    return jax.tree_util.tree_map_with_path(clip, updates, params), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
