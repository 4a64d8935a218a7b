"""`shapes`: a seeded synthetic segmentation set (images and per-pixel masks).

Each image is `size` x `size` x 3 (RGB, float32, roughly in [0, 1]) on a
smooth random background (a per-image colour plus a linear gradient) with
1..`max_shapes` shapes drawn one after the other (a later shape covers an
earlier one), each of a random class, centre, size and colour, plus
Gaussian pixel noise (`noise`, standard deviation). The label of a pixel is
the class of the shape that covers it last, 0 (background) elsewhere:

    0 background    1 square (axis-aligned)    2 disc    3 triangle (upward)

Colours are drawn independently of the class, so a network must segment by
shape, not by colour; a shape's colour differs from the background's mean by
at least `min_contrast` in some channel, so every shape is visible.

Everything follows from `seed`: each split has its own stream
(`default_rng([seed, 101 + k])`), so e.g. the test set does not change when
`num_train` does, and the same seed always gives the same arrays. With the
defaults (32 x 32, 1024/128/256 images) it is made in well under a second.
"""
from __future__ import annotations

import numpy as np

from experiments.data import _sources

CLASSES = ('background', 'square', 'disc', 'triangle')


def _draw(rng: np.random.Generator, size: int, max_shapes: int,
          noise: float, min_contrast: float) -> tuple[np.ndarray, np.ndarray]:
  """One (image (size, size, 3), label (size, size)) pair."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
  slope = rng.uniform(-0.15, 0.15, size=(2, 3)).astype(np.float32)
  image = (base + (yy[..., None] / size - 0.5) * slope[0]
           + (xx[..., None] / size - 0.5) * slope[1])
  label = np.zeros((size, size), np.int32)
  for _ in range(int(rng.integers(1, max_shapes + 1))):
    cls = int(rng.integers(1, len(CLASSES)))
    r = rng.uniform(0.12, 0.25) * size           # half-size / radius
    cy, cx = rng.uniform(r, size - r, size=2)
    if cls == 1:
      inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
    elif cls == 2:
      inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    else:  # apex at (cy - r, cx), base at y = cy + r of half-width r
      inside = ((yy >= cy - r) & (yy <= cy + r)
                & (np.abs(xx - cx) <= (yy - (cy - r)) / 2.0))
    while True:
      colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
      if np.max(np.abs(colour - base)) >= min_contrast:
        break
    image[inside] = colour
    label[inside] = cls
  image = image + rng.normal(scale=noise, size=image.shape).astype(np.float32)
  return image.astype(np.float32), label


def make_split(seed: int, k: int, n: int, *, size: int = 32,
               max_shapes: int = 3, noise: float = 0.05,
               min_contrast: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
  """(images (n, size, size, 3) float32, labels (n, size, size) int32)."""
  rng = np.random.default_rng([seed, 101 + k])
  images = np.empty((n, size, size, 3), np.float32)
  labels = np.empty((n, size, size), np.int32)
  for i in range(n):
    images[i], labels[i] = _draw(rng, size, max_shapes, noise, min_contrast)
  return images, labels


def load(*, seed: int = 0, size: int = 32, num_train: int = 1024,
         num_validation: int = 128, num_test: int = 256, max_shapes: int = 3,
         noise: float = 0.05, min_contrast: float = 0.25
         ) -> _sources.Dataset:
  """The shapes `Dataset` (task 'segmentation'); see the module docstring.

  Example:
    >>> from experiments import data
    >>> ds = data.get_dataset('shapes', num_train=8, num_validation=4,
    ...                       num_test=4)
    >>> ds.task, ds.input_shape, ds.num_classes
    ('segmentation', (32, 32, 3), 4)
    >>> ds.splits['train'][0]['label'].shape
    (32, 32)
  """
  size = int(size)
  if size < 8:
    raise ValueError(f'size must be >= 8, got {size}')
  if int(max_shapes) < 1:
    raise ValueError(f'max_shapes must be >= 1, got {max_shapes}')
  if min(num_train, num_validation, num_test) < 1:
    raise ValueError('split sizes must be >= 1')
  if not 0.0 < min_contrast <= 0.5:
    raise ValueError(f'min_contrast must be in (0, 0.5], got {min_contrast}')
  kw = dict(size=size, max_shapes=int(max_shapes), noise=float(noise),
            min_contrast=float(min_contrast))
  splits = {name: _sources.ArraySource(*make_split(seed, k, int(n), **kw))
            for k, (name, n) in enumerate((('train', num_train),
                                           ('validation', num_validation),
                                           ('test', num_test)))}
  return _sources.Dataset(name='shapes', splits=splits,
                          input_shape=(size, size, 3),
                          num_classes=len(CLASSES), task='segmentation')
