"""Binary Flax NNX layers: the NNX twins of :class:`binary.BinaryDense` and
:class:`binary.BinaryConv` (the Linen layers).

Exported as ``binary.BinaryLinear`` and ``binary.BinaryConvNNX`` (the Linen
conv already holds the name ``binary.BinaryConv``).

Same conventions as the Linen layers (``binary/_layers.py``): the params are
the latent real-valued weights, ``nnx.Param`` attributes named ``kernel``
(so :func:`sparsity.default_prunable` masks them in
``nnx.state(model, nnx.Param)``) and ``bias`` (real, never quantized); the
binary view is computed in every forward pass with
:func:`binary.binary_kernel`:

.. math:: W_b = \\begin{cases} 0 & W = 0 \\\\ q(W) & \\text{otherwise}
   \\end{cases}

so a pruned (zero) latent weight contributes nothing and gets no gradient.
Quantizers are the same ``custom_vjp`` functions, named as in
:data:`binary.QUANTIZERS` (default ``"ste_sign"``: ``sign(0) = +1``, STE
window ``|W| <= 1`` inclusive); weight clipping is the optimizer's job, as
for Linen (chain :func:`binary.clip_params` last; it finds NNX kernels).

Stochastic BinaryConnect (``kernel_quantizer="stochastic_sign"``) draws from
the ``"quantize"`` stream of the ``rngs`` given at construction (or a key /
``Rngs`` passed to ``__call__``) when ``deterministic=False`` and uses the
real weights when ``deterministic=True``, as ``nnx.Dropout`` does.

References:
  Courbariaux et al., "BinaryConnect", NeurIPS 2015.
  Hubara et al., "Binarized Neural Networks", NeurIPS 2016.
"""

from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp

from binary import _layers

Quantizer = _layers.Quantizer
RNG_STREAM = "quantize"
"""The ``nnx.Rngs`` stream that stochastic binarization draws from."""


def _quantize_rngs(kernel_quantizer: Quantizer, rngs: nnx.Rngs) -> Any:
  """The forked ``"quantize"`` stream a stochastic layer keeps, else None."""
  if not _layers.is_stochastic(kernel_quantizer):
    return nnx.data(None)
  return rngs[RNG_STREAM].fork()


def _view(module: Any, kernel: jax.Array, deterministic: bool | None,
          rngs: Any) -> jax.Array:
  """The kernel the layer multiplies by (see the module docstring)."""
  if not _layers.is_stochastic(module.kernel_quantizer):
    return _layers.binary_kernel(kernel, module.kernel_quantizer)
  deterministic = (module.deterministic if deterministic is None
                   else deterministic)
  if deterministic is None:
    raise ValueError("a 'stochastic_sign' layer needs deterministic=True "
                     "(test time) or False (training), in the constructor "
                     "or the call")
  if deterministic:
    return kernel  # test time: the real-valued weights
  rngs = module.rngs if rngs is None else rngs
  if isinstance(rngs, nnx.Rngs):
    key = rngs[RNG_STREAM]()
  elif isinstance(rngs, nnx.RngStream):
    key = rngs()
  else:
    key = rngs
  return _layers.binary_kernel(kernel, _layers.STOCHASTIC, key)


def _quantize_input(module: Any, x: jax.Array) -> jax.Array:
  # pylint: disable-next=protected-access
  q_in = _layers._resolve(module.input_quantizer)
  return x if q_in is None else q_in(x)


class BinaryLinear(nnx.Module):
  """An ``nnx.Linear`` with a binary kernel (and optionally binary inputs).

  .. math:: y = q_{in}(x)\\, W_b + b, \\qquad W_b = \\mathrm{where}(W = 0,
     0, q_k(W))

  Args:
    in_features: number of inputs.
    out_features: number of outputs.
    kernel_quantizer: name in :data:`binary.QUANTIZERS`, a function,
      ``"stochastic_sign"`` or ``None`` (full precision); default
      ``"ste_sign"``.
    input_quantizer: same, for the inputs; ``None`` keeps them real
      (BinaryConnect), ``"ste_sign"`` binarizes them (BNN).
    use_bias: whether to add a real bias.
    kernel_init: latent kernel init (default ``Uniform(-1, 1)``).
    bias_init: bias init (zeros).
    dtype: computation dtype (default: that of the inputs/params).
    param_dtype: dtype of the latent params.
    precision: ``jax.lax`` precision of the matmul.
    deterministic: only read by ``"stochastic_sign"`` (as ``nnx.Dropout``).
    rngs: ``nnx.Rngs``; ``params`` draws the init, ``"quantize"`` (or
      ``default``) the stochastic binarization.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> from flax import nnx
    >>> layer = binary.BinaryLinear(4, 3, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 4))).shape
    (2, 3)
    >>> sorted(nnx.to_pure_dict(nnx.state(layer, nnx.Param)))
    ['bias', 'kernel']
  """

  def __init__(self, in_features: int, out_features: int, *,
               kernel_quantizer: Quantizer = "ste_sign",
               input_quantizer: Quantizer = None,
               use_bias: bool = True,
               kernel_init: Callable[..., jax.Array] = _layers.uniform_init(
                   1.0),
               bias_init: Callable[..., jax.Array] = (
                   nnx.initializers.zeros_init()),
               dtype: Any = None, param_dtype: Any = jnp.float32,
               precision: Any = None, deterministic: bool | None = None,
               rngs: nnx.Rngs):
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_quantizer = kernel_quantizer
    self.input_quantizer = input_quantizer
    self.dtype = dtype
    self.precision = precision
    self.deterministic = deterministic
    self.kernel = nnx.Param(kernel_init(
        rngs.params(), (in_features, out_features), param_dtype))
    self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,),
                                     param_dtype))
                 if use_bias else nnx.data(None))
    self.rngs = _quantize_rngs(kernel_quantizer, rngs)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None,
               rngs: Any = None) -> jax.Array:
    kernel = self.kernel[...]
    bias = None if self.bias is None else self.bias[...]
    x, kernel, bias = nnx.nn.dtypes.promote_dtype(
        (x, kernel, bias), dtype=self.dtype)
    x = _quantize_input(self, x)
    y = jnp.matmul(x, _view(self, kernel, deterministic, rngs),
                   precision=self.precision)
    return y if bias is None else y + bias


class BinaryConv(nnx.Module):
  """An ``nnx.Conv`` (NHWC, kernel ``(*kernel_size, C_in, C_out)``) binarized.

  .. math:: y = q_{in}(x) * W_b + b, \\qquad W_b = \\mathrm{where}(W = 0,
     0, q_k(W))

  Padding is applied after the input quantizer (``"SAME"`` pads with 0,
  not ``+-1``), as in the Linen :class:`binary.BinaryConv`.

  Args:
    in_features: input channels.
    out_features: output channels.
    kernel_size: spatial window, e.g. ``(3, 3)``.
    strides: an int or one per spatial dimension (default 1).
    padding: ``"SAME"``, ``"VALID"`` or a sequence of ``(low, high)``.
    kernel_quantizer, input_quantizer, use_bias, kernel_init, bias_init,
    dtype, param_dtype, precision, deterministic, rngs: as in
      :class:`BinaryLinear`.

  Example:
    >>> import jax.numpy as jnp, binary
    >>> from flax import nnx
    >>> conv = binary.BinaryConvNNX(2, 8, (3, 3), input_quantizer="ste_sign",
    ...                             rngs=nnx.Rngs(0))
    >>> conv(jnp.ones((1, 5, 5, 2))).shape
    (1, 5, 5, 8)
  """

  def __init__(self, in_features: int, out_features: int,
               kernel_size: Sequence[int], *,
               strides: int | Sequence[int] = 1,
               padding: str | Sequence[tuple[int, int]] = "SAME",
               kernel_quantizer: Quantizer = "ste_sign",
               input_quantizer: Quantizer = None,
               use_bias: bool = True,
               kernel_init: Callable[..., jax.Array] = _layers.uniform_init(
                   1.0),
               bias_init: Callable[..., jax.Array] = (
                   nnx.initializers.zeros_init()),
               dtype: Any = None, param_dtype: Any = jnp.float32,
               precision: Any = None, deterministic: bool | None = None,
               rngs: nnx.Rngs):
    kernel_size = tuple(kernel_size)
    n = len(kernel_size)
    if not 1 <= n <= 3:
      raise ValueError(f"1 to 3 spatial dimensions, got {n}")
    self.kernel_size = kernel_size
    self.strides = (((strides,) * n) if isinstance(strides, int)
                    else tuple(strides))
    self.padding = (padding if isinstance(padding, str)
                    else tuple(tuple(p) for p in padding))
    self.kernel_quantizer = kernel_quantizer
    self.input_quantizer = input_quantizer
    self.dtype = dtype
    self.precision = precision
    self.deterministic = deterministic
    self.kernel = nnx.Param(kernel_init(
        rngs.params(), kernel_size + (in_features, out_features),
        param_dtype))
    self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,),
                                     param_dtype))
                 if use_bias else nnx.data(None))
    self.rngs = _quantize_rngs(kernel_quantizer, rngs)

  def __call__(self, x: jax.Array, *, deterministic: bool | None = None,
               rngs: Any = None) -> jax.Array:
    n = len(self.kernel_size)
    if x.ndim != n + 2:
      raise ValueError(f"BinaryConv with a {n}-D kernel needs inputs of "
                       f"rank {n + 2} (batch, *spatial, channels), got "
                       f"shape {x.shape}")
    kernel = self.kernel[...]
    bias = None if self.bias is None else self.bias[...]
    x, kernel, bias = nnx.nn.dtypes.promote_dtype(
        (x, kernel, bias), dtype=self.dtype)
    x = _quantize_input(self, x)
    spatial = "DHW"[-n:]
    dn = jax.lax.conv_dimension_numbers(
        x.shape, kernel.shape,
        ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C"))
    y = jax.lax.conv_general_dilated(
        x, _view(self, kernel, deterministic, rngs), self.strides,
        self.padding, dimension_numbers=dn, precision=self.precision)
    return y if bias is None else y + bias
