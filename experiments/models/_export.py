r"""A user's own model -> a verified ``.sbn`` file (:func:`export_model`).

``launch.export`` exports a run of this project; :func:`export_model`
exports any model built from the layer-list ops, checked on a batch
before the file exists:

1. the layer list: recorded from a Linen model (:func:`layer_list`, its
   ``__call__`` written with the recording helpers ``models.layers``) or
   written by hand (``layers=``), e.g. for an NNX model;
2. the file is encoded (``experiments.export.encode``), written to a
   temporary directory next to ``path``, loaded with the NumPy evaluator
   (``experiments.export.Model``: every check of a file) and run on a
   sample batch (given, or seeded standard-normal of ``input_shape``);
3. its logits are compared with the JAX model's, elementwise
   :math:`|y_{file} - y_{jax}| \le \mathrm{atol} + \mathrm{rtol}\,
   |y_{jax}|`.  On a mismatch the layers are compared in the model's
   order (the model's own intermediates, :func:`layer_outputs`, against the
   evaluator's, by layer name), the temporary file is deleted and an
   :class:`experiments.export.ExportError` names the first layer that
   differs or is missing: ``layer 'relu_0' of the JAX model is missing
   from the file; the file was not written``;
4. only then is the file written to ``path`` (``experiments.export.write``:
   a temporary file hard-linked into place, so it appears whole or not at
   all; an existing ``path`` is refused unless ``overwrite``).

A model given as a callable ``apply(x)`` (an NNX model: ``lambda x:
model(x)`` after ``model.eval()``) needs ``layers``, whose ``"params"`` are
paths into ``variables`` (e.g. ``nnx.to_pure_dict(nnx.state(model))``).
It may return ``{layer name: output}`` (in order, the logits last) instead
of the logits, to have the first differing layer named; otherwise a
mismatch names the output layer.

Layers whose file form is not their JAX output are not compared one by one
(a BatchNorm stored as a sign threshold or folded into the layer before it,
``bn_threshold`` / ``bn_fold``, both off by default); their effect shows in
the next layer.  A binary layer's sign can flip where a pre-activation is
within float32 rounding of 0: choose a sample away from such ties.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np

from experiments import export
from experiments.models import _layers

_NOT_WRITTEN = "the file was not written"


def _numpy(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree),
                      is_leaf=lambda x: x is None)


def _check_path(path: str, overwrite: bool) -> None:
  if os.path.isdir(path):
    raise IsADirectoryError(f"{path} is a directory")
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists (pass overwrite=True to replace "
                          "it)")
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise FileNotFoundError(f"the directory of {path}, {parent}, does not "
                            "exist")


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) -
                             np.asarray(b, np.float64)), initial=0.0))


def _close(a, b, atol: float, rtol: float) -> bool:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return a.shape == b.shape and bool(
      np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def _not_compared(entry: Mapping[str, Any]) -> bool:
  """A layer whose file output is not its JAX output (BatchNorm stored as
  a threshold, or folded into the dense/conv it reads)."""
  return "batchnorm" in (entry.get("storage") or {})


def first_difference(file_layers: Sequence[Mapping[str, Any]],
                     file_outputs: Mapping[str, Any],
                     reference: Mapping[str, Any], *, atol: float,
                     rtol: float) -> str | None:
  """The first layer, in the reference's order, whose file output differs
  from the reference output of the same name (or is missing), as one
  line; None if every layer agrees.

  >>> ones = np.ones((1, 2), np.float32)
  >>> reference = {"D": ones, "relu_0": ones}
  >>> first_difference([{"name": "D"}], {"D": ones}, reference,
  ...                  atol=1e-4, rtol=1e-4)
  "layer 'relu_0' of the JAX model is missing from the file"
  >>> first_difference([{"name": "D"}, {"name": "relu_0"}],
  ...                  {"D": ones, "relu_0": 0 * ones}, reference,
  ...                  atol=1e-4, rtol=1e-4)
  "layer 'relu_0' differs from the JAX model (max |diff| 1)"
  """
  by_name = {e["name"]: e for e in file_layers}
  for name, ref in reference.items():
    if name not in by_name:
      return f"layer {name!r} of the JAX model is missing from the file"
    if _not_compared(by_name[name]):
      continue
    got = np.asarray(file_outputs[name])
    ref = np.asarray(ref)
    if got.shape != ref.shape:
      return (f"layer {name!r} differs from the JAX model (shape "
              f"{got.shape[1:]} vs {ref.shape[1:]})")
    if not _close(got, ref, atol, rtol):
      return (f"layer {name!r} differs from the JAX model (max |diff| "
              f"{_max_diff(got, ref):.3g})")
  extra = [e["name"] for e in file_layers if e["name"] not in reference]
  if extra:
    return f"layer {extra[0]!r} of the file is not in the JAX model"
  return None


def export_model(path: str, model: nn.Module | Callable, variables, *,
                 input_shape: Sequence[int],
                 layers: Sequence[Mapping[str, Any]] | None = None,
                 sample: Any = None, atol: float = 1e-4,
                 rtol: float = 1e-4, meta: Mapping[str, Any] | None = None,
                 mask=None, overwrite: bool = False,
                 bn_threshold: bool = False, bn_fold: bool = False,
                 seed: int = 0, batch_size: int = 8) -> dict:
  """Writes ``model`` to ``path`` as an ``.sbn`` file, verified first.

  See the module docstring.  Returns ``{"out", "bytes", "layers",
  "max_abs_diff"}`` (the logits' largest difference on the sample).

  Args:
    path: the file to write.
    model: a Linen module (applied as ``model.apply(variables, x,
      train=False)``) or a callable ``apply(x)`` (then ``layers`` is
      required).
    variables: ``{"params": ..., "batch_stats": ...}`` of a Linen model;
      for a callable, whatever the entries' ``"params"`` paths index.
    input_shape: per-example input shape, no batch axis.
    layers: the layer list (default: recorded from the Linen model).
    sample: a batch (N, *input_shape) to check on (default: ``batch_size``
      seeded standard-normal examples).
    atol, rtol: the tolerance of the comparison.
    meta: JSON metadata stored in the file (``dataset`` names the dataset
      ``launch.evaluate`` uses by default).
    mask, bn_threshold, bn_fold: as for ``experiments.export.encode``.
    overwrite: replace an existing ``path``.

  Raises:
    FileExistsError: ``path`` exists and not ``overwrite``.
    ValueError: a sample of the wrong shape, or a callable without layers.
    LayerListError: the Linen model cannot be recorded.
    ExportError: the layer list and variables do not make a valid file
      (e.g. a kernel of the wrong shape), or the file does not compute what
      the model computes; nothing is written.
  """
  _check_path(path, overwrite)
  input_shape = tuple(int(d) for d in input_shape)
  is_linen = isinstance(model, nn.Module)
  if not is_linen and not callable(model):
    raise TypeError(f"model must be a Linen module or a callable, got "
                    f"{type(model).__name__}")
  if layers is None:
    if not is_linen:
      raise ValueError("a callable model needs its layer list (layers=...)")
    layers = _layers.layer_list(model, input_shape)
  layers = [dict(e) for e in layers]
  if sample is None:
    rng = np.random.default_rng(seed)
    sample = rng.standard_normal((batch_size, *input_shape))
  sample = np.asarray(sample, np.float32)
  if sample.shape[1:] != input_shape:
    raise ValueError(f"sample of shape {sample.shape[1:]} per example, "
                     f"input_shape is {input_shape}")
  variables = _numpy(variables)
  header, tensors = export.encode(
      layers, variables, mask, input_shape=input_shape,
      meta={"exporter": "experiments.export.export_model", **(meta or {})},
      bn_threshold=bn_threshold, bn_fold=bn_fold)

  tmpdir = tempfile.mkdtemp(prefix=".sbn-check-",
                            dir=os.path.dirname(os.path.abspath(path)))
  try:
    tmp = os.path.join(tmpdir, "model.sbn")
    export.write(tmp, header, tensors)
    try:
      loaded = export.Model.load(tmp)
    except export.FormatError as e:
      raise export.ExportError(f"{e}; {_NOT_WRITTEN}") from None
    outputs: dict[str, np.ndarray] = {}
    got = loaded.run(sample, outputs=outputs)
  finally:
    shutil.rmtree(tmpdir, ignore_errors=True)
  if is_linen:
    reference = _layers.layer_outputs(model, variables, sample)
  else:
    out = model(sample)
    reference = dict(out) if isinstance(out, Mapping) else None
    if reference is None:
      reference = {layers[-1]["name"]: out}
  reference = {k: np.asarray(v) for k, v in reference.items()}
  expected = list(reference.values())[-1]
  if not _close(got, expected, atol, rtol):
    line = first_difference(layers, outputs, reference, atol=atol, rtol=rtol)
    if line is None or not is_linen and len(reference) == 1:
      line = (f"layer {layers[-1]['name']!r} (the output) differs from the "
              f"model (max |diff| {_max_diff(got, expected):.3g})"
              if got.shape == expected.shape else
              f"the output differs from the model (shape {got.shape[1:]} "
              f"vs {expected.shape[1:]})")
    raise export.ExportError(f"{line}; {_NOT_WRITTEN}")
  size = export.write(path, header, tensors, overwrite=overwrite)
  return {"out": path, "bytes": size, "layers": len(layers),
          "max_abs_diff": _max_diff(got, expected)}
