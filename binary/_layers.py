"""Binary Flax Linen layers: latent real kernels, binary view in the forward.

The params are the latent real-valued weights, named ``kernel`` (so
:func:`sparsity.default_prunable` masks them) and ``bias`` (real, never
quantized). The binary view is computed in every forward pass, so
checkpoints keep the latent weights.

Masks compose: the binary kernel is

.. math:: W_b = \\begin{cases} 0 & W = 0 \\\\ q(W) & \\text{otherwise}
   \\end{cases}

because :func:`sparsity.masked` holds pruned weights at exactly 0, and a
trained latent weight is exactly 0 otherwise only with probability ~0. A
zero latent weight therefore contributes nothing (not ``+-1``) and gets no
gradient.

Stochastic BinaryConnect: ``kernel_quantizer="stochastic_sign"`` draws
``W_b`` with :func:`binary.stochastic_sign` from the ``"quantize"`` RNG
stream while training (``deterministic=False``; call ``apply`` with
``rngs={"quantize": key}``) and uses the *real* latent weights at test time
(``deterministic=True``), as the official code does. Deterministic
quantizers binarize in both modes and ignore the flag.

References:
  Courbariaux et al., "BinaryConnect", NeurIPS 2015.
  Hubara et al., "Binarized Neural Networks", NeurIPS 2016.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from binary import _quantizers

Quantizer = str | Callable[[jax.Array], jax.Array] | None

STOCHASTIC = "stochastic_sign"
"""The kernel quantizer name of stochastic BinaryConnect (needs a key)."""


def _resolve(q: Quantizer) -> Callable[[jax.Array], jax.Array] | None:
  if q is None or callable(q):
    return q
  return _quantizers.get_quantizer(q)


def is_stochastic(quantizer: Quantizer) -> bool:
  """Whether ``quantizer`` is stochastic BinaryConnect's (name or function).

  Example:
    >>> import binary
    >>> binary.is_stochastic("stochastic_sign")
    True
    >>> binary.is_stochastic("ste_sign")
    False
  """
  return quantizer == STOCHASTIC or quantizer is _quantizers.stochastic_sign


def binary_kernel(kernel: jax.Array, quantizer: Quantizer,
                  key: jax.Array | None = None) -> jax.Array:
  """The binary view ``where(kernel == 0, 0, q(kernel))`` of a kernel.

  Args:
    kernel: the latent real-valued kernel.
    quantizer: a name of :data:`binary.QUANTIZERS`, ``"stochastic_sign"``
      (needs ``key``), a function, or ``None`` (the kernel itself).
    key: the PRNG key of ``"stochastic_sign"`` (ignored otherwise).

  Returns:
    The quantized kernel, 0 wherever ``kernel`` is 0 (pruned).

  Raises:
    ValueError: ``"stochastic_sign"`` without a key.

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> binary.binary_kernel(jnp.array([0.3, 0.0, -0.2]), "ste_sign").tolist()
    [1.0, 0.0, -1.0]
    >>> binary.binary_kernel(jnp.array([3.0, 0.0, -3.0]), "stochastic_sign",
    ...                      jax.random.key(0)).tolist()
    [1.0, 0.0, -1.0]
  """
  if is_stochastic(quantizer):
    if key is None:
      raise ValueError("the 'stochastic_sign' kernel quantizer needs a key")
    q = functools.partial(_quantizers.stochastic_sign, key)
  else:
    q = _resolve(quantizer)
  if q is None:
    return kernel
  return jnp.where(kernel == 0, jnp.zeros((), kernel.dtype), q(kernel))


def _kernel_view(module: nn.Module, kernel: jax.Array,
                 deterministic: bool | None) -> jax.Array:
  """The kernel a Binary layer multiplies by (see the module docstring)."""
  if not is_stochastic(module.kernel_quantizer):
    return binary_kernel(kernel, module.kernel_quantizer)
  deterministic = nn.merge_param("deterministic", module.deterministic,
                                 deterministic)
  if deterministic:
    return kernel  # test time: the real-valued weights
  return binary_kernel(kernel, STOCHASTIC, module.make_rng("quantize"))


def uniform_init(scale: float = 1.0) -> Callable[..., jax.Array]:
  """BinaryConnect's latent-weight init ``Uniform(-scale, scale)``."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


class BinaryDense(nn.Module):
  """A Dense layer with a binary kernel (and optionally binary inputs).

  .. math:: y = q_{in}(x)\\, W_b + b, \\qquad W_b = \\mathrm{where}(W = 0,
     0, q_k(W))

  Attributes:
    features: number of outputs.
    kernel_quantizer: name in :data:`binary.QUANTIZERS`, a function,
      ``"stochastic_sign"`` (stochastic BinaryConnect: a draw from the
      ``"quantize"`` RNG stream in training, the real weights at test time),
      or ``None`` (full precision). Default ``"ste_sign"`` (``clip=1``).
    input_quantizer: same, for the inputs; ``None`` keeps them real
      (BinaryConnect), ``"ste_sign"`` binarizes them (BNN).
    use_bias: whether to add a real bias.
    kernel_init: latent kernel init (default ``Uniform(-1, 1)``, as
      BinaryConnect with ``H = 1``).
    bias_init: bias init (zeros).
    dtype: computation dtype (default: that of the inputs/params).
    param_dtype: dtype of the latent params.
    precision: ``jax.lax`` precision of the matmul.
    deterministic: only read by ``"stochastic_sign"``: True = test time
      (real weights), False = training (a stochastic draw); may instead be
      passed to ``__call__`` (Flax's ``Dropout`` convention).

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> layer = binary.BinaryDense(3)
    >>> params = layer.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> layer.apply(params, jnp.ones((2, 4))).shape
    (2, 3)
    >>> sto = binary.BinaryDense(3, kernel_quantizer="stochastic_sign")
    >>> sto.apply(params, jnp.ones((2, 4)), deterministic=False,
    ...           rngs={"quantize": jax.random.key(1)}).shape
    (2, 3)
  """
  features: int
  kernel_quantizer: Quantizer = "ste_sign"
  input_quantizer: Quantizer = None
  use_bias: bool = True
  kernel_init: Callable[..., jax.Array] = uniform_init(1.0)
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  deterministic: bool | None = None

  @nn.compact
  def __call__(self, x: jax.Array,
               deterministic: bool | None = None) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (jnp.shape(x)[-1], self.features), self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    q_in = _resolve(self.input_quantizer)
    if q_in is not None:
      x = q_in(x)
    y = jnp.matmul(x, _kernel_view(self, kernel, deterministic),
                   precision=self.precision)
    if bias is not None:
      y = y + bias
    return y


class BinaryConv(nn.Module):
  """A convolution (NHWC, kernel ``(*kernel_size, C_in, C_out)``) binarized.

  .. math:: y = q_{in}(x) * W_b + b, \\qquad W_b = \\mathrm{where}(W = 0,
     0, q_k(W))

  Padding is applied *after* the input quantizer, so ``"SAME"`` pads with
  0, not ``+-1`` (larq's default ``pad_values=0``).

  Attributes:
    features: number of output channels.
    kernel_size: spatial window, e.g. ``(3, 3)``.
    strides: an int or one per spatial dimension (default 1).
    padding: ``"SAME"``, ``"VALID"`` or a sequence of ``(low, high)``.
    kernel_quantizer: as in :class:`BinaryDense`.
    input_quantizer: as in :class:`BinaryDense`.
    use_bias: whether to add a real bias.
    kernel_init: latent kernel init (default ``Uniform(-1, 1)``).
    bias_init: bias init (zeros).
    dtype: computation dtype.
    param_dtype: dtype of the latent params.
    precision: ``jax.lax`` precision of the convolution.
    deterministic: as in :class:`BinaryDense`.

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> layer = binary.BinaryConv(8, (3, 3), input_quantizer="ste_sign")
    >>> params = layer.init(jax.random.key(0), jnp.ones((1, 5, 5, 2)))
    >>> layer.apply(params, jnp.ones((1, 5, 5, 2))).shape
    (1, 5, 5, 8)
  """
  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 1
  padding: str | Sequence[tuple[int, int]] = "SAME"
  kernel_quantizer: Quantizer = "ste_sign"
  input_quantizer: Quantizer = None
  use_bias: bool = True
  kernel_init: Callable[..., jax.Array] = uniform_init(1.0)
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  deterministic: bool | None = None

  @nn.compact
  def __call__(self, x: jax.Array,
               deterministic: bool | None = None) -> jax.Array:
    kernel_size = tuple(self.kernel_size)
    n = len(kernel_size)
    if x.ndim != n + 2:
      raise ValueError(f"BinaryConv with a {n}-D kernel needs inputs of "
                       f"rank {n + 2} (batch, *spatial, channels), got "
                       f"shape {x.shape}")
    strides = ((self.strides,) * n if isinstance(self.strides, int)
               else tuple(self.strides))
    kernel = self.param("kernel", self.kernel_init,
                        kernel_size + (x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    q_in = _resolve(self.input_quantizer)
    if q_in is not None:
      x = q_in(x)
    padding = (self.padding if isinstance(self.padding, str)
               else tuple(tuple(p) for p in self.padding))
    spatial = "".join("DHW"[-n:]) if n <= 3 else None
    if spatial is None:
      raise ValueError(f"at most 3 spatial dimensions, got {n}")
    dn = jax.lax.conv_dimension_numbers(
        x.shape, kernel.shape,
        ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C"))
    y = jax.lax.conv_general_dilated(
        x, _kernel_view(self, kernel, deterministic), strides, padding,
        dimension_numbers=dn, precision=self.precision)
    if bias is not None:
      y = y + bias
    return y
