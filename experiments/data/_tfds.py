"""TFDS datasets read as ArrayRecord with grain: no TensorFlow at run time.

`tfds.data_source(name, split=..., data_dir=..., download=False)` gives a
random-access view of a split that `launch.prepare_data` prepared once (as
ArrayRecord; preparing needs TensorFlow, reading does not). Each split is a
`RecordSource`: `grain.MapDataset.source(split).map(normalise)`.

Normalisation: images become float32 in [0, 1] (uint8 / 255). With
`standardize=True` each channel is then shifted and scaled by the train-set
mean and standard deviation below (the usual CIFAR preprocessing); off by
default. Labels become int32; other features (CIFAR's 'id', CIFAR-100's
'coarse_label') are dropped.

Validation: none of these datasets has a validation split, so validation is
the last `num_validation` examples of the TFDS train split (default 5,000, as
the lottery ticket paper holds out for MNIST and CIFAR-10) and train is the
rest. The TFDS train split is stored in a fixed shuffled order, so the tail
is a fixed random subset. Test is the TFDS test split.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from experiments.data import _sources


@dataclasses.dataclass(frozen=True)
class _Spec:
  input_shape: tuple[int, ...]
  num_classes: int
  mean: tuple[float, ...]  # Per-channel train-set statistics of x / 255.
  std: tuple[float, ...]


SPECS = {
    'mnist': _Spec((28, 28, 1), 10, (0.1307,), (0.3081,)),
    'fashion_mnist': _Spec((28, 28, 1), 10, (0.2860,), (0.3530,)),
    'cifar10': _Spec((32, 32, 3), 10, (0.4914, 0.4822, 0.4465),
                     (0.2470, 0.2435, 0.2616)),
    'cifar100': _Spec((32, 32, 3), 100, (0.5071, 0.4865, 0.4409),
                      (0.2673, 0.2564, 0.2762)),
}
DEFAULT_NUM_VALIDATION = 5000


class _Normalise:
  """record -> {'image': float32 in [0, 1] (or standardised), 'label': int32}.

  A class rather than a closure so the grain pipeline stays picklable.
  """

  def __init__(self, mean=None, std=None):
    self._mean = None if mean is None else np.asarray(mean, np.float32)
    self._inv_std = None if std is None else 1.0 / np.asarray(std, np.float32)

  def __call__(self, record):
    image = np.asarray(record['image'], np.float32) * np.float32(1 / 255)
    if self._mean is not None:
      image = (image - self._mean) * self._inv_std
    return {'image': image, 'label': np.int32(record['label'])}


def prepare_command(name: str, data_dir: str | os.PathLike | None) -> str:
  return (f'python -m launch.prepare_data --dataset={name} '
          f'--data_dir={data_dir if data_dir is not None else "DIR"}')


def _open_split(name: str, split: str, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    return tfds.data_source(name, split=split, data_dir=data_dir,
                            download=False)
  except (AssertionError, OSError, RuntimeError, ValueError) as e:
    # TFDS says this in several ways (NotImplementedError for "no ArrayRecord
    # files here", AssertionError or FileNotFoundError for "no data"); the
    # original error stays attached as __cause__.
    where = (f'in {data_dir}' if data_dir is not None
             else 'in the default TFDS data_dir (~/tensorflow_datasets or '
             '$TFDS_DATA_DIR)')
    raise FileNotFoundError(
        f"dataset '{name}' (split '{split}') is not prepared as ArrayRecord "
        f'{where}; run: {prepare_command(name, data_dir)}') from e


def load(name: str, *, data_dir=None, num_validation: int =
         DEFAULT_NUM_VALIDATION, standardize: bool = False
         ) -> _sources.Dataset:
  """A TFDS `Dataset`; see the module docstring."""
  spec = SPECS[name]
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  transform = (_Normalise(spec.mean, spec.std) if standardize
               else _Normalise())
  train_records = _open_split(name, 'train', data_dir)
  test_records = _open_split(name, 'test', data_dir)
  n = len(train_records)
  if not 0 <= num_validation < n:
    raise ValueError(f'num_validation={num_validation} must be in [0, {n}) '
                     f"for '{name}' ({n} train examples)")
  split_at = n - num_validation
  return _sources.Dataset(
      name=name,
      splits={
          'train': _sources.RecordSource(train_records, transform, 0,
                                         split_at),
          'validation': _sources.RecordSource(train_records, transform,
                                              split_at, n),
          'test': _sources.RecordSource(test_records, transform),
      },
      input_shape=spec.input_shape,
      num_classes=spec.num_classes)
