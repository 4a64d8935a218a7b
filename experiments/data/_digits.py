"""`digits`: the 8x8 handwritten digits that scikit-learn ships (no download).

1797 images of 8x8 pixels with values 0..16 (UCI "optical recognition of
handwritten digits", as bundled by `sklearn.datasets.load_digits`), scaled to
[0, 1] float32 by dividing by 16, shaped (8, 8, 1).

The split is fixed, stratified and independent of every seed a run takes, so
results are comparable across seeds: test 360, validation 180, train 1257
(20 % / 10 % / 70 %). Each class is shuffled once with `_SPLIT_SEED`; an
example at rank r of its class (n_c examples) gets the key (r + 0.5) / n_c,
and examples sorted by key fill test, then validation, then train. Every
split therefore holds the classes in their overall proportions (to within
one example), and the sizes are exact. Each split lists its examples in
their original order.
"""
from __future__ import annotations

import functools

import numpy as np

from experiments.data import _sources

NUM_TEST = 360
NUM_VALIDATION = 180
_SPLIT_SEED = 20240607  # Fixed forever: changing it changes every result.


@functools.lru_cache(maxsize=1)
def split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train, validation, test) indices into `load_digits()`, each sorted.

  The fixed stratified split of the module docstring (seeded with
  `_SPLIT_SEED`, independent of every run's seed); cached.
  """
  _, label = _load()
  rng = np.random.default_rng(_SPLIT_SEED)
  key = np.empty(label.shape[0])
  for c in np.unique(label):
    members = rng.permutation(np.flatnonzero(label == c))
    key[members] = (np.arange(members.size) + 0.5) / members.size
  # Ties between classes (equal keys) are broken by a seeded random order.
  order = np.lexsort((rng.permutation(label.shape[0]), key))
  test = np.sort(order[:NUM_TEST])
  validation = np.sort(order[NUM_TEST:NUM_TEST + NUM_VALIDATION])
  train = np.sort(order[NUM_TEST + NUM_VALIDATION:])
  return train, validation, test


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  image = (digits.images.astype(np.float32) / 16.0)[..., None]
  label = digits.target.astype(np.int32)
  return image, label


def clear_cache() -> None:
  """Forget the cached arrays and split, as in a freshly started process."""
  _load.cache_clear()
  split_indices.cache_clear()


def load(**kwargs) -> _sources.Dataset:
  """The digits `Dataset` (no options)."""
  return _sources.in_memory('digits', _load, split_indices,
                            num_classes=10, kwargs=kwargs)
