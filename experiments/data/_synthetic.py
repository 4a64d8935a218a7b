"""`synthetic`: seeded Gaussian classification data of any input shape.

Each class c has a mean m_c ~ N(0, s^2 I) over the D = prod(input_shape)
inputs; an example of class c is x = m_c + e, e ~ N(0, I), with the class
drawn uniformly. s = class_sep / sqrt(2 D), so the expected distance between
two class means is `class_sep` noise standard deviations; with the default
6.0 the Bayes error is about 1 %, so a small network learns it quickly and
there is still something to get wrong. Values are unbounded floats (not
[0, 1]).

Everything follows from `seed`: the means and each split come from their own
stream (`default_rng([seed, k])`), so e.g. the test set does not change when
`num_train` does.
"""
from __future__ import annotations

import math

import numpy as np

from experiments.data import _sources


def load(*, seed: int = 0, input_shape=(8, 8, 1), num_classes: int = 10,
         num_train: int = 2048, num_validation: int = 256,
         num_test: int = 512, class_sep: float = 6.0) -> _sources.Dataset:
  """A synthetic `Dataset`; see the module docstring for the distribution."""
  input_shape = tuple(int(d) for d in input_shape)
  if num_classes < 2:
    raise ValueError(f'num_classes must be >= 2, got {num_classes}')
  if min(num_train, num_validation, num_test) < 0:
    raise ValueError('split sizes must be >= 0')
  size = math.prod(input_shape)
  scale = class_sep / math.sqrt(2 * size)
  means = np.random.default_rng([seed, 0]).normal(
      scale=scale, size=(num_classes, *input_shape))

  def split(k: int, n: int) -> _sources.ArraySource:
    rng = np.random.default_rng([seed, k])
    label = rng.integers(num_classes, size=n)
    image = means[label] + rng.normal(size=(n, *input_shape))
    return _sources.ArraySource(image.astype(np.float32),
                                label.astype(np.int32))

  return _sources.Dataset(
      name='synthetic',
      splits={'train': split(1, num_train),
              'validation': split(2, num_validation),
              'test': split(3, num_test)},
      input_shape=input_shape,
      num_classes=num_classes)
