"""Tests for experiments.data and launch.prepare_data. No network, no TF."""
import doctest
import hashlib
import importlib.util
import inspect
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from experiments import data
from launch import prepare_data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# sha256 of the digits test indices: changing the split changes every digits
# result ever reported, so it must be a deliberate act.
_PINNED_TEST_HASH = '533f6078fcfb'


def _indexed_source(n, shape=(2,)):
  """An in-memory source whose label is the example's index."""
  image = np.arange(n * int(np.prod(shape)), dtype=np.float32).reshape(
      n, *shape)
  return data.ArraySource(image, np.arange(n))


class _CountingRecords:
  """A random-access record list that counts reads."""

  def __init__(self, n):
    self.n = n
    self.reads = []

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    self.reads.append(int(i))
    return {'image': np.full((2,), i, np.uint8), 'label': np.int64(i)}


def _identity_transform(record):
  return {'image': np.asarray(record['image'], np.float32),
          'label': np.int32(record['label'])}


# ------------------------------------------------------------------ registry


def test_unknown_dataset_lists_the_choices():
  with pytest.raises(ValueError, match=r"unknown dataset 'nope'; choose one "
                     r'of: digits, mnist5k, synthetic, mnist,'):
    data.get_dataset('nope')
  assert set(data.DATASETS) == {'digits', 'mnist5k', 'synthetic', 'mnist',
                                'fashion_mnist', 'cifar10', 'cifar100',
                                'shapes', 'oxford_iiit_pet'}


def test_docstring_examples_run():
  # The modules that define the public batching and registry functions.
  for module in (inspect.getmodule(data.train_batch),
                 inspect.getmodule(data.get_dataset)):
    failed, attempted = doctest.testmod(module)
    assert attempted > 0 and failed == 0, module.__name__


# -------------------------------------------------------------------- digits


def test_digits_sizes_shapes_and_range():
  ds = data.get_dataset('digits')
  assert ds.name == 'digits'
  assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
  assert {k: len(v) for k, v in ds.splits.items()} == {
      'train': 1257, 'validation': 180, 'test': 360}
  for source in ds.splits.values():
    arrays = source.arrays
    assert arrays['image'].dtype == np.float32
    assert arrays['image'].shape == (len(source), 8, 8, 1)
    assert arrays['label'].dtype == np.int32
    assert arrays['image'].min() == 0.0 and arrays['image'].max() == 1.0
    assert set(np.unique(arrays['label'])) == set(range(10))
    example = source[3]
    assert example['image'].shape == (8, 8, 1)
    assert example['image'].dtype == np.float32
    assert example['label'].dtype == np.int32 and example['label'].shape == ()
    with pytest.raises(ValueError):  # The data are read-only.
      arrays['image'][0, 0, 0, 0] = 5.0


def test_digits_split_is_fixed_disjoint_stratified_and_seed_independent():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  train, validation, test = data.digits_split_indices()
  everything = np.concatenate([train, validation, test])
  np.testing.assert_array_equal(np.sort(everything), np.arange(1797))
  # Pinned: a change here changes every digits result ever reported.
  assert hashlib.sha256(test.astype(np.int64).tobytes()).hexdigest()[:12] == (
      _PINNED_TEST_HASH)

  raw = datasets.load_digits()
  ds = data.get_dataset('digits', seed=0)
  for name, idx in (('train', train), ('validation', validation),
                    ('test', test)):
    np.testing.assert_array_equal(ds.splits[name].arrays['label'],
                                  raw.target[idx])
    np.testing.assert_allclose(ds.splits[name].arrays['image'][..., 0],
                               raw.images[idx] / 16.0)
    # Stratified: each class in its overall proportion, to within one.
    expected = np.bincount(raw.target) * len(idx) / 1797
    assert np.all(np.abs(np.bincount(raw.target[idx]) - expected) <= 1.0)

  other = data.get_dataset('digits', seed=123)
  for name in ('train', 'validation', 'test'):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(ds.splits[name].arrays[key],
                                    other.splits[name].arrays[key])


# ----------------------------------------------------------------- synthetic


def test_synthetic_shapes_and_sizes():
  ds = data.get_dataset('synthetic', input_shape=(4, 4, 3), num_classes=5,
                        num_train=100, num_validation=20, num_test=30)
  assert ds.input_shape == (4, 4, 3) and ds.num_classes == 5
  assert {k: len(v) for k, v in ds.splits.items()} == {
      'train': 100, 'validation': 20, 'test': 30}
  arrays = ds.splits['train'].arrays
  assert arrays['image'].shape == (100, 4, 4, 3)
  assert arrays['image'].dtype == np.float32
  assert arrays['label'].dtype == np.int32
  assert arrays['label'].min() >= 0 and arrays['label'].max() < 5


def test_synthetic_is_deterministic_by_seed():
  a = data.get_dataset('synthetic', seed=3, num_train=64)
  b = data.get_dataset('synthetic', seed=3, num_train=64)
  c = data.get_dataset('synthetic', seed=4, num_train=64)
  for split in ('train', 'validation', 'test'):
    np.testing.assert_array_equal(a.splits[split].arrays['image'],
                                  b.splits[split].arrays['image'])
    assert not np.array_equal(a.splits[split].arrays['image'],
                              c.splits[split].arrays['image'])
  # The test set does not depend on the size of the train set.
  d = data.get_dataset('synthetic', seed=3, num_train=32)
  np.testing.assert_array_equal(a.splits['test'].arrays['image'],
                                d.splits['test'].arrays['image'])


def test_synthetic_is_learnable():
  ds = data.get_dataset('synthetic', seed=0)
  train, test = ds.splits['train'].arrays, ds.splits['test'].arrays
  flat = lambda x: x.reshape(x.shape[0], -1)
  means = np.stack([flat(train['image'])[train['label'] == c].mean(0)
                    for c in range(ds.num_classes)])
  dist = ((flat(test['image'])[:, None, :] - means[None]) ** 2).sum(-1)
  accuracy = np.mean(dist.argmin(1) == test['label'])
  assert accuracy > 0.9, accuracy


# --------------------------------------------------------------- train_batch


def test_train_batch_is_deterministic_and_seeded():
  source = _indexed_source(50)
  a = data.train_batch(source, 7, batch_size=8, seed=1)
  b = data.train_batch(source, 7, batch_size=8, seed=1)
  c = data.train_batch(source, 7, batch_size=8, seed=2)
  np.testing.assert_array_equal(a['label'], b['label'])
  np.testing.assert_array_equal(a['image'], b['image'])
  assert not np.array_equal(a['label'], c['label'])
  assert a['image'].shape == (8, 2) and a['image'].dtype == np.float32
  assert a['label'].dtype == np.int32
  np.testing.assert_array_equal(a['image'][:, 0], 2 * a['label'])


def _epoch_labels(source, epoch, batch_size, seed):
  spe = data.steps_per_epoch(source, batch_size)
  return np.concatenate([
      data.train_batch(source, s, batch_size=batch_size, seed=seed)['label']
      for s in range(epoch * spe, (epoch + 1) * spe)])


def test_every_example_exactly_once_per_epoch_in_a_new_order():
  source = _indexed_source(96)
  epochs = [_epoch_labels(source, e, batch_size=8, seed=0) for e in range(3)]
  for labels in epochs:
    np.testing.assert_array_equal(np.sort(labels), np.arange(96))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[1], epochs[2])


def test_remainder_is_dropped_and_no_example_repeats_within_an_epoch():
  source = _indexed_source(100)
  assert data.steps_per_epoch(source, 8) == 12
  labels = _epoch_labels(source, 1, batch_size=8, seed=0)
  assert labels.size == 96 and np.unique(labels).size == 96


def test_resume_at_step_s_reproduces_the_uninterrupted_run():
  source = _indexed_source(30)
  steps = range(0, 25)  # Spans several epochs (3 steps per epoch).
  uninterrupted = [data.train_batch(source, s, batch_size=9, seed=5)['label']
                   for s in steps]
  data.clear_cache()  # As in a freshly started process.
  resumed = [data.train_batch(source, s, batch_size=9, seed=5)['label']
             for s in steps[11:]]
  for a, b in zip(uninterrupted[11:], resumed):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('process_count', [1, 2, 4])
def test_process_slices_partition_the_global_batch(process_count):
  source = _indexed_source(64)
  for step in (0, 5, 13):
    whole = data.train_batch(source, step, batch_size=16, seed=0)
    parts = [data.train_batch(source, step, batch_size=16, seed=0,
                              process_index=k, process_count=process_count)
             for k in range(process_count)]
    assert all(p['label'].shape == (16 // process_count,) for p in parts)
    np.testing.assert_array_equal(
        np.concatenate([p['label'] for p in parts]), whole['label'])


def test_record_source_reads_only_the_batch_and_matches_arrays():
  records = _CountingRecords(40)
  source = data.RecordSource(records, _identity_transform)
  in_memory = data.ArraySource(
      np.repeat(np.arange(40, dtype=np.float32)[:, None], 2, axis=1),
      np.arange(40))
  batch = data.train_batch(source, 9, batch_size=8, seed=3, process_index=1,
                           process_count=2)
  assert sorted(records.reads) == sorted(batch['label'].tolist())
  assert len(records.reads) == 4
  expected = data.train_batch(in_memory, 9, batch_size=8, seed=3,
                              process_index=1, process_count=2)
  for key in ('image', 'label'):
    np.testing.assert_array_equal(batch[key], expected[key])
    assert batch[key].dtype == expected[key].dtype


def test_record_source_slice():
  source = data.RecordSource(_CountingRecords(10), _identity_transform, 6, 10)
  assert len(source) == 4 and source[0]['label'] == 6
  with pytest.raises(IndexError):
    source[4]  # pylint: disable=pointless-statement


def test_train_batch_rejects_bad_sizes():
  source = _indexed_source(10)
  with pytest.raises(ValueError, match='divisible'):
    data.train_batch(source, 0, batch_size=6, seed=0, process_count=4)
  with pytest.raises(ValueError, match='larger than the split'):
    data.train_batch(source, 0, batch_size=16, seed=0)
  with pytest.raises(ValueError, match='process_index'):
    data.train_batch(source, 0, batch_size=4, seed=0, process_index=2,
                     process_count=2)


# -------------------------------------------------------------- eval_batches


@pytest.mark.parametrize('n', [13, 16, 3])
@pytest.mark.parametrize('process_count', [1, 2, 4])
def test_eval_batches_cover_every_example_once_with_padding(n,
                                                            process_count):
  source = _indexed_source(n)
  per_process = [list(data.eval_batches(source, batch_size=8,
                                        process_index=k,
                                        process_count=process_count))
                 for k in range(process_count)]
  num = data.num_eval_batches(source, 8)
  assert num == -(-n // 8)
  assert all(len(batches) == num for batches in per_process)
  labels, weights = [], []
  for b in range(num):  # Global batch b = the processes' parts in order.
    for k in range(process_count):
      batch = per_process[k][b]
      assert batch['image'].shape == (8 // process_count, 2)
      assert batch['weight'].dtype == np.float32
      labels.append(batch['label'])
      weights.append(batch['weight'])
      padding = batch['weight'] == 0.0
      assert np.all(batch['image'][padding] == 0.0)
      assert np.all(batch['label'][padding] == 0)
  labels, weights = np.concatenate(labels), np.concatenate(weights)
  assert labels.size == num * 8
  assert set(np.unique(weights)) <= {0.0, 1.0}
  np.testing.assert_array_equal(labels[weights == 1.0], np.arange(n))
  np.testing.assert_array_equal(weights, np.arange(num * 8) < n)


def test_eval_batches_on_a_record_source():
  source = data.RecordSource(_CountingRecords(5), _identity_transform)
  batches = list(data.eval_batches(source, batch_size=4, process_index=1,
                                   process_count=2))
  assert [b['label'].tolist() for b in batches] == [[2, 3], [0, 0]]
  assert [b['weight'].tolist() for b in batches] == [[1, 1], [0, 0]]


# ---------------------------------------------------------------------- TFDS


@pytest.mark.parametrize('name, shape', [('mnist', (28, 28, 1)),
                                         ('cifar10', (32, 32, 3))])
def test_tfds_under_mock_data(name, shape, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # policy=USE_CODE: the metadata come from the dataset's builder code, so
  # nothing is looked up on disk or online; tfds.data_source then returns
  # an ArrayRecordDataSource over deterministic random records.
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    ds = data.get_dataset(name, data_dir=tmp_path, num_validation=8)
    raw_train = tfds.data_source(name, split='train', data_dir=tmp_path,
                                 download=False)
    standardized = data.get_dataset(name, data_dir=tmp_path,
                                    num_validation=8, standardize=True)
  assert ds.input_shape == shape and ds.num_classes == 10
  assert {k: len(v) for k, v in ds.splits.items()} == {
      'train': 16, 'validation': 8, 'test': 24}
  # Validation is the tail of the TFDS train split.
  np.testing.assert_allclose(ds.splits['validation'][0]['image'],
                             raw_train[16]['image'] / 255.0, rtol=1e-6)
  assert ds.splits['validation'][0]['label'] == raw_train[16]['label']

  batch = data.train_batch(ds.splits['train'], 3, batch_size=8, seed=0)
  assert batch['image'].shape == (8, *shape)
  assert batch['image'].dtype == np.float32
  assert batch['label'].shape == (8,) and batch['label'].dtype == np.int32
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert batch['image'].max() > 0.5  # Scaled, not all zero.
  assert np.all((0 <= batch['label']) & (batch['label'] < 10))

  example = ds.splits['test'][0]
  assert set(example) == {'image', 'label'}  # CIFAR's 'id' is dropped.
  batches = list(data.eval_batches(ds.splits['test'], batch_size=10))
  assert len(batches) == 3 and batches[-1]['weight'].sum() == 4.0
  assert all(b['image'].shape == (10, *shape) for b in batches)

  z = data.train_batch(standardized.splits['train'], 3, batch_size=8,
                       seed=0)['image']
  assert z.dtype == np.float32 and z.min() < 0.0
  if importlib.util.find_spec('tensorflow') is None:
    assert 'tensorflow' not in sys.modules  # Reading never needed it.


def test_tfds_not_prepared_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    data.get_dataset('cifar10', data_dir=tmp_path)
  message = str(info.value)
  assert '\n' not in message
  assert (f'python -m launch.prepare_data --dataset=cifar10 '
          f'--data_dir={tmp_path}') in message


def test_tfds_num_validation_must_leave_a_train_split(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=10,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(ValueError, match='num_validation'):
      data.get_dataset('mnist', data_dir=tmp_path)  # Default 5000 > 10.


# -------------------------------------------------------------- prepare_data


def _run_prepare(*args, block_tensorflow=False):
  code = ('import runpy, sys\n'
          + ("sys.modules['tensorflow'] = None\n" if block_tensorflow else '')
          + f'sys.argv = ["prepare_data", *{list(args)!r}]\n'
          + 'runpy.run_module("launch.prepare_data", run_name="__main__")\n')
  return subprocess.run([sys.executable, '-c', code], cwd=_REPO,
                        capture_output=True, text=True, timeout=60,
                        check=False)


def test_prepare_data_unknown_dataset_exits_2_with_one_line():
  result = _run_prepare('--dataset=imagenet9000')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "prepare_data: unknown dataset 'imagenet9000'; choose one of: mnist, "
      'fashion_mnist, cifar10, cifar100, oxford_iiit_pet']


def test_prepare_data_without_tensorflow_exits_2_with_one_line(tmp_path):
  result = _run_prepare('--dataset=cifar10', f'--data_dir={tmp_path}',
                        block_tensorflow=True)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "prepare_data: TensorFlow is needed once to prepare 'cifar10' (pip "
      'install tensorflow); the training runs do not need it']
  assert not any(tmp_path.iterdir())


def test_prepare_data_built_in_needs_nothing(capsys):
  assert prepare_data.prepare('digits', None) == 0
  assert 'built in' in capsys.readouterr().out


class _FakeBuilder:

  def __init__(self, prepared, file_format='array_record', fail=None):
    self._prepared = prepared
    self._fail = fail
    self.data_dir = '/fake/dir'
    self.info = types.SimpleNamespace(
        file_format=file_format,
        splits={'train': types.SimpleNamespace(num_examples=3)})
    self.prepare_calls = 0

  def is_prepared(self):
    return self._prepared

  def download_and_prepare(self):
    self.prepare_calls += 1
    if self._fail:
      raise self._fail


@pytest.mark.parametrize('builder, status, says', [
    (_FakeBuilder(False), 0, 'ready'),
    (_FakeBuilder(True), 0, 'already prepared'),
    (_FakeBuilder(True, file_format='tfrecord'), 2, 'left untouched'),
    (_FakeBuilder(False, fail=ConnectionError('no route\nmore')), 2,
     'ConnectionError: no route'),
])
def test_prepare_data_paths_after_tensorflow(builder, status, says,
                                             monkeypatch, capsys):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(prepare_data, '_tensorflow_importable', lambda: True)
  monkeypatch.setattr(tfds, 'builder', lambda *a, **k: builder)
  assert prepare_data.prepare('mnist', '/fake') == status
  out = capsys.readouterr()
  lines = (out.out + out.err).strip().splitlines()
  assert len(lines) == 1 and says in lines[0], lines
  assert builder.prepare_calls == (0 if builder.is_prepared() else 1)
