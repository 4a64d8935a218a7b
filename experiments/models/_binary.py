r"""BinaryConnect / BNN models: the MLP and the VGG-like CIFAR-10 CNN.

Both share one layer recipe, for layer l with latent kernel W_l:

.. math:: h_l = a\big(\mathrm{BN}_l(q_{in}(h_{l-1}) * W_{b,l} + b_l)\big),
   \qquad W_{b,l} = \mathrm{where}(W_l = 0, 0, q_k(W_l))

(``*`` a matmul or a 3x3 'SAME' convolution, followed in the CNN by a max
pool before BN where the architecture has one).  Every weight layer is
followed by BatchNorm, the output layer included (as in the official
BinaryConnect and BinaryNet code); hidden layers then apply ``activation``
(BinaryConnect: ReLU; BNN: ``"hard_tanh"``, whose sign is taken by the next
layer's input quantizer, so the forward is sign(x) and the backward
1{|x| <= 1}, BNN's ``binary_tanh_unit``).

A quantizer field of ``None``, ``"identity"``, ``"none"`` or ``""`` means
full precision (the strings are for command lines).

A layer is *binary* when ``binarize`` is True and it is a hidden layer, or
the first layer with ``binary_first``, or the last with ``binary_last``.  A
binary layer is a :class:`binary.BinaryDense` / :class:`binary.BinaryConv`
with ``kernel_quantizer`` and, except for the first layer (whose input, the
image, is never quantized), ``input_quantizer``; its latent kernel is
initialised ``Uniform(-1, 1)`` (BinaryConnect, ``H = 1``).  Every other
layer is a plain real ``nn.Dense`` / ``nn.Conv`` (no quantizer on weights
or inputs) with Glorot-uniform init (Lasagne's default).  ``binarize=False``
is the float twin: the same architecture with every layer real.

``kernel_quantizer="stochastic_sign"`` is stochastic BinaryConnect: a
Bernoulli draw from the ``"quantize"`` RNG stream in training
(``model.apply(..., train=True, rngs={"quantize": key})``) and the real
weights at test time.

Module names: ``BinaryDense_<i>`` / ``Dense_<i>`` (``BinaryConv_<i>`` /
``Conv_<i>``) by the layer's index among the dense (conv) layers, the
prefix saying whether it is binary, and ``BatchNorm_<k>`` for the k-th
weight layer overall.  :func:`is_binary_kernel` selects the binary kernels
(for weight clipping, the Glorot LR scale and flip ratios).

References:
  Courbariaux, Bengio & David, "BinaryConnect", NeurIPS 2015 (code
  ``MatthieuCourbariaux/BinaryConnect``: ``mnist.py``, ``cifar10.py``).
  Hubara et al., "Binarized Neural Networks", NeurIPS 2016 (code
  ``MatthieuCourbariaux/BinaryNet``, ``Train-time/``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn

import binary
from experiments.models import _layers as L

Quantizer = Optional[Union[str, Callable]]

glorot_uniform = nn.initializers.glorot_uniform()

# Quantizer (training function) -> forward function named in the layer list.
_SIGN = ("ste_sign", "ste_identity_sign", "approx_sign", "swish_sign")
_FORWARD = {None: None, "identity": None, "stochastic_sign": None,
            **{n: "sign" for n in _SIGN},
            "magnitude_aware_sign": "magnitude_aware_sign",
            "ste_heaviside": "heaviside"}


def forward_name(quantizer: Quantizer, role: str) -> Optional[str]:
  """The layer-list name of a quantizer's forward function.

  Args:
    quantizer: a name (``"ste_sign"``, ...), a function of :mod:`binary`
      (possibly a ``functools.partial`` with options), or ``None``.
    role: ``"kernel"`` or ``"input"``.

  Returns:
    ``None``, ``"sign"``, ``"magnitude_aware_sign"`` (kernel) or
    ``"heaviside"`` (input); stochastic_sign and identity give ``None``
    (their test-time forward is the identity).

  Raises:
    LayerListError: a quantizer the layer list cannot describe in ``role``.

  Example:
    >>> forward_name("swish_sign", "kernel"), forward_name(None, "input")
    ('sign', None)
  """
  name = none_if_identity(quantizer)
  if callable(quantizer):
    fn = quantizer.func if isinstance(quantizer, functools.partial) else (
        quantizer)
    name = next((n for n, f in binary.QUANTIZERS.items() if f is fn),
                "stochastic_sign" if fn is binary.stochastic_sign else fn)
  allowed = L.KERNEL_QUANTIZERS if role == "kernel" else L.INPUT_QUANTIZERS
  if not isinstance(name, (str, type(None))) or name not in _FORWARD or \
      _FORWARD[name] not in allowed or (
          role == "input" and name == "stochastic_sign"):
    raise L.LayerListError(
        f"the layer list cannot describe {role} quantizer {quantizer!r}")
  return _FORWARD[name]


def none_if_identity(quantizer: Quantizer) -> Quantizer:
  """``"identity"``, ``"none"`` and ``""`` (command-line spellings) -> None."""
  if isinstance(quantizer, str) and quantizer.lower() in ("identity",
                                                          "none", ""):
    return None
  return quantizer


def is_binary_kernel(path: Sequence[str], leaf: Any) -> bool:
  """Whether a params leaf is the kernel of a binary layer of these models.

  Same signature as :func:`sparsity.default_prunable`, so it can be passed
  as ``include`` to :func:`binary.clip_params` / :func:`binary.scale_by_glorot`
  or as ``quantized`` to :func:`binary.flip_ratio`.

  Example:
    >>> import numpy as np
    >>> is_binary_kernel(("BinaryDense_1", "kernel"), np.zeros((3, 4)))
    True
    >>> is_binary_kernel(("Dense_0", "kernel"), np.zeros((3, 4)))
    False
  """
  path = tuple(str(p) for p in path)
  return (bool(path) and path[-1] == "kernel" and len(path) >= 2
          and path[-2].startswith("Binary") and len(getattr(leaf, "shape",
                                                            ())) >= 2)


def _record_binary(op: str, module: nn.Module, x, y, **attrs):
  """Records a BinaryDense/BinaryConv call ``y = module(x)``."""
  if not L.recording_active():
    return y
  path = L.module_path(module)
  params = {"kernel": ["params", *path, "kernel"]}
  if module.use_bias:
    params["bias"] = ["params", *path, "bias"]
  return L.record(
      op, [x], y, params=params, name="/".join(path),
      kernel_quantizer=forward_name(module.kernel_quantizer, "kernel"),
      input_quantizer=forward_name(module.input_quantizer, "input"), **attrs)


def binary_dense(module: binary.BinaryDense, x, *, train: bool):
  """``module(x)`` for a :class:`binary.BinaryDense`, recorded as ``dense``
  with its ``kernel_quantizer`` / ``input_quantizer``."""
  y = module(x, deterministic=not train)
  return _record_binary("dense", module, x, y)


def binary_conv(module: binary.BinaryConv, x, *, train: bool):
  """``module(x)`` for a 2-D :class:`binary.BinaryConv` on NHWC x, recorded
  as ``conv`` with its quantizers."""
  y = module(x, deterministic=not train)
  if not L.recording_active():
    return y
  if x.ndim != 4:
    raise L.LayerListError(f"binary_conv() needs NHWC input, got {x.shape}")
  ks = [int(k) for k in module.kernel_size]
  strides = L.pairs(module.strides, 2, "strides")
  padding = L.explicit_padding(module.padding, x.shape[1:3], ks, strides,
                                "conv")
  return _record_binary("conv", module, x, y, kernel_size=ks,
                        strides=strides, padding=padding,
                        feature_group_count=1)


class _BinaryRecipe(nn.Module):
  """Fields and the layer recipe shared by both models (see module doc)."""
  num_classes: int
  kernel_quantizer: Quantizer = "ste_sign"
  input_quantizer: Quantizer = None
  binarize: bool = True
  binary_first: bool = False
  binary_last: bool = False
  activation: Optional[str] = "relu"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-4
  use_bias: bool = True

  def _quantizers(self, first: bool, last: bool):
    """(kernel, input) quantizers of a layer; (None, None) = real layer."""
    binary_layer = self.binarize and (self.binary_first or not first) and (
        self.binary_last or not last)
    if not binary_layer:
      return None, None
    return (none_if_identity(self.kernel_quantizer),
            None if first else none_if_identity(self.input_quantizer))

  def _weight_layer(self, x, kind: str, index: int, features: int, *,
                    first: bool, last: bool, train: bool):
    kq, iq = self._quantizers(first, last)
    init = glorot_uniform if kq is None else binary.uniform_init(1.0)
    if kq is None and iq is None:
      if kind == "dense":
        return L.dense(nn.Dense(features, use_bias=self.use_bias,
                                kernel_init=init, name=f"Dense_{index}"), x)
      return L.conv(nn.Conv(features, (3, 3), padding="SAME",
                            use_bias=self.use_bias, kernel_init=init,
                            name=f"Conv_{index}"), x)
    if kind == "dense":
      return binary_dense(binary.BinaryDense(
          features, kernel_quantizer=kq, input_quantizer=iq,
          use_bias=self.use_bias, kernel_init=init,
          name=f"BinaryDense_{index}"), x, train=train)
    return binary_conv(binary.BinaryConv(
        features, (3, 3), padding="SAME", kernel_quantizer=kq,
        input_quantizer=iq, use_bias=self.use_bias, kernel_init=init,
        name=f"BinaryConv_{index}"), x, train=train)

  def _batchnorm(self, x, k: int, train: bool):
    return L.batchnorm(nn.BatchNorm(use_running_average=not train,
                                    momentum=self.bn_momentum,
                                    epsilon=self.bn_epsilon,
                                    name=f"BatchNorm_{k}"), x)

  def _activation(self, x):
    return x if self.activation is None else L.activation(x, self.activation)


class BinaryMLP(_BinaryRecipe):
  """BinaryConnect / BNN MLP: (Dense -> BN -> activation) per hidden width,
  then Dense(num_classes) -> BN (the logits).

  Inputs (N, D) or NHWC (flattened first, C order).  Defaults: 3 x 1024,
  BinaryConnect (``kernel_quantizer="ste_sign"``, real inputs, ReLU), first
  and last layers real; the papers' configs set ``binary_first`` and
  ``binary_last``.  BNN: ``input_quantizer="ste_sign"``,
  ``activation="hard_tanh"``.  ``bn_momentum`` is Flax's (1 - Lasagne's
  alpha: BinaryConnect MNIST alpha .15 -> 0.85, BNN .1 -> 0.9).

  ``dropout_input`` / ``dropout_hidden`` (BNN MNIST: 0.2 / 0.5) drop the
  input of the first / of every later dense layer in training (needs
  ``rngs={"dropout": key}``); the identity at test time.

  Kernel weights with 784 inputs, 3 x 1024, 10 classes: 784*1024 +
  2*1024*1024 + 1024*10 = 2,910,208.
  """
  hidden: Sequence[int] = (1024, 1024, 1024)
  dropout_input: float = 0.0
  dropout_hidden: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    if x.ndim > 2:
      x = L.flatten(x)
    widths = (*self.hidden, self.num_classes)
    for i, features in enumerate(widths):
      rate = self.dropout_input if i == 0 else self.dropout_hidden
      if rate:
        x = nn.Dropout(rate, deterministic=not train)(x)
      last = i == len(widths) - 1
      x = self._weight_layer(x, "dense", i, features, first=i == 0,
                             last=last, train=train)
      x = self._batchnorm(x, i, train)
      if not last:
        x = self._activation(x)
    return x


# "M" = 2x2 max pool (stride 2) after the preceding conv, before its BN.
BNN_CNN_CONVS = (128, 128, "M", 256, 256, "M", 512, 512, "M")
BNN_CNN_FC = (1024, 1024)


class BinaryCNN(_BinaryRecipe):
  """The VGG-like CNN of BinaryConnect / BNN on CIFAR-10.

  2x128C3 - MP2 - 2x256C3 - MP2 - 2x512C3 - MP2 - 1024FC - 1024FC -
  num_classes: 3x3 'SAME' convolutions, each followed by (its max pool,
  then) BN and the activation; the FC layers by BN and the activation; the
  output layer by BN only.  ``width`` scales every conv and hidden FC width
  (``max(1, round(c * width))``), for tiny test models.

  Kernel weights at width 1 with 10 classes on 32x32x3: 4,574,592 conv +
  8,388,608 + 1,048,576 + 10,240 dense = 14,022,016.
  """
  width: float = 1.0
  convs: Sequence[Union[int, str]] = BNN_CNN_CONVS
  fc: Sequence[int] = BNN_CNN_FC

  def _scaled(self, c) -> int:
    return max(1, int(round(int(c) * self.width)))

  @nn.compact
  def __call__(self, x, *, train: bool):
    convs = [c for c in self.convs if c != "M"]
    pools = [i + 1 < len(self.convs) and self.convs[i + 1] == "M"
             for i, c in enumerate(self.convs) if c != "M"]
    widths = [self._scaled(c) for c in self.fc] + [self.num_classes]
    n_layers = len(convs) + len(widths)
    k = 0
    for j, (c, pool) in enumerate(zip(convs, pools)):
      x = self._weight_layer(x, "conv", j, self._scaled(c), first=k == 0,
                             last=False, train=train)
      if pool:
        x = L.max_pool(x, (2, 2), (2, 2))
      x = self._activation(self._batchnorm(x, k, train))
      k += 1
    x = L.flatten(x)
    for j, features in enumerate(widths):
      last = k == n_layers - 1
      x = self._weight_layer(x, "dense", j, features, first=k == 0,
                             last=last, train=train)
      x = self._batchnorm(x, k, train)
      if not last:
        x = self._activation(x)
      k += 1
    return x
