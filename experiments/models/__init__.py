"""The model zoo (Flax Linen) and its layer-list description.

Every model is called as ``model.apply(variables, x, train=bool)``
(``train`` is keyword-only and required); x is NHWC float32 for conv nets,
(N, D) or NHWC for MLPs.  Models with BatchNorm keep ``batch_stats``:
train with ``mutable=["batch_stats"]``.  Prunable weights are the params
named ``kernel``.

``get_model(name, num_classes, **kwargs)`` builds a model by name;
``layer_list(model, input_shape)`` describes it in the op set documented in
``experiments/export/_spec.py`` (the export / reference-evaluator
contract; recorded by ``_layers.py``).  ``layer_executor(layers,
variables)`` and ``load_executor(path)`` run a layer list (live, or an
exported ``.sbn`` file) as one jitted JAX function (``_executor.py``).
``export_model(path, model, variables, input_shape=...)`` writes a user's
own model, checked against the evaluator on a batch first
(``_export.py``; also ``experiments.export.export_model``).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments.models import _layers as layers
from experiments.models._binary import BinaryCNN, BinaryMLP, is_binary_kernel
from experiments.models._binary import binary_conv, forward_name
from experiments.models._convnets import Conv2, Conv4, Conv6, ConvNet
from experiments.models._executor import (
    LayerExecutor, layer_executor, load_executor)
from experiments.models._export import export_model
from experiments.models._fbs import FBSCNN, FBSConv, FBSDigitsCNN, uses_fbs
from experiments.models._layers import LayerListError, layer_list
from experiments.models._layers import layer_outputs
from experiments.models._mlp import LeNet300100, MLP
from experiments.models._binary_resnet import BinaryResNet18
from experiments.models._nin import NIN, binary_conv_names
from experiments.models._random import random_variables
from experiments.models._resnet import BasicBlock, ResNet, ResNet20, ResNet56
from experiments.models._segmentation import make_divisible
from experiments.models._segmentation import (
    MobileNetV3Small, MobileNetV3SmallSeg32, UNet, UNetSmall, UNetTiny)
from experiments.models._vgg import VGG, VGG11, VGG16, VGG19, VGG_CFGS
from experiments.models._vanilla import VanillaCNN

__all__ = [
    "MODELS", "get_model", "layer_list", "abstract_variables",
    "LayerListError", "MLP", "LeNet300100", "ConvNet", "Conv2", "Conv4",
    "Conv6", "BasicBlock", "ResNet", "ResNet20", "ResNet56", "VGG", "VGG11",
    "VGG16", "VGG19", "VGG_CFGS", "BinaryMLP", "BinaryCNN",
    "is_binary_kernel", "VanillaCNN", "NIN", "binary_conv_names",
    "UNet", "UNetTiny", "UNetSmall", "MobileNetV3Small",
    "MobileNetV3SmallSeg32", "FBSCNN", "FBSConv", "FBSDigitsCNN", "uses_fbs",
    "LayerExecutor", "layer_executor", "load_executor",
    # A user's own model: the verified export, the recorded intermediates.
    "export_model", "layer_outputs",
    # Random values for every variable (tests, benchmarks).
    "random_variables",
    # Writing a model: `layers` holds the layer-list recording helpers
    # (`record`, `dense`, `conv`, ...), `binary_conv` records a binary conv
    # with its quantizers, `forward_name` names a quantizer's forward,
    # `make_divisible` is MobileNet's channel rounding.
    "layers", "binary_conv", "forward_name", "make_divisible",
]

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "lenet_300_100": LeNet300100,
    "conv2": Conv2,
    "conv4": Conv4,
    "conv6": Conv6,
    "resnet20": ResNet20,
    "resnet56": ResNet56,
    "vgg11": VGG11,
    "vgg16": VGG16,
    "vgg19": VGG19,
    "binary_mlp": BinaryMLP,
    "bnn_cnn": BinaryCNN,
    "vanilla_cnn": VanillaCNN,
    "nin": NIN,
    "binary_resnet18": BinaryResNet18,
    "unet_tiny": UNetTiny,
    "unet_small": UNetSmall,
    "mobilenet_v3_small_seg": MobileNetV3Small,
    "mobilenet_v3_small_seg32": MobileNetV3SmallSeg32,
    "fbs_cnn": FBSCNN,
    "fbs_digits_cnn": FBSDigitsCNN,
}


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """``MODELS[name](num_classes=num_classes, **kwargs)``."""
  try:
    cls = MODELS[name]
  except KeyError:
    raise ValueError(f"unknown model {name!r}; choose one of: "
                     f"{', '.join(MODELS)}") from None
  return cls(num_classes=num_classes, **kwargs)


def abstract_variables(model: nn.Module, input_shape: Sequence[int]):
  """Shapes/dtypes (``jax.ShapeDtypeStruct``) of ``model.init``'s variables
  for per-example ``input_shape`` (no batch axis); no FLOPs, no memory."""
  x = jax.ShapeDtypeStruct((1, *tuple(input_shape)), jnp.float32)
  return jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)
