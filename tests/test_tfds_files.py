"""The TFDS path on real ArrayRecord files (no `tfds.testing.mock_data`).

A session fixture prepares a small real TFDS `mnist` in a tmp data_dir with
TFDS's own writer (`tests/_tfds_files.py`: TFDS's MNIST builder,
`file_format='array_record'`, fed 480 train and 160 test images of
`mnist5k`; no TensorFlow, no download). Then `experiments.data` reads it as
it reads a user's prepared MNIST or CIFAR-10: `tfds.data_source` + grain.
The tests check the files are real, that the loader's batches equal the
in-memory arrays of the same images batch by batch, and that a short run
trains on them. About 30 s on a loaded 2-core machine, most of it the run.
"""
import glob
import importlib.util
import json
import os
import socket
import sys
from unittest import mock

import numpy as np
import pytest

from experiments import data
from tests import _tfds_files

NUM_VALIDATION = 96  # the tail of the 480-image TFDS train split


def _no_network(*args, **kwargs):
  raise OSError('network is blocked while the test dataset is written')


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('tfds')
  with mock.patch.object(socket, 'getaddrinfo', _no_network), \
      mock.patch.object(socket.socket, 'connect', _no_network):
    _tfds_files.write_mnist(path)  # Nothing is downloaded.
  return str(path)


@pytest.fixture(scope='module')
def reference():
  """The same images in memory, cut as the loader cuts the TFDS splits."""
  arrays = _tfds_files.mnist5k_uint8()
  split_at = _tfds_files.NUM_TRAIN - NUM_VALIDATION
  image, label = arrays['train']
  test_image, test_label = arrays['test']
  scale = lambda x: x.astype(np.float32) * np.float32(1 / 255)
  return {
      'train': data.ArraySource(scale(image[:split_at]), label[:split_at]),
      'validation': data.ArraySource(scale(image[split_at:]),
                                     label[split_at:]),
      'test': data.ArraySource(scale(test_image), test_label),
  }


def _assert_no_mock():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  # What tfds.testing.mock_data patches for tfds.data_source.
  assert not isinstance(tfds.core.DatasetBuilder.as_data_source,
                        mock.NonCallableMock)
  assert isinstance(array_record_data_source.ArrayRecordDataSource, type)


def test_files_are_real_array_record_files(data_dir, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  _assert_no_mock()
  folder = os.path.join(data_dir, 'mnist', '3.0.1')
  with open(os.path.join(folder, 'dataset_info.json')) as f:
    info = json.load(f)
  assert info['name'] == 'mnist' and info['fileFormat'] == 'array_record'
  for split, n in (('train', _tfds_files.NUM_TRAIN),
                   ('test', _tfds_files.NUM_TEST)):
    files = glob.glob(os.path.join(folder, f'mnist-{split}.array_record-*'))
    assert len(files) == 1 and os.path.getsize(files[0]) > 0
    # The array_record package itself reads the file: n serialized examples.
    reader = array_record_module.ArrayRecordReader(files[0])
    assert reader.num_records() == n
    reader.close()

  # The loader opens the splits with the real tfds.data_source, which reads
  # these files through the real ArrayRecord reader.
  opened = []
  real_data_source = tfds.data_source

  def spy(*args, **kwargs):
    source = real_data_source(*args, **kwargs)
    opened.append((args, kwargs, source))
    return source

  monkeypatch.setattr(tfds, 'data_source', spy)
  ds = data.get_dataset('mnist', data_dir=data_dir,
                        num_validation=NUM_VALIDATION)
  assert [(a, k['split'], k['data_dir']) for a, k, _ in opened] == [
      (('mnist',), 'train', data_dir), (('mnist',), 'test', data_dir)]
  for _, _, source in opened:
    assert type(source).__name__ == 'ArrayRecordDataSource'
    assert isinstance(source.data_source,
                      array_record_data_source.ArrayRecordDataSource)
  assert {k: len(v) for k, v in ds.splits.items()} == {
      'train': _tfds_files.NUM_TRAIN - NUM_VALIDATION,
      'validation': NUM_VALIDATION, 'test': _tfds_files.NUM_TEST}
  assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
  if importlib.util.find_spec('tensorflow') is None:
    assert 'tensorflow' not in sys.modules  # Neither writing nor reading.


def test_batches_equal_the_in_memory_arrays(data_dir, reference):
  _assert_no_mock()
  ds = data.get_dataset('mnist', data_dir=data_dir,
                        num_validation=NUM_VALIDATION)
  # Training: steps across an epoch boundary (384 // 32 = 12 per epoch).
  for step in (0, 1, 11, 12, 25):
    got = data.train_batch(ds.splits['train'], step, batch_size=32, seed=7)
    want = data.train_batch(reference['train'], step, batch_size=32, seed=7)
    assert got['image'].dtype == np.float32 and got['label'].dtype == np.int32
    np.testing.assert_array_equal(got['image'], want['image'])
    np.testing.assert_array_equal(got['label'], want['label'])
  # Evaluation: every batch, the padded last one included.
  for split in ('validation', 'test'):
    got = list(data.eval_batches(ds.splits[split], batch_size=50))
    want = list(data.eval_batches(reference[split], batch_size=50))
    assert len(got) == len(want) == -(-len(reference[split]) // 50)
    for g, w in zip(got, want):
      for key in ('image', 'label', 'weight'):
        np.testing.assert_array_equal(g[key], w[key])
  # standardize=True: (x - 0.1307) / 0.3081 of the same pixels.
  z = data.get_dataset('mnist', data_dir=data_dir,
                       num_validation=NUM_VALIDATION, standardize=True)
  got = data.train_batch(z.splits['train'], 3, batch_size=32, seed=7)
  want = data.train_batch(reference['train'], 3, batch_size=32, seed=7)
  np.testing.assert_allclose(got['image'], (want['image'] - 0.1307) / 0.3081,
                             rtol=1e-5, atol=1e-5)


def test_a_short_run_trains_on_the_files(data_dir, tmp_path):
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  _assert_no_mock()
  config = helpers.small_config(**{
      'dataset': 'mnist', 'data_dir': data_dir, 'num_steps': 48,
      'batch_size': 32, 'log_every': 24, 'eval_every': 24,
      'checkpoint_every': 48, 'pruning.method': 'none'})
  config.dataset_kwargs = {'num_validation': NUM_VALIDATION}
  workdir = str(tmp_path / 'run')
  summary = drivers.run(config, workdir)
  assert os.path.exists(os.path.join(workdir, 'summary.json'))
  assert summary['dataset'] == 'mnist'
  accuracy = summary['final']['test_accuracy']
  assert accuracy > 0.4, accuracy  # chance: 0.1
