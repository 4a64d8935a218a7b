"""Quantizers: ``jax.custom_vjp`` functions, forward binary, backward an STE.

Conventions (pinned by ``tests/test_quantizers.py``):

* ``sign(0) = +1`` everywhere (``jnp.sign(0)`` is 0 and is never used bare);
* pass-through windows are inclusive, ``|x| <= clip`` passes the gradient,
  and are built with ``jnp.where`` (the JAX gradient of ``jnp.clip`` at
  the boundary is 0.5).

Every quantizer keeps its input's shape and dtype.

References:
  Courbariaux, Bengio & David, "BinaryConnect", NeurIPS 2015.
  Hubara et al., "Binarized Neural Networks", NeurIPS 2016.
  Liu et al., "Bi-Real Net", ECCV 2018.
  Darabi et al., "BNN+: Improved Binary Network Training", 2018.
  Geiger & Team, "Larq: An Open-Source Library for Training Binarized
  Neural Networks", JOSS 2020 (``larq.quantizers``).
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from binary._binaryconnect import hard_sigmoid


def _sign(x: jax.Array) -> jax.Array:
  """``+1`` where ``x >= 0``, else ``-1`` (so ``sign(0) = +1``)."""
  one = jnp.ones((), dtype=jnp.result_type(x))
  return jnp.where(x >= 0, one, -one)


def _window(x: jax.Array, clip: float | None) -> jax.Array:
  """``1{|x| <= clip}`` in x's dtype (all ones for ``clip=None``)."""
  if clip is None:
    return jnp.ones_like(x)
  return jnp.where(jnp.abs(x) <= clip, 1, 0).astype(jnp.result_type(x))


# ---------------------------------------------------------------------------
# ste_sign
# ---------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _ste_sign(x, clip):
  del clip  # only used by the backward pass
  return _sign(x)


def _ste_sign_fwd(x, clip):
  del clip  # unused
  return _sign(x), x


def _ste_sign_bwd(clip, x, g):
  return (g * _window(x, clip),)


_ste_sign.defvjp(_ste_sign_fwd, _ste_sign_bwd)


def ste_sign(x: jax.Array, clip: float | None = 1.0) -> jax.Array:
  """Sign with the straight-through estimator (saturated by default).

  .. math::
     q(x) = \\begin{cases} +1 & x \\ge 0 \\\\ -1 & x < 0 \\end{cases},
     \\qquad \\frac{\\partial L}{\\partial x} = g\\,\\mathbb{1}\\{|x| \\le
     \\mathrm{clip}\\}

  ``clip=1`` is BNN's ``binary_tanh_unit`` (backward = d/dx hard_tanh);
  ``clip=None`` is the pure (identity) STE of BinaryConnect's weights.

  Args:
    x: an array.
    clip: the inclusive half-width of the pass-through window, or ``None``
      for the identity gradient.

  Returns:
    ``+1``/``-1`` of x's shape and dtype.

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> binary.ste_sign(jnp.array([-0.5, 0.0, 2.0])).tolist()
    [-1.0, 1.0, 1.0]
    >>> jax.grad(lambda x: binary.ste_sign(x).sum())(
    ...     jnp.array([-0.5, 1.0, 2.0])).tolist()
    [1.0, 1.0, 0.0]

  References:
    Hubara et al., "Binarized Neural Networks", NeurIPS 2016, Sec. 1.3.
  """
  return _ste_sign(x, clip)


# ---------------------------------------------------------------------------
# approx_sign (Bi-Real Net)
# ---------------------------------------------------------------------------

@jax.custom_vjp
def approx_sign(x: jax.Array) -> jax.Array:
  """Sign with Bi-Real Net's piecewise-polynomial gradient.

  .. math::
     q(x) = \\mathrm{sign}(x)\\ (\\mathrm{sign}(0) = +1), \\qquad
     \\frac{\\partial L}{\\partial x} = g \\cdot \\begin{cases}
     2 - 2|x| & |x| \\le 1 \\\\ 0 & \\text{otherwise} \\end{cases}

  the derivative of the ``ApproxSign`` polynomial ``2x + x^2`` (x < 0),
  ``2x - x^2`` (x >= 0) on ``[-1, 1]``.

  Args:
    x: an array.

  Returns:
    ``+1``/``-1`` of x's shape and dtype.

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> jax.grad(lambda x: binary.approx_sign(x).sum())(
    ...     jnp.array([0.0, 0.5, -1.0])).tolist()
    [2.0, 1.0, 0.0]

  References:
    Liu et al., "Bi-Real Net", ECCV 2018, Eq. (4).
  """
  return _sign(x)


def _approx_sign_fwd(x):
  return _sign(x), x


def _approx_sign_bwd(x, g):
  ax = jnp.abs(x)
  return (g * jnp.where(ax <= 1, 2 - 2 * ax, jnp.zeros_like(x)),)


approx_sign.defvjp(_approx_sign_fwd, _approx_sign_bwd)


# ---------------------------------------------------------------------------
# swish_sign (BNN+)
# ---------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _swish_sign(x, beta):
  del beta  # only used by the backward pass
  return _sign(x)


def _swish_sign_fwd(x, beta):
  del beta  # unused
  return _sign(x), x


def _swish_sign_bwd(beta, x, g):
  bx = beta * x
  d = beta * (2 - bx * jnp.tanh(bx / 2)) / (1 + jnp.cosh(bx))
  return (g * d,)


_swish_sign.defvjp(_swish_sign_fwd, _swish_sign_bwd)


def swish_sign(x: jax.Array, beta: float = 5.0) -> jax.Array:
  """Sign with the gradient of BNN+'s SignSwish.

  .. math::
     q(x) = \\mathrm{sign}(x), \\qquad
     \\frac{\\partial L}{\\partial x} = g \\frac{d}{dx}\\big[2\\sigma(\\beta x)
     (1 + \\beta x (1 - \\sigma(\\beta x))) - 1\\big]
     = g\\,\\frac{\\beta\\,(2 - \\beta x \\tanh(\\beta x / 2))}
     {1 + \\cosh(\\beta x)}

  The gradient peaks at ``beta`` for ``x = 0`` and is slightly negative for
  ``|x| > 2.4 / beta``.

  Args:
    x: an array.
    beta: the sharpness (BNN+ and larq default 5).

  Returns:
    ``+1``/``-1`` of x's shape and dtype.

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> float(jax.grad(lambda x: binary.swish_sign(x, beta=5.0))(0.0))
    5.0

  References:
    Darabi et al., "BNN+: Improved Binary Network Training", 2018, Eq. (6).
  """
  return _swish_sign(x, beta)


# ---------------------------------------------------------------------------
# magnitude_aware_sign (Bi-Real Net weights)
# ---------------------------------------------------------------------------

def _channel_scale(w: jax.Array) -> jax.Array:
  """``mean(|w|)`` over all axes but the last (over all of a 1-D ``w``)."""
  axes = tuple(range(w.ndim - 1)) if w.ndim >= 2 else None
  return jnp.mean(jnp.abs(w), axis=axes, keepdims=w.ndim >= 2).astype(
      jnp.result_type(w))


@jax.custom_vjp
def magnitude_aware_sign(w: jax.Array) -> jax.Array:
  """Per-output-channel scaled sign of a kernel (Bi-Real Net's weights).

  .. math::
     q(w)_{\\ldots c} = \\alpha_c\\, \\mathrm{sign}(w_{\\ldots c}), \\quad
     \\alpha_c = \\mathrm{mean}(|w_{\\ldots c}|), \\qquad
     \\frac{\\partial L}{\\partial w} = g\\, \\alpha\\,
     \\mathbb{1}\\{|w| \\le 1\\}

  Backward (our exact choice): the scale ``alpha`` is treated as a constant
  (as if wrapped in ``stop_gradient``), and the sign passes the gradient
  straight through inside the inclusive window ``|w| <= 1``, so the
  gradient is ``g * alpha * 1{|w| <= 1}``. (Bi-Real's ``d|w|/dw`` path
  through ``alpha`` is dropped, as larq does.) The mean runs over all axes
  but the last: ``(in, out)`` Dense and ``(kh, kw, in, out)`` Conv kernels
  get one ``alpha`` per output channel; a 1-D ``w`` gets one ``alpha``
  (larq's ``MagnitudeAwareSign`` reduces over ``range(ndim - 1)``, nothing
  for a 1-D input, whose scale is then ``|w|`` itself; kernels match, see
  ``tests/reference/test_ref_larq.py``).

  Args:
    w: a kernel, output channels last.

  Returns:
    ``alpha * sign(w)`` of w's shape and dtype.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> binary.magnitude_aware_sign(
    ...     jnp.array([[0.5, -1.0], [-0.25, 3.0]])).tolist()
    [[0.375, -2.0], [-0.375, 2.0]]

  References:
    Liu et al., "Bi-Real Net", ECCV 2018, Sec. 3.3.
  """
  return _channel_scale(w) * _sign(w)


def _magnitude_aware_sign_fwd(w):
  scale = _channel_scale(w)
  return scale * _sign(w), (w, scale)


def _magnitude_aware_sign_bwd(res, g):
  w, scale = res
  return (g * scale * _window(w, 1.0),)


magnitude_aware_sign.defvjp(_magnitude_aware_sign_fwd,
                            _magnitude_aware_sign_bwd)


# ---------------------------------------------------------------------------
# ste_heaviside
# ---------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _ste_heaviside(x, clip):
  del clip  # only used by the backward pass
  return _heaviside(x)


def _heaviside(x):
  dtype = jnp.result_type(x)
  return jnp.where(x > 0, jnp.ones((), dtype), jnp.zeros((), dtype))


def _ste_heaviside_fwd(x, clip):
  del clip  # unused
  return _heaviside(x), x


def _ste_heaviside_bwd(clip, x, g):
  return (g * _window(x, clip),)


_ste_heaviside.defvjp(_ste_heaviside_fwd, _ste_heaviside_bwd)


def ste_heaviside(x: jax.Array, clip: float | None = 1.0) -> jax.Array:
  """Heaviside step {0, 1} with the straight-through estimator.

  .. math::
     q(x) = \\begin{cases} 1 & x > 0 \\\\ 0 & x \\le 0 \\end{cases}, \\qquad
     \\frac{\\partial L}{\\partial x} = g\\,\\mathbb{1}\\{|x| \\le
     \\mathrm{clip}\\}

  At ``x = 0`` the output is 0 (larq's convention, ``x > 0 -> 1``; unlike
  the signs, which map 0 to +1).

  Args:
    x: an array.
    clip: inclusive pass-through half-width, or ``None`` for identity.

  Returns:
    ``0``/``1`` of x's shape and dtype.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> binary.ste_heaviside(jnp.array([-1.0, 0.0, 0.5])).tolist()
    [0.0, 0.0, 1.0]

  References:
    larq ``SteHeaviside``.
  """
  return _ste_heaviside(x, clip)


# ---------------------------------------------------------------------------
# stochastic_sign (BinaryConnect stochastic)
# ---------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _stochastic_sign(x, u, H):  # pylint: disable=invalid-name
  one = jnp.ones((), dtype=jnp.result_type(x))
  return jnp.where(u < hard_sigmoid(x / H), one, -one)


def _stochastic_sign_fwd(x, u, H):  # pylint: disable=invalid-name
  return _stochastic_sign(x, u, H), x


def _stochastic_sign_bwd(H, x, g):  # pylint: disable=invalid-name
  return (g * _window(x, H), None)


_stochastic_sign.defvjp(_stochastic_sign_fwd, _stochastic_sign_bwd)


def stochastic_sign(key: jax.Array, x: jax.Array,
                    H: float = 1.0  # pylint: disable=invalid-name
                    ) -> jax.Array:
  """Stochastic binarization of BinaryConnect, with a saturated STE.

  .. math::
     q(x) = \\begin{cases} +1 & \\text{with probability } p =
     \\sigma_h(x / H) = \\mathrm{clip}((x/H + 1)/2, 0, 1) \\\\
     -1 & \\text{with probability } 1 - p \\end{cases}, \\qquad
     \\frac{\\partial L}{\\partial x} = g\\,\\mathbb{1}\\{|x| \\le H\\}

  Drawn as ``+1`` iff ``u < p`` with ``u ~ Uniform[0, 1)`` from ``key``, so
  ``x >= H`` always gives +1 and ``x <= -H`` always -1. Backward: identity
  inside the inclusive window ``|x| <= H`` and 0 outside (the official
  BinaryConnect code back-propagates the identity to weights that are
  clipped to ``[-H, H]`` anyway, so both agree on clipped weights). The
  output is ``+-1``; multiply by ``H`` for BinaryConnect's ``+-H``.

  Args:
    key: a PRNG key.
    x: an array.
    H: the binary magnitude that sets the probability slope and window.

  Returns:
    ``+1``/``-1`` of x's shape and dtype.

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> binary.stochastic_sign(jax.random.key(0),
    ...                        jnp.array([-3.0, 3.0])).tolist()
    [-1.0, 1.0]

  References:
    Courbariaux et al., "BinaryConnect", NeurIPS 2015, Eq. (2)-(3).
  """
  u = jax.random.uniform(key, jnp.shape(x), dtype=jnp.float32)
  return _stochastic_sign(x, u, H)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

def identity(x: jax.Array) -> jax.Array:
  """The identity quantizer (a full-precision layer)."""
  return x


def ste_identity_sign(x: jax.Array) -> jax.Array:
  """Sign forward, identity backward: the *unclipped* ("identity") STE.

  ``ste_sign(x, clip=None)`` under a name of its own, so configs and sweeps
  can choose it (the "identity STE" of Alizadeh et al., ICLR 2019, as
  opposed to the clipped STE ``ste_sign``).

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> jax.grad(lambda x: binary.ste_identity_sign(x).sum())(
    ...     jnp.array([-3.0, 0.5])).tolist()
    [1.0, 1.0]
  """
  return ste_sign(x, clip=None)


QUANTIZERS: dict[str, Callable[..., jax.Array]] = {
    "identity": identity,
    "ste_sign": ste_sign,
    "ste_identity_sign": ste_identity_sign,
    "approx_sign": approx_sign,
    "swish_sign": swish_sign,
    "magnitude_aware_sign": magnitude_aware_sign,
    "ste_heaviside": ste_heaviside,
}


def get_quantizer(name: str, **kwargs: Any) -> Callable[[jax.Array],
                                                        jax.Array]:
  """The quantizer called ``name`` as a function of ``x`` alone.

  Args:
    name: one of ``QUANTIZERS`` (``"identity"``, ``"ste_sign"``,
      ``"approx_sign"``, ``"swish_sign"``, ``"magnitude_aware_sign"``,
      ``"ste_heaviside"``).
    **kwargs: its options, e.g. ``clip=None`` or ``beta=10.0``.

  Returns:
    ``x -> quantizer(x, **kwargs)``.

  Raises:
    ValueError: for an unknown name.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> q = binary.get_quantizer("ste_sign", clip=None)
    >>> q(jnp.array([0.0, -2.0])).tolist()
    [1.0, -1.0]
  """
  if name not in QUANTIZERS:
    raise ValueError(f"unknown quantizer {name!r}; choose one of "
                     f"{', '.join(sorted(QUANTIZERS))}")
  fn = QUANTIZERS[name]
  return functools.partial(fn, **kwargs) if kwargs else fn
