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
``_spec.py`` whose ``"params"`` map role -> *tensor
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

Writing.  :func:`write` writes a temporary file in the target's directory
and then hard-links it to the target (``os.link`` fails when the target
exists, so of two concurrent writers exactly one succeeds and the other
gets :class:`FileExistsError`; with ``overwrite`` it is ``os.replace``);
a reader never sees a partial file.  The file's mode follows the umask
(``0o666 & ~umask``, e.g. 0644), not ``mkstemp``'s 0600.

Reading refuses, each with a one-line :class:`FormatError`, before
allocating anything from it: a header longer than
:data:`MAX_HEADER_BYTES` (16 MiB) or nested deeper than
:data:`MAX_HEADER_DEPTH` (64) levels of JSON objects/arrays, ``NaN`` /
``Infinity`` or an overflowing number in the header, a tensor whose shape
(its product computed exactly, no int64 wrap-around) needs more bytes than
the data section holds or than its ``nbytes``, and a ``"meta"`` that is not
what :func:`check_meta` accepts.  NaN in any float tensor is refused by
the reader; ``inf`` and negative BatchNorm variances by the evaluator
(``_evaluator.py``), which knows each tensor's role.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
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
# Bounds on the header checked before it is parsed: its length in bytes and
# the nesting depth of its JSON objects/arrays (a real header is at most a
# few MB and nested about 6 deep; these stop a crafted file from exhausting
# memory or the JSON parser's recursion).
MAX_HEADER_BYTES = 16 << 20
MAX_HEADER_DEPTH = 64
# "meta" keys the evaluator reads, and the JSON types each may have.
META_TYPES = {"dataset": (str, type(None)), "dataset_kwargs": (dict, type(None)),
              "seed": (int,), "model": (str, type(None)),
              "step": (int, type(None))}


class FormatError(ValueError):
  """A malformed, truncated, corrupted or unsupported model file.

  The message is one line; ``launch.evaluate`` prints it and exits with 2.
  """


def check_meta(meta: Any) -> None:
  """Raises :class:`FormatError` unless ``meta`` is what the writer
  produces: a JSON object (``dict`` with ``str`` keys) of JSON values
  (``str``, ``int``, ``float`` (finite), ``bool``, ``None``, lists and
  objects of these), where the keys of :data:`META_TYPES` that the
  evaluator reads have their types (``dataset`` a string or null,
  ``dataset_kwargs`` an object or null, ``seed`` an integer, ...)."""
  if not isinstance(meta, dict):
    raise FormatError(f"'meta' must be a JSON object, not "
                      f"{type(meta).__name__}")
  stack = [("meta", meta)]
  while stack:
    where, v = stack.pop()
    if isinstance(v, dict):
      for k, x in v.items():
        if not isinstance(k, str):
          raise FormatError(f"{where}: key {k!r} is not a string")
        stack.append((f"{where}.{k}", x))
    elif isinstance(v, (list, tuple)):
      stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))
    elif isinstance(v, float) and not math.isfinite(v):
      raise FormatError(f"{where}: {v} is not a JSON number")
    elif not (v is None or isinstance(v, (str, int, float, bool))):
      raise FormatError(f"{where}: {type(v).__name__} is not a JSON value")
  for key, types in META_TYPES.items():
    if key in meta and (not isinstance(meta[key], types) or (
        isinstance(meta[key], bool) and bool not in types)):
      names = " or ".join("null" if t is type(None) else {
          str: "a string", int: "an integer", dict: "an object"}[t]
                          for t in types)
      raise FormatError(f"meta.{key} must be {names}, not "
                        f"{meta[key]!r:.40}")


def _umask() -> int:
  """The process's umask, read without changing it where Linux reports it
  (``os.umask`` sets it, which races with other threads creating files)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _exists(path: str) -> FileExistsError:
  return FileExistsError(f"{path} exists (pass --overwrite to replace it)")


def _link_exclusive(tmp: str, path: str) -> None:
  """Makes ``tmp`` appear at ``path`` unless ``path`` exists, atomically.

  ``os.link`` fails with EEXIST when ``path`` exists (a dangling symlink
  included).  On a file system without hard links, the name is reserved
  with ``O_CREAT | O_EXCL`` (still exclusive; a reader may see the empty
  reservation, which it refuses as truncated) and then replaced."""
  try:
    os.link(tmp, path)
    return
  except FileExistsError:
    raise _exists(path) from None
  except OSError as e:
    if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP,
                       errno.ENOSYS, errno.EMLINK, errno.EACCES):
      raise
  try:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
  except FileExistsError:
    raise _exists(path) from None
  os.replace(tmp, path)


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

  Written to a temporary file in the same directory, then hard-linked to
  ``path`` (``os.replace`` with ``overwrite``), so a reader never sees a
  partial file and an existing ``path`` is refused atomically: of two
  concurrent writers of one new ``path`` exactly one succeeds, the other
  gets :class:`FileExistsError`.  The mode is ``0o666 & ~umask``.  A
  ``"meta"`` that :func:`check_meta` refuses is refused here too.
  Returns the file size in bytes.
  """
  if os.path.exists(path) and not overwrite:
    raise _exists(path)
  check_meta(header.get("meta", {}))
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
  fd, tmp = tempfile.mkstemp(prefix=".sbn-", suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      os.fchmod(f.fileno(), 0o666 & ~_umask())
      f.write(blob)
    if overwrite:
      os.replace(tmp, path)
    else:
      _link_exclusive(tmp, path)
  finally:
    if os.path.lexists(tmp):
      os.unlink(tmp)
  return len(blob)


def read(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(header, tensors) of a model file; raises :class:`FormatError`.

  Checks, in order: size of the fixed prefix, magic, version, flags,
  header length (:data:`MAX_HEADER_BYTES`), total size (truncation),
  SHA-256, header nesting depth (:data:`MAX_HEADER_DEPTH`), header JSON
  (no NaN / Infinity / overflowing numbers), ``meta`` (:func:`check_meta`),
  tensor table (dtype, shape, bounds, the shape's exact byte count against
  the data present), no NaN in a float tensor.  Tensors are read-only
  views of the file's bytes.
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
  if hlen > MAX_HEADER_BYTES:
    raise FormatError(f"header of {hlen} bytes exceeds the limit of "
                      f"{MAX_HEADER_BYTES} bytes")
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
  raw = bytes(body[_PREFIX.size:_PREFIX.size + hlen])
  depth = _depth(raw)
  if depth > MAX_HEADER_DEPTH:
    raise FormatError(f"header JSON is nested {depth} deep, more than the "
                      f"limit of {MAX_HEADER_DEPTH}")
  try:
    header = json.loads(raw, parse_constant=_no_constant,
                        parse_float=_finite_float)
  except (UnicodeDecodeError, ValueError, RecursionError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise FormatError(f"header is not valid JSON: {message}") from None
  if not isinstance(header, dict) or header.get("format") != "sbn":
    raise FormatError("header is not an sbn header (no \"format\": \"sbn\")")
  if header.get("version") != version:
    raise FormatError(f"header version {header.get('version')!r} differs "
                      f"from the file's {version}")
  check_meta(header.get("meta", {}))
  table = header.get("tensors")
  if not isinstance(table, dict):
    raise FormatError("header has no tensor table")
  data = body[data_at:data_at + dlen]
  tensors = {}
  for name, t in table.items():
    tensors[name] = _tensor(name, t, data)
  return header, tensors


# A JSON string (escapes included): removed before counting brackets.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _depth(raw: bytes) -> int:
  """The nesting depth of the JSON objects/arrays in ``raw`` (exact for
  valid JSON; for invalid JSON at least the depth the parser reaches
  before it fails), in linear time without recursion."""
  b = np.frombuffer(_JSON_STRING.sub(b'""', raw), np.uint8)
  step = ((b == ord("[")) | (b == ord("{"))).astype(np.int32) - (
      (b == ord("]")) | (b == ord("}"))).astype(np.int32)
  return int(np.cumsum(step).max(initial=0))


def _no_constant(name: str):
  raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
  v = float(text)
  if not math.isfinite(v):
    raise ValueError(f"the number {text:.40} overflows a float")
  return v


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
  if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
             for v in (offset, nbytes)):
    raise FormatError(f"tensor {name!r}: bad offset/size")
  np_dtype = np.dtype(DTYPES[dtype])
  need = math.prod(shape) * np_dtype.itemsize  # exact: Python ints
  if need > len(data):
    raise FormatError(f"tensor {name!r}: shape {shape} needs {need} bytes, "
                      f"more than the {len(data)} bytes of the data section")
  if nbytes != need:
    raise FormatError(f"tensor {name!r}: {nbytes} bytes do not hold a "
                      f"{dtype} array of shape {shape}")
  if offset + nbytes > len(data):
    raise FormatError(f"tensor {name!r} lies outside the data section")
  arr = np.frombuffer(data[offset:offset + nbytes], dtype=np_dtype)
  if arr.dtype.kind == "f" and np.isnan(arr).any():
    at = np.unravel_index(int(np.argmax(np.isnan(arr))), shape)
    raise FormatError(f"tensor {name!r}: NaN at index "
                      f"{tuple(int(i) for i in at)}")
  return arr.reshape(shape)
