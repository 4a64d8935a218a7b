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

References:
  Courbariaux et al., "BinaryConnect", NeurIPS 2015.
  Hubara et al., "Binarized Neural Networks", NeurIPS 2016.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from binary import _quantizers

Quantizer = str | Callable[[jax.Array], jax.Array] | None


def _resolve(q: Quantizer) -> Callable[[jax.Array], jax.Array] | None:
  if q is None or callable(q):
    return q
  return _quantizers.get_quantizer(q)


def binary_kernel(kernel: jax.Array, quantizer: Quantizer) -> jax.Array:
  """The binary view ``where(kernel == 0, 0, q(kernel))`` of a kernel.

  Args:
    kernel: the latent real-valued kernel.
    quantizer: a name of :data:`binary.QUANTIZERS`, a function, or ``None``
      (the kernel itself).

  Returns:
    The quantized kernel, 0 wherever ``kernel`` is 0 (pruned).

  Example:
    >>> import jax.numpy as jnp, binary
    >>> binary.binary_kernel(jnp.array([0.3, 0.0, -0.2]), "ste_sign").tolist()
    [1.0, 0.0, -1.0]
  """
  q = _resolve(quantizer)
  if q is None:
    return kernel
  return jnp.where(kernel == 0, jnp.zeros((), kernel.dtype), q(kernel))


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
    kernel_quantizer: name in :data:`binary.QUANTIZERS`, a function, or
      ``None`` (full precision). Default ``"ste_sign"`` (``clip=1``).
    input_quantizer: same, for the inputs; ``None`` keeps them real
      (BinaryConnect), ``"ste_sign"`` binarizes them (BNN).
    use_bias: whether to add a real bias.
    kernel_init: latent kernel init (default ``Uniform(-1, 1)``, as
      BinaryConnect with ``H = 1``).
    bias_init: bias init (zeros).
    dtype: computation dtype (default: that of the inputs/params).
    param_dtype: dtype of the latent params.
    precision: ``jax.lax`` precision of the matmul.

  Example:
    >>> import jax, jax.numpy as jnp, binary
    >>> layer = binary.BinaryDense(3)
    >>> params = layer.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> layer.apply(params, jnp.ones((2, 4))).shape
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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (jnp.shape(x)[-1], self.features), self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    q_in = _resolve(self.input_quantizer)
    if q_in is not None:
      x = q_in(x)
    y = jnp.matmul(x, binary_kernel(kernel, self.kernel_quantizer),
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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
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
        x, binary_kernel(kernel, self.kernel_quantizer), strides, padding,
        dimension_numbers=dn, precision=self.precision)
    if bias is not None:
      y = y + bias
    return y
