"""The JAX executor of a layer list (experiments/models/_executor.py).

For zoo models: its logits equal the Flax model's (live list and
variables) and the NumPy evaluator's (an exported file, binary encodings,
BatchNorm thresholds and folding included); one trace per input shape; an
unknown op is a one-line error.
"""

import functools

import jax
import numpy as np
import pytest

from experiments import export
from experiments import models
from tests import _layer_list_ref as ref
from tests.test_evaluator import all_ops_model

ZOO = {  # name: (model, per-example input shape)
    "mlp": (lambda: models.get_model("mlp", 5, hidden=(16,)), (8, 8, 1)),
    "convnet": (lambda: models.ConvNet(num_classes=5, convs=(8, "M", 16),
                                       fc=(16,)), (8, 8, 3)),
    "resnet20": (lambda: models.get_model("resnet20", 5, width=4),
                 (8, 8, 3)),
    "vgg": (lambda: models.VGG(num_classes=5, cfg=(8, "M", 16, "M")),
            (8, 8, 3)),
    "bnn_mlp": (lambda: models.get_model(
        "binary_mlp", 5, hidden=(32, 32), input_quantizer="ste_sign",
        activation="hard_tanh"), (8, 8, 1)),
    "nin": (lambda: models.get_model("nin", 5, width=0.125), (8, 8, 3)),
    "unet": (lambda: models.get_model("unet_tiny", 3, widths=(4, 8)),
             (8, 8, 3)),
    "fbs": (lambda: models.get_model("fbs_digits_cnn", 5), (8, 8, 1)),
}


random_variables = models.random_variables  # the shared test values


def _close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape
  scale = max(1.0, float(np.abs(want).max()))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_live_and_exported(name, tmp_path):
  make, shape = ZOO[name]
  model = make()
  variables = random_variables(model, shape)
  x = np.random.default_rng(1).standard_normal((3, *shape)).astype(
      np.float32)
  layers = models.layer_list(model, shape)

  run = models.layer_executor(layers, variables, input_shape=shape)
  flax = jax.jit(functools.partial(model.apply, train=False))
  _close(run(x), flax(variables, x))

  path = str(tmp_path / "m.sbn")
  export.write_model(path, layers, jax.tree_util.tree_map(np.asarray,
                                                          variables),
                     input_shape=shape, bn_threshold=True, bn_fold=True)
  from_file = models.load_executor(path)
  _close(from_file(x), export.Model.load(path, use_numba=False)(x))


@pytest.mark.parametrize("kq,iq,density", [
    (None, None, 1.0), (None, None, 0.05), ("sign", "sign", 0.5),
    ("magnitude_aware_sign", "sign", 1.0), ("sign", "heaviside", 0.5)])
def test_every_op_of_a_file(tmp_path, kq, iq, density):
  """The evaluator tests' list of every op (float, CSR and bit-packed
  kernels): the executor of the list and of its file agree with the
  reference interpreter and the evaluator."""
  layers, variables, mask = all_ops_model(kq=kq, iq=iq, density=density)
  x = np.random.default_rng(5).standard_normal((3, 8, 8, 3)).astype(
      np.float32)
  want = ref.run(layers, variables, x)
  _close(models.layer_executor(layers, variables)(x), want)
  path = str(tmp_path / "m.sbn")
  export.write_model(path, layers, variables, mask, input_shape=(8, 8, 3))
  _close(models.load_executor(path)(x),
         export.Model.load(path, use_numba=False)(x))


def test_jit_traces_once_per_input_shape():
  make, shape = ZOO["convnet"]
  model = make()
  run = models.layer_executor(models.layer_list(model, shape),
                              random_variables(model, shape), input_shape=shape)
  x = np.ones((2, *shape), np.float32)
  a = run(x)
  b = run(x + 1)
  assert run.traces == 1 and not np.array_equal(a, b)
  run(np.ones((4, *shape), np.float32))
  assert run.traces == 2
  with pytest.raises(ValueError, match="input of shape"):
    run(np.ones((2, 4, 4, 3), np.float32))


def test_unknown_op_is_a_one_line_error():
  layers = [{"name": "s", "op": "softmax", "inputs": ["input"],
             "params": {}, "shape": [3]}]
  with pytest.raises(ValueError, match="unknown op 'softmax'") as e:
    models.layer_executor(layers, {})
  assert len(str(e.value).splitlines()) == 1
