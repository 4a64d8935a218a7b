r"""Downloads and prepares a TFDS dataset as ArrayRecord, once.

    python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tfds

Preparing needs TensorFlow and a network; training runs read the prepared
ArrayRecord files with grain and need neither. Run this where both exist and
point training at the same --data_dir.

Never destructive: an existing prepared dataset is reused as it is (TFDS
writes a new one to a temporary folder and renames it only when complete).
When the existing one is in another format than ArrayRecord, this says so
and stops; choose another --data_dir.

Exit status: 0 when the dataset is ready (or needs no preparation), 2 with
one line on stderr saying what is missing otherwise.
"""
from __future__ import annotations

import importlib
import os
import sys

from absl import app
from absl import flags

_DATASET = flags.DEFINE_string(
    'dataset', None, 'TFDS dataset to prepare: mnist, fashion_mnist, cifar10, '
    'cifar100 or oxford_iiit_pet.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Where to prepare it (default: the TFDS default, '
    '~/tensorflow_datasets or $TFDS_DATA_DIR).')

_PREPARABLE = ('mnist', 'fashion_mnist', 'cifar10', 'cifar100',
               'oxford_iiit_pet')
_BUILT_IN = ('digits', 'mnist5k', 'synthetic', 'shapes')


def _fail(message: str) -> int:
  print(f'prepare_data: {message}', file=sys.stderr)
  return 2


def _one_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  name = type(error).__name__
  return f'{name}: {lines[0]}' if lines else name


def _tensorflow_importable() -> bool:
  try:
    importlib.import_module('tensorflow')
  except ImportError:
    return False
  return True


def prepare(name: str, data_dir: str | None) -> int:
  """Prepares `name` in `data_dir`; returns the exit status."""
  if name in _BUILT_IN:
    print(f"prepare_data: '{name}' is built in; nothing to prepare")
    return 0
  if name not in _PREPARABLE:
    return _fail(f'unknown dataset {name!r}; choose one of: '
                 f'{", ".join(_PREPARABLE)}')
  if not _tensorflow_importable():
    return _fail(f'TensorFlow is needed once to prepare {name!r} (pip install '
                 'tensorflow); the training runs do not need it')
  if data_dir is not None:
    data_dir = os.path.expanduser(data_dir)
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder(name, data_dir=data_dir,
                           file_format='array_record')
    if builder.is_prepared():
      file_format = str(getattr(builder.info.file_format, 'value',
                                builder.info.file_format))
      if file_format != 'array_record':
        return _fail(f'{name!r} is already prepared in {builder.data_dir} as '
                     f'{file_format}, not array_record; it is left untouched: '
                     'choose another --data_dir')
      print(f'prepare_data: {name!r} is already prepared in '
            f'{builder.data_dir}')
      return 0
    builder.download_and_prepare()
  except ImportError as e:
    return _fail(f'a package needed to prepare {name!r} is missing '
                 f'({_one_line(e)}); the training runs do not need it')
  except Exception as e:  # pylint: disable=broad-except
    return _fail(f'could not download and prepare {name!r} into '
                 f'{data_dir or "the default TFDS data_dir"} '
                 f'({_one_line(e)}); is the network reachable?')
  sizes = ', '.join(f'{split} {info.num_examples}'
                    for split, info in builder.info.splits.items())
  print(f'prepare_data: {name!r} ready in {builder.data_dir} ({sizes})')
  return 0


def main(argv):
  if len(argv) > 1:
    return _fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _DATASET.value:
    return _fail('--dataset is required (e.g. --dataset=cifar10)')
  return prepare(_DATASET.value, _DATA_DIR.value)


def parse_flags(argv):
  """absl flag parsing with a one-line error and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(_fail(str(e).splitlines()[0] if str(e) else repr(e)))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
