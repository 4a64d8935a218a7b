r"""Bit planes: bool arrays <-> uint32 words (little bit order).

Element ``k`` of the last axis goes to word ``k // 32``, bit ``k % 32``
(bit 0 the least significant), i.e. ``np.packbits(..., bitorder='little')``
read as little-endian uint32.  The last axis is padded with 0 bits to a
multiple of 32; readers rely on padding bits being 0 (a padded position is
"+1 and absent": it never enters a popcount, see ``_kernels.py``).

Planes used by binary kernels (``_encode.py``):

* sign plane     bit = 1 where the value is -1 (W < 0, or x < 0 for sign
                 inputs; x > 0 for heaviside inputs, whose bit 1 means 1),
* nonzero plane  bit = 1 where W != 0 (only stored for ternary kernels).
"""
from __future__ import annotations

import numpy as np


def num_words(k: int) -> int:
  """Words holding ``k`` bits: ``ceil(k / 32)``."""
  return -(-int(k) // 32)


def pack(bits: np.ndarray) -> np.ndarray:
  """bool (..., K) -> uint32 (..., ceil(K/32)), C-contiguous."""
  bits = np.asarray(bits, dtype=bool)
  k = bits.shape[-1]
  pad = num_words(k) * 32 - k
  if pad:
    bits = np.concatenate(
        [bits, np.zeros(bits.shape[:-1] + (pad,), bool)], axis=-1)
  packed = np.packbits(bits, axis=-1, bitorder="little")
  return np.ascontiguousarray(packed).view("<u4").astype(np.uint32,
                                                          copy=False)


def unpack(words: np.ndarray, k: int) -> np.ndarray:
  """uint32 (..., W) -> bool (..., k): the inverse of :func:`pack`."""
  words = np.ascontiguousarray(words, dtype="<u4")
  bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
  return bits[..., :k].astype(bool)


def padding_is_zero(words: np.ndarray, k: int) -> bool:
  """Whether the bits past ``k`` in the last word of every row are 0."""
  r = int(k) % 32
  if r == 0 or words.size == 0:
    return True
  return not np.any(words[..., -1] >> np.uint32(r))
