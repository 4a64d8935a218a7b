"""Input pipeline: datasets as random-access sources, batches as functions.

    ds = get_dataset('digits')      # or 'mnist5k', 'synthetic', 'mnist', ...
    batch = train_batch(ds.splits['train'], step, batch_size=128, seed=0)
    for batch in eval_batches(ds.splits['test'], batch_size=512): ...

A batch is a pure function of (seed, step), so resuming at a step needs no
iterator state. TFDS datasets are read from ArrayRecord with grain and need
no TensorFlow; `python -m launch.prepare_data` prepares them once.
"""
from experiments.data._batching import eval_batches
from experiments.data._batching import num_eval_batches
from experiments.data._batching import steps_per_epoch
from experiments.data._batching import train_batch
from experiments.data._registry import DATASETS
from experiments.data._registry import get_dataset
from experiments.data._sources import ArraySource
from experiments.data._sources import Dataset
from experiments.data._sources import RecordSource

__all__ = (
    'ArraySource',
    'DATASETS',
    'Dataset',
    'RecordSource',
    'eval_batches',
    'get_dataset',
    'num_eval_batches',
    'steps_per_epoch',
    'train_batch',
)
