"""Exported file sizes: binary / float32 (target <= 1/30) and 95%-sparse /
dense (target <= 1/8).

  python -m bench.file_size

Each model is exported twice with ``experiments.export.write_model`` from
random variables (sizes do not depend on the values, except through the
mask): the binary model against its float twin (``binarize=False``: the
same architecture, every kernel float32), and a 95%-pruned model (a random
mask keeping 5% of every kernel, stored as CSR) against the same model
unpruned.  Reported: whole-file bytes and their ratio, and the ratio of the
kernel tensors alone (the rest is BatchNorm statistics, biases, header).
Binary models are exported as ``launch.export`` does by default: BatchNorms
read only through a sign stored as thresholds (``bn_threshold=True``) and
BatchNorms after a binary-weight layer with real inputs folded into it as
one scale and shift (``bn_fold=True``; the float twin has neither sign
readers nor binary layers, so nothing changes there), and once more with
four vectors per BatchNorm for comparison.  The BinaryConnect MLP is the
``binaryconnect_mnist`` config's (3 x 2048, ReLU, every layer binary,
biases) with the deterministic ``ste_sign`` (the stochastic one keeps real
weights at test time).
"""
import os
import sys
import tempfile

import jax
import numpy as np

from experiments import export
from experiments import models


def _variables(model, input_shape, density=1.0, seed=0):
  rng = np.random.default_rng(seed)
  abstract = models.abstract_variables(model, input_shape)
  variables = jax.tree.map(
      lambda a: rng.uniform(0.5, 1.5, a.shape).astype(np.float32), abstract)
  mask = jax.tree_util.tree_map_with_path(
      lambda p, v: (rng.random(v.shape) < density)
      if p[-1].key == "kernel" and v.ndim >= 2 else None,
      variables["params"])
  variables["params"] = jax.tree.map(
      lambda v, m: v if m is None else v * m, variables["params"], mask,
      is_leaf=lambda x: x is None)
  return variables, (mask if density < 1 else None)


def _size(model, input_shape, density=1.0, bn_threshold=False,
          bn_fold=False):
  """(file bytes, kernel bytes) of the exported model."""
  variables, mask = _variables(model, input_shape, density)
  layers = models.layer_list(model, input_shape)
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "m.sbn")
    size = export.write_model(path, layers, variables, mask,
                              input_shape=input_shape,
                              bn_threshold=bn_threshold, bn_fold=bn_fold)
    header, tensors = export.read(path)
  kernel_roles = ("kernel", "mask", "kernel_sign", "kernel_nonzero",
                  "kernel_data", "kernel_indices", "kernel_indptr")
  kernels = sum(tensors[t].nbytes for e in header["layers"]
                for r, t in e["params"].items() if r in kernel_roles)
  return size, kernels


def _row(name, small, big, target):
  ratio, kratio = small[0] / big[0], small[1] / big[1]
  ok = "meets" if ratio <= target else "MISSES"
  print(f"  {name}: {small[0]:,} / {big[0]:,} bytes = 1/{1 / ratio:.1f} "
        f"({ok} <= 1/{1 / target:.0f}); kernels alone 1/{1 / kratio:.1f}")
  return ratio


def main(argv):
  del argv  # unused
  print("binary / float32 (the float twin: binarize=False):")
  bnn_mlp = dict(hidden=(1024, 1024, 1024), kernel_quantizer="ste_sign",
                 input_quantizer="ste_sign", activation="hard_tanh",
                 binary_first=True, binary_last=True, use_bias=False)
  mlp = models.get_model("binary_mlp", 10, **bnn_mlp)
  mlp_f = models.get_model("binary_mlp", 10, binarize=False, **bnn_mlp)
  _row("BNN MLP 784-3x1024-10 (MNIST)",
       _size(mlp, (28, 28, 1), bn_threshold=True, bn_fold=True),
       _size(mlp_f, (28, 28, 1)), 1 / 30)
  _row("  the same, BatchNorm as four vectors (--nobn_threshold)",
       _size(mlp, (28, 28, 1)), _size(mlp_f, (28, 28, 1)), 1 / 30)
  bnn_cnn = dict(kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                 activation="hard_tanh", binary_first=True, binary_last=True)
  cnn = models.get_model("bnn_cnn", 10, **bnn_cnn)
  cnn_f = models.get_model("bnn_cnn", 10, binarize=False, **bnn_cnn)
  _row("BNN CNN (CIFAR-10, 32x32x3)",
       _size(cnn, (32, 32, 3), bn_threshold=True, bn_fold=True),
       _size(cnn_f, (32, 32, 3)), 1 / 30)
  _row("  the same, BatchNorm as four vectors (--nobn_threshold)",
       _size(cnn, (32, 32, 3)), _size(cnn_f, (32, 32, 3)), 1 / 30)
  bc_mlp = dict(hidden=(2048, 2048, 2048), kernel_quantizer="ste_sign",
                activation="relu", binary_first=True, binary_last=True,
                use_bias=True)
  bc = models.get_model("binary_mlp", 10, **bc_mlp)
  bc_f = models.get_model("binary_mlp", 10, binarize=False, **bc_mlp)
  bc_float = _size(bc_f, (28, 28, 1))
  _row("BinaryConnect MLP 3x2048 (MNIST)",
       _size(bc, (28, 28, 1), bn_threshold=True, bn_fold=True), bc_float,
       1 / 30)
  _row("  the same, bias + BatchNorm as five vectors (--nobn_fold)",
       _size(bc, (28, 28, 1), bn_threshold=True), bc_float, 1 / 30)
  print("95%-sparse / dense (random mask keeping 5% of every kernel):")
  lenet = models.get_model("lenet_300_100", 10)
  _row("LeNet-300-100 (MNIST)", _size(lenet, (28, 28, 1), 0.05),
       _size(lenet, (28, 28, 1)), 1 / 8)
  resnet = models.get_model("resnet20", 10)
  _row("ResNet-20 (CIFAR-10)", _size(resnet, (32, 32, 3), 0.05),
       _size(resnet, (32, 32, 3)), 1 / 8)


if __name__ == "__main__":
  main(sys.argv)
