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


# ------------------------------------------------- segmentation: Pet --------
# Oxford-IIIT Pet (Parkhi et al., CVPR 2012): TFDS 'oxford_iiit_pet', train
# 3680 / test 3669 images of varying size with a trimap 'segmentation_mask'
# (H, W, 1) uint8: 1 = pet, 2 = background, 3 = border. Classes here are
# trimap - 1 (0 pet, 1 background, 2 border), as in the TensorFlow
# segmentation tutorial; with `binary=True` the border counts as pet
# (2 classes: 0 pet, 1 background).
SEGMENTATION = {'oxford_iiit_pet': 3}
DEFAULT_PET_SIZE = 64
DEFAULT_PET_VALIDATION = 368  # 10 % of the TFDS train split


def _resize_index(n_in: int, n_out: int) -> np.ndarray:
  """Nearest-neighbour source rows: centre of output pixel i in the input."""
  return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64),
                    n_in - 1)


class PetTransform:
  """record -> {'image': (S, S, 3) float32 in [0, 1], 'label': (S, S) int32}.

  Both the image and the trimap are resized to S x S by nearest-neighbour
  sampling (no interpolation, so labels stay labels and no image library
  is needed). A class so the grain pipeline stays picklable.
  """

  def __init__(self, size: int, binary: bool):
    self._size, self._binary = int(size), bool(binary)

  def __call__(self, record):
    image = np.asarray(record['image'])
    mask = np.asarray(record['segmentation_mask'])
    mask = mask.reshape(mask.shape[:2])
    # Each resized on its own grid (they have the same size in the data).
    image = image[_resize_index(image.shape[0], self._size)][
        :, _resize_index(image.shape[1], self._size)]
    image = image.astype(np.float32) * np.float32(1 / 255)
    label = mask[_resize_index(mask.shape[0], self._size)][
        :, _resize_index(mask.shape[1], self._size)].astype(np.int32) - 1
    label = np.clip(label, 0, 2)  # a trimap holds 1..3
    if self._binary:
      label = np.where(label == 2, 0, label)
    return {'image': image, 'label': label}


def load_segmentation(name: str, *, data_dir=None, size: int =
                      DEFAULT_PET_SIZE, num_validation: int =
                      DEFAULT_PET_VALIDATION, binary: bool = False
                      ) -> _sources.Dataset:
  """Oxford-IIIT Pet as a segmentation `Dataset` (see `SEGMENTATION`).

  Validation is the last `num_validation` examples of the TFDS train split,
  test the TFDS test split; `size` is the square side after resizing.
  """
  if int(size) < 8:
    raise ValueError(f'size must be >= 8, got {size}')
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  transform = PetTransform(size, binary)
  train_records = _open_split(name, 'train', data_dir)
  test_records = _open_split(name, 'test', data_dir)
  n = len(train_records)
  if not 0 < num_validation < n:
    raise ValueError(f'num_validation={num_validation} must be in (0, {n}) '
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
      input_shape=(int(size), int(size), 3),
      num_classes=2 if binary else SEGMENTATION[name],
      task='segmentation')
