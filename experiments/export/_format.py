r"""The ``.sbn`` file: one self-describing, checksummed container.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic b"SBNMODEL"
    8       4     format version (uint32), 1, 2 or 3 (:data:`VERSIONS`)
    12      4     flags (uint32), 0
    16      8     header length H (uint64)
    24      8     data length D (uint64)
    32      H     header: UTF-8 JSON (see below)
    32+H    P     zero padding to a multiple of 64 (P < 64)
    32+H+P  D     data: the tensors, each at a 64-aligned offset from here
    end-32  32    SHA-256 of every byte before it

so a file is exactly ``32 + H + P + D + 32`` bytes; anything else is
truncated (or has trailing bytes) and is refused before parsing.  Loading
reads JSON and raw little-endian arrays only: no pickle, no code execution.

Header JSON keys: ``"format": "sbn"``, ``"version"``, ``"input_shape"``
(per example, no batch axis), ``"layers"`` (the layer list of
``experiments/models/_layers.py`` whose ``"params"`` map role -> *tensor
name*, plus a ``"storage"`` dict on dense/conv entries, see
``_encode.py``), ``"tensors"`` (name -> ``{"dtype", "shape", "offset",
"nbytes"}``, dtype one of :data:`DTYPES`, offset relative to the data
section) and ``"meta"`` (free-form provenance: model, dataset, step ...).

Versions.  1: the original encodings.  2: version 1 plus one optional
encoding, BatchNorm as a per-channel sign threshold (``"storage":
{"batchnorm": "threshold"}``, see ``_encode.py``).  3: version 2 plus
BatchNorm folded into the binary-weight dense/conv with real inputs that
precedes it (``"storage": {..., "batchnorm": "folded"}`` on both entries:
the dense/conv holds one per-channel ``scale`` and ``shift``, the BatchNorm
no tensor).  The meaning of every older construct is unchanged in each
version.  :func:`write` writes the lowest version that holds the layers
(:func:`required_version`), so files without the newer encodings stay
readable by older readers, which refuse newer files with "unsupported
format version N".  Ops and activation kinds added to the layer list
later (``wta``, ``abs`` for FBS) do not change the version: a reader that
does not know one refuses the file with "unknown op" / "unknown
activation", naming the layer.  This reader reads all three, and refuses
an encoding in a file that claims a version older than the encoding.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from typing import Any

import numpy as np

MAGIC = b"SBNMODEL"
VERSION = 3  # the newest version this code reads and writes
VERSIONS = (1, 2, 3)
# The version that introduced each BatchNorm storage (an unknown one: the
# newest, whose reader refuses it by name).
BATCHNORM_STORAGE_VERSION = {"threshold": 2, "folded": 3}
ALIGN = 64
_PREFIX = struct.Struct("<8sIIQQ")  # magic, version, flags, H, D
_DIGEST = 32
# Allowed tensor dtypes (stored little-endian).
DTYPES = {"float32": "<f4", "int32": "<i4", "uint32": "<u4", "uint16": "<u2",
          "uint8": "u1"}


class FormatError(ValueError):
  """A malformed, truncated, corrupted or unsupported model file.

  The message is one line; ``launch.evaluate`` prints it and exits with 2.
  """


def _pad(n: int) -> int:
  return -n % ALIGN


def required_version(layers: Any) -> int:
  """The lowest format version that holds ``layers``: 3 when an entry
  uses the folded BatchNorm encoding, else 2 when one uses the BatchNorm
  threshold encoding, else 1."""
  version = 1
  if isinstance(layers, list):
    for e in layers:
      if isinstance(e, dict) and isinstance(e.get("storage"), dict) and (
          "batchnorm" in e["storage"]):
        kind = e["storage"]["batchnorm"]
        version = max(version, BATCHNORM_STORAGE_VERSION.get(
            kind, VERSION) if isinstance(kind, str) else VERSION)
  return version


def write(path: str, header: dict[str, Any],
          tensors: dict[str, np.ndarray], *, overwrite: bool = False,
          version: int | None = None) -> int:
  """Writes ``header`` (without ``"tensors"``) and ``tensors`` to ``path``.

  The file's version is ``version`` when given (tests write inconsistent
  files with it), else :func:`required_version` of the layers.

  Written to a temporary file in the same directory, then renamed, so a
  reader never sees a partial file.  Refuses an existing ``path`` unless
  ``overwrite``.  Returns the file size in bytes.
  """
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists (pass --overwrite to replace it)")
  if version is None:
    version = required_version(header.get("layers"))
  if version not in VERSIONS:
    raise ValueError(f"cannot write format version {version}")
  table, chunks, offset = {}, [], 0
  for name, arr in tensors.items():
    dtype = np.dtype(arr.dtype).name
    if dtype not in DTYPES:
      raise TypeError(f"tensor {name!r}: dtype {dtype} is not storable")
    raw = np.ascontiguousarray(arr, dtype=DTYPES[dtype]).tobytes()
    table[name] = {"dtype": dtype, "shape": [int(d) for d in arr.shape],
                   "offset": offset, "nbytes": len(raw)}
    chunks.append(raw)
    chunks.append(b"\0" * _pad(len(raw)))
    offset += len(raw) + _pad(len(raw))
  header = {**header, "format": "sbn", "version": version, "tensors": table}
  head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
  body = b"".join([_PREFIX.pack(MAGIC, version, 0, len(head), offset), head,
                   b"\0" * _pad(_PREFIX.size + len(head)), *chunks])
  blob = body + hashlib.sha256(body).digest()
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".sbn-", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(blob)
    if not overwrite and os.path.exists(path):
      raise FileExistsError(f"{path} exists (pass --overwrite to replace it)")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return len(blob)


def read(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(header, tensors) of a model file; raises :class:`FormatError`.

  Checks, in order: size of the fixed prefix, magic, version, total size
  (truncation), SHA-256, header JSON, tensor table (dtype, shape, bounds).
  Tensors are read-only views of the file's bytes.
  """
  try:
    with open(path, "rb") as f:
      blob = f.read()
  except OSError as e:
    raise FormatError(f"cannot read {path}: {e.strerror or e}") from None
  return parse(blob)


def parse(blob: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """:func:`read` of bytes already in memory."""
  if len(blob) < _PREFIX.size + _DIGEST:
    raise FormatError(f"truncated file: {len(blob)} bytes is shorter than "
                      "the fixed header")
  magic, version, flags, hlen, dlen = _PREFIX.unpack_from(blob)
  if magic != MAGIC:
    raise FormatError(f"not a model file: bad magic {magic!r} (expected "
                      f"{MAGIC!r})")
  if version not in VERSIONS:
    raise FormatError(f"unsupported format version {version} (this reader "
                      f"knows versions {', '.join(map(str, VERSIONS))})")
  if flags != 0:
    raise FormatError(f"unknown flags {flags:#x}")
  data_at = _PREFIX.size + hlen + _pad(_PREFIX.size + hlen)
  expected = data_at + dlen + _DIGEST
  if len(blob) < expected:
    raise FormatError(f"truncated file: {len(blob)} bytes, the header "
                      f"announces {expected}")
  if len(blob) > expected:
    raise FormatError(f"{len(blob) - expected} unexpected bytes after the "
                      "end of the model")
  body = memoryview(blob)[:-_DIGEST]
  if hashlib.sha256(body).digest() != blob[-_DIGEST:]:
    raise FormatError("checksum mismatch: the file is corrupted")
  try:
    header = json.loads(bytes(body[_PREFIX.size:_PREFIX.size + hlen]))
  except (UnicodeDecodeError, ValueError) as e:
    raise FormatError(f"header is not valid JSON: {e}") from None
  if not isinstance(header, dict) or header.get("format") != "sbn":
    raise FormatError("header is not an sbn header (no \"format\": \"sbn\")")
  if header.get("version") != version:
    raise FormatError(f"header version {header.get('version')!r} differs "
                      f"from the file's {version}")
  table = header.get("tensors")
  if not isinstance(table, dict):
    raise FormatError("header has no tensor table")
  data = body[data_at:data_at + dlen]
  tensors = {}
  for name, t in table.items():
    tensors[name] = _tensor(name, t, data)
  return header, tensors


def _tensor(name: str, t: Any, data: memoryview) -> np.ndarray:
  if not isinstance(t, dict) or set(t) != {"dtype", "shape", "offset",
                                           "nbytes"}:
    raise FormatError(f"tensor {name!r}: malformed table entry")
  dtype, shape, offset, nbytes = t["dtype"], t["shape"], t["offset"], t[
      "nbytes"]
  if dtype not in DTYPES:
    raise FormatError(f"tensor {name!r}: unknown dtype {dtype!r}")
  if not (isinstance(shape, list) and all(
      isinstance(d, int) and not isinstance(d, bool) and d >= 0
      for d in shape)):
    raise FormatError(f"tensor {name!r}: bad shape {shape!r}")
  if not all(isinstance(v, int) and v >= 0 for v in (offset, nbytes)):
    raise FormatError(f"tensor {name!r}: bad offset/size")
  np_dtype = np.dtype(DTYPES[dtype])
  if nbytes != int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize:
    raise FormatError(f"tensor {name!r}: {nbytes} bytes do not hold a "
                      f"{dtype} array of shape {shape}")
  if offset + nbytes > len(data):
    raise FormatError(f"tensor {name!r} lies outside the data section")
  arr = np.frombuffer(data[offset:offset + nbytes], dtype=np_dtype)
  return arr.reshape(shape)
