"""The `Dataset` record and the two kinds of random-access source.

A *source* is anything with `len(source)` and `source[i] -> {'image': float32
array of the dataset's input_shape, 'label': int32 scalar}`. Two kinds exist:

* `ArraySource`: the whole split in memory (digits, synthetic). It also
  exposes `.arrays`, so batching is one NumPy fancy index per step.
* `RecordSource`: a `grain.MapDataset` over a random-access record source
  (a `tfds.data_source` split) with a map that normalises each record; only
  the records a batch needs are read.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A classification dataset: three splits and what a model needs to know.

  Attributes:
    name: the registry name (`experiments.data.DATASETS`).
    splits: {'train', 'validation', 'test'} -> source (see module docstring).
    input_shape: the shape of one image, without batch, e.g. (8, 8, 1).
    num_classes: labels are in [0, num_classes).
    task: 'classification' (one int32 label per image) or 'segmentation'
      (an int32 label per pixel: label shape = input_shape[:-1]).
  """
  name: str
  splits: dict[str, Any]
  input_shape: tuple[int, ...]
  num_classes: int
  task: str = 'classification'


def in_memory(name: str, load: Callable[[], tuple[np.ndarray, np.ndarray]],
              split_indices: Callable[[], Sequence[np.ndarray]],
              num_classes: int, kwargs: Mapping[str, Any]) -> Dataset:
  """A built-in dataset held in memory, cut by its fixed split.

  `load()` returns (image, label) arrays; `split_indices()` the (train,
  validation, test) index arrays into them. `kwargs` are the options the
  caller received: a built-in dataset takes none, so any is refused, naming
  the dataset, before anything is loaded.
  """
  if kwargs:
    raise TypeError(
        f"dataset {name!r} takes no options; got {sorted(kwargs)}")
  image, label = load()
  return Dataset(
      name=name,
      splits={split: ArraySource(image[idx], label[idx]) for split, idx in
              zip(('train', 'validation', 'test'), split_indices())},
      input_shape=tuple(image.shape[1:]),
      num_classes=num_classes)


class ArraySource:
  """An in-memory split: `len`, `[i]` and `.arrays` for the batching fast path.

  The arrays are private read-only copies, so no caller can change the data
  another caller sees.
  """

  def __init__(self, image: np.ndarray, label: np.ndarray):
    image = np.array(image, dtype=np.float32, copy=True)
    label = np.array(label, dtype=np.int32, copy=True)
    if label.ndim < 1 or image.shape[:1] != label.shape[:1]:
      raise ValueError(f'image {image.shape} and label {label.shape} do not '
                       'have one label per image')
    image.setflags(write=False)
    label.setflags(write=False)
    self._image = image
    self._label = label

  @property
  def arrays(self) -> dict[str, np.ndarray]:
    """{'image': (N, ...) float32, 'label': (N,) int32}, read-only."""
    return {'image': self._image, 'label': self._label}

  def __len__(self) -> int:
    return self._label.shape[0]

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {'image': self._image[index], 'label': self._label[index]}

  def __repr__(self) -> str:
    return (f'ArraySource(n={len(self)}, '
            f'image_shape={self._image.shape[1:]})')


class RecordSource:
  """A split read record by record through `grain.MapDataset`.

  `grain.MapDataset.source(records).map(transform)`, optionally sliced to
  `[start:stop]` (how a validation tail is held out of a train split). Reading
  index i reads exactly one record of `records`.

  Args:
    records: a random-access sequence (`len`, `[i]`), e.g. a
      `tfds.data_source(...)` split.
    transform: record -> {'image': float32 array, 'label': int32 scalar}.
    start, stop: the slice of `records` this source covers (default: all).
  """

  def __init__(self, records: Sequence[Any],
               transform: Callable[[Any], Mapping[str, Any]],
               start: int = 0, stop: int | None = None):
    import grain  # pylint: disable=g-import-not-at-top

    stop = len(records) if stop is None else stop
    if not 0 <= start <= stop <= len(records):
      raise ValueError(f'slice [{start}:{stop}] is outside the {len(records)} '
                       'records')
    self.dataset = grain.MapDataset.source(records).map(transform)
    if (start, stop) != (0, len(records)):
      self.dataset = self.dataset[start:stop]
    self._len = stop - start

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if not 0 <= index < self._len:
      raise IndexError(f'index {index} out of range for {self._len} records')
    return self.dataset[index]

  def __repr__(self) -> str:
    return f'RecordSource(n={self._len}, dataset={self.dataset})'
