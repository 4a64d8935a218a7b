"""Writes a small real TFDS `mnist` dataset as ArrayRecord, with TFDS's writer.

`write_mnist(data_dir)` prepares `data_dir/mnist/3.0.1/` exactly as
`python -m launch.prepare_data --dataset=mnist` would lay it out
(`dataset_info.json`, `features.json`, `mnist-{train,test}.array_record-*`),
but from a few hundred `mnist5k` images instead of the downloaded MNIST:
TFDS's own `MNIST` builder (subclassed unregistered, `skip_registration`)
runs `download_and_prepare(file_format='array_record')` with only its split
generators replaced. So the features, version and file names are the real
`mnist`'s, and `tfds.data_source('mnist', data_dir=...)` (what
`experiments.data.get_dataset('mnist', data_dir=...)` calls) reads the files
like a prepared MNIST.

No TensorFlow: TFDS needs it only to PNG-encode NumPy images, so the
generators hand it PNG bytes that Pillow (already installed, which TFDS's
no-TF reader uses to decode) encodes; TFDS stores them as they are. Nothing
is downloaded (the builder's download manager is never asked for a file,
and `try_download_gcs=False`).

The one departure from a real prepared MNIST: `disable_shuffling=True`, so
the records are stored in the generators' key order (TFDS otherwise orders
them by a hash of the key) and record i is the i-th image given here; the
tests compare against the in-memory arrays by that index.
"""
from __future__ import annotations

import io
import os

import numpy as np

from experiments import data

NUM_TRAIN = 480  # images of mnist5k's train split
NUM_TEST = 160   # images of its test split
_SEED = 16  # which images, in which order (mnist5k's splits are by class)


def mnist5k_uint8() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train', 'test'}: (images (n, 28, 28, 1) uint8, labels (n,) int64).

  A fixed random subset of each mnist5k split in a fixed random order (the
  file lists the digits class by class; a real TFDS split is stored
  shuffled, so its held-out tail is a random subset too). The mnist5k pixels are the file's uint8 values / 255 in float32, so
  rint(x * 255) recovers them exactly.
  """
  ds = data.get_dataset('mnist5k')
  rng = np.random.default_rng(_SEED)
  out = {}
  for split, n in (('train', NUM_TRAIN), ('test', NUM_TEST)):
    arrays = ds.splits[split].arrays
    rows = rng.permutation(len(arrays['label']))[:n]
    image = np.rint(arrays['image'][rows] * 255.0).astype(np.uint8)
    out[split] = image, arrays['label'][rows].astype(np.int64)
  return out


def _png(image: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(image[:, :, 0]).save(buffer, format='PNG')
  return buffer.getvalue()


def write_mnist(data_dir: str | os.PathLike) -> str:
  """Prepares the small `mnist` in `data_dir`; returns the version folder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.image_classification import mnist as tfds_mnist  # pylint: disable=g-import-not-at-top

  arrays = mnist5k_uint8()

  class SmallMnist(tfds_mnist.MNIST, skip_registration=True):
    """TFDS's MNIST builder (name 'mnist', same version and features) whose
    splits are the mnist5k images above, in order."""

    name = 'mnist'
    # No checksums file to look for (TFDS's lookup from the module path
    # needs importlib_resources for a namespace package like tests/).
    code_path = None

    def _info(self):
      info = super()._info()
      return self.dataset_info_from_configs(
          features=info.features, supervised_keys=info.supervised_keys,
          homepage=info.homepage, citation=info.citation,
          disable_shuffling=True)

    def _split_generators(self, dl_manager):
      del dl_manager  # Nothing to download.
      return {split: self._generate_examples(*arrays[split])
              for split in ('train', 'test')}

    def _generate_examples(self, images, labels):  # pylint: disable=arguments-renamed
      for i, (image, label) in enumerate(zip(images, labels)):
        yield i, {'image': _png(image), 'label': int(label)}

  builder = SmallMnist(data_dir=os.fspath(data_dir),
                       file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return os.fspath(builder.data_dir)
