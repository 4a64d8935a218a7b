"""Batches as pure functions of (seed, step): resume is free.

Training order. With n examples and global batch size B there are
S = n // B steps per epoch (the n - S*B leftover examples of each epoch's
order are skipped; which ones changes every epoch). Global step t is in
epoch e = t // S at position p = t % S and reads

    perm_e[p*B : (p+1)*B],    perm_e = default_rng([seed, e]).permutation(n)

so every example is seen at most once per epoch, each epoch has its own
reproducible order, and the data position is just the step: a run resumed
at step t reads exactly what an uninterrupted run reads. Process k of K
takes rows [k*B/K, (k+1)*B/K) of the global batch, so the processes'
batches partition it.

In-memory sources gather a batch with one NumPy fancy index (a few
microseconds for the digits); record sources read just the batch's records.
Permutations are cached per (n, seed, epoch).

Evaluation. `eval_batches` walks a split in order in ceil(n / B) global
batches; the last is padded to B rows with zeros and weight 0.0, real rows
have weight 1.0. Every process yields the same number of batches.
"""
from __future__ import annotations

import functools
from typing import Iterator

import numpy as np


def steps_per_epoch(source, batch_size: int) -> int:
  """Training steps per epoch, n // batch_size (remainder dropped)."""
  return len(source) // batch_size


def num_eval_batches(source, batch_size: int) -> int:
  """How many batches `eval_batches` yields: ceil(n / batch_size)."""
  return -(-len(source) // batch_size)


@functools.lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  perm.setflags(write=False)
  return perm


def clear_cache() -> None:
  """Forget the cached epoch permutations, as in a freshly started process
  (`train_batch` gives the same batches either way: they are a pure
  function of (seed, step))."""
  _permutation.cache_clear()


def _local_rows(batch_size: int, process_index: int,
                process_count: int) -> tuple[int, int]:
  """(first row, row count) of this process's part of a global batch."""
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} is not in '
                     f'[0, process_count={process_count})')
  if batch_size % process_count:
    raise ValueError(f'global batch_size={batch_size} is not divisible by '
                     f'process_count={process_count}')
  local = batch_size // process_count
  return process_index * local, local


def _gather(source, indices: np.ndarray) -> dict[str, np.ndarray]:
  arrays = getattr(source, 'arrays', None)
  if arrays is not None:
    return {'image': arrays['image'][indices],
            'label': arrays['label'][indices]}
  records = [source[int(i)] for i in indices]
  return {'image': np.stack([np.asarray(r['image'], np.float32)
                             for r in records]),
          'label': np.asarray([r['label'] for r in records], np.int32)}


def train_batch(source, step: int, *, batch_size: int, seed: int,
                process_index: int = 0, process_count: int = 1
                ) -> dict[str, np.ndarray]:
  """This process's rows of the training batch for global step `step`.

  Args:
    source: a split (`Dataset.splits['train']`).
    step: the global step, >= 0.
    batch_size: the GLOBAL batch size (all processes together).
    seed: the data-order seed; the order depends on nothing else.
    process_index, process_count: which slice of the global batch to return.

  Returns:
    {'image': (batch_size // process_count, *input_shape) float32,
     'label': (batch_size // process_count,) int32}.

  Example:
    >>> from experiments import data
    >>> train = data.get_dataset('digits').splits['train']
    >>> batch = data.train_batch(train, 0, batch_size=32, seed=0)
    >>> batch['image'].shape, batch['label'].dtype
    ((32, 8, 8, 1), dtype('int32'))
  """
  step = int(step)
  if step < 0:
    raise ValueError(f'step must be >= 0, got {step}')
  first, local = _local_rows(batch_size, process_index, process_count)
  n = len(source)
  per_epoch = n // batch_size
  if per_epoch == 0:
    raise ValueError(f'batch_size={batch_size} is larger than the split '
                     f'({n} examples)')
  epoch, position = divmod(step, per_epoch)
  start = position * batch_size + first
  indices = _permutation(n, int(seed), epoch)[start:start + local]
  return _gather(source, indices)


def eval_batches(source, *, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Yields this process's rows of every evaluation batch, in order.

  Args:
    source: a split.
    batch_size: the GLOBAL batch size.
    process_index, process_count: which slice of each global batch to yield.

  Yields:
    {'image', 'label', 'weight'} with batch_size // process_count rows;
    weight is float32 1.0 for real examples and 0.0 for padding rows (whose
    image and label are zeros). Over all processes and batches, every
    example appears exactly once with weight 1.0.

  Example:
    >>> from experiments import data
    >>> test = data.get_dataset('digits').splits['test']
    >>> batches = data.eval_batches(test, batch_size=64)
    >>> float(sum(b['weight'].sum() for b in batches))
    360.0
  """
  first, local = _local_rows(batch_size, process_index, process_count)
  n = len(source)
  for b in range(num_eval_batches(source, batch_size)):
    rows = np.arange(b * batch_size + first, b * batch_size + first + local)
    valid = rows < n
    # Padding rows read the last example (so shapes need no special case),
    # then are zeroed.
    batch = _gather(source, np.minimum(rows, n - 1))
    if not valid.all():
      for v in batch.values():
        v[~valid] = 0
    batch['weight'] = valid.astype(np.float32)
    yield batch
