"""Export of trained models to one ``.sbn`` file, and the CPU evaluator.

    python -m launch.export --workdir=RUN --out=m.sbn [--level=N | --member=K]
    python -m launch.evaluate --model=model.sbn --dataset=digits

A BENN run exported without ``--member`` is an ensemble: member files and
a JSON file with their vote weights (``_ensemble.py``, :class:`Ensemble`).

The layer-list spec (``_spec.py``: the ops, their attributes and arity,
the quantizer names, the activation kinds, :data:`ZERO_PRESERVING`) lives
here; the model zoo records its lists against it.

Everything imported here is NumPy (+ numba, SciPy when present) only: the
evaluator runs where JAX is not installed.  The JAX-side glue that reads a
run's workdir is :func:`export_run`, the one that writes a user's own model
checked against the evaluator :func:`export_model` (both imported
lazily).  File format:
``_format.py`` (container), ``_encode.py`` (layers and kernel encodings),
``_pack.py`` (bit planes; version 2 adds BatchNorm read only through a
sign stored as a per-channel threshold, ``bn_threshold=True``; version 3
BatchNorm after a binary-weight layer with real inputs folded into it as
one scale and shift, ``bn_fold=True``); evaluator: ``_evaluator.py``
(:class:`Model`: validation, the run, the per-layer plan, BatchNorm
folding), ``_ops.py`` (parameter-free ops incl. FBS's ``wta``,
BatchNorm), ``_gating.py`` (FBS-gated convs computing only the kept
channels), ``_decode.py`` (:func:`layer_arrays`: a file entry's
arrays with its storage decoded, for other executors such as
``experiments.models.load_executor``); kernels: ``_kernels.py``
(XNOR-popcount, uint64 words, numba with a NumPy twin), ``_sparse.py`` (CSR products, numba
or SciPy), ``_linear.py`` (the kernel chosen per layer at load time, the
CSR thresholds :data:`SPARSE_MAX_DENSITY`).  Benchmarks:
``bench/xnor_kernels.py``, ``bench/sparse_kernels.py``,
``bench/file_size.py``, ``bench/fbs_gating.py``.
"""
from experiments.export._ensemble import ENSEMBLE_FORMAT
from experiments.export._ensemble import Ensemble
from experiments.export._ensemble import is_ensemble_file
from experiments.export._decode import layer_arrays
from experiments.export._encode import ExportError
from experiments.export._encode import check_pruned_zero
from experiments.export._encode import encode
from experiments.export._encode import foldable_batchnorms
from experiments.export._encode import sign_read_batchnorms
from experiments.export._evaluator import Model
from experiments.export._format import FormatError
from experiments.export._format import VERSION
from experiments.export._format import VERSIONS
from experiments.export._format import read
from experiments.export._format import write
from experiments.export._kernels import numba_available
from experiments.export._linear import SPARSE_MAX_DENSITY
from experiments.export._spec import ACTIVATION_KINDS
from experiments.export._spec import ARITY
from experiments.export._spec import ATTRIBUTES
from experiments.export._spec import INPUT_QUANTIZERS
from experiments.export._spec import KERNEL_QUANTIZERS
from experiments.export._spec import LAYER_OPS
from experiments.export._spec import RESERVED_KEYS
from experiments.export._spec import SpecError
from experiments.export._spec import ZERO_PRESERVING
from experiments.export._spec import check_entry

__all__ = [
    "ENSEMBLE_FORMAT", "Ensemble", "ExportError", "FormatError", "Model",
    "SPARSE_MAX_DENSITY", "VERSION",
    # the layer-list spec (_spec.py)
    "ACTIVATION_KINDS", "ARITY", "ATTRIBUTES", "INPUT_QUANTIZERS",
    "KERNEL_QUANTIZERS", "LAYER_OPS", "RESERVED_KEYS", "SpecError",
    "ZERO_PRESERVING", "check_entry",
    "VERSIONS", "check_pruned_zero", "encode", "export_model", "export_run",
    "foldable_batchnorms", "is_ensemble_file", "layer_arrays",
    "numba_available", "read", "sign_read_batchnorms", "write",
    "write_model",
]


def write_model(path, layers, variables, mask=None, *, input_shape,
                meta=None, overwrite=False, bn_threshold=False,
                bn_fold=False) -> int:
  """:func:`encode` then :func:`write`; returns the file size in bytes."""
  header, tensors = encode(layers, variables, mask, input_shape=input_shape,
                           meta=meta, bn_threshold=bn_threshold,
                           bn_fold=bn_fold)
  return write(path, header, tensors, overwrite=overwrite)


def export_run(workdir, out, *, level=None, member=None, overwrite=False,
               bn_threshold=True, bn_fold=True,
               allow_unfinished=False, shrink=False) -> dict:
  """Exports the result a run's driver declares (needs JAX; see
  ``_from_run.py`` and ``experiments/drivers.py``)."""
  from experiments.export import _from_run  # pylint: disable=g-import-not-at-top
  return _from_run.export_run(workdir, out, level=level, member=member,
                              overwrite=overwrite, bn_threshold=bn_threshold,
                              bn_fold=bn_fold,
                              allow_unfinished=allow_unfinished,
                              shrink=shrink)


def export_model(path, model, variables, *, input_shape, **kwargs) -> dict:
  """Writes a user's own Linen model (or a callable with its layer list)
  to ``path``, after checking the file's logits against the model's on a
  batch; a mismatch names the first differing layer and writes nothing
  (needs JAX; ``experiments.models.export_model``, ``_export.py`` there,
  has the arguments)."""
  from experiments.export import _from_run  # pylint: disable=g-import-not-at-top
  return _from_run.export_model(path, model, variables,
                                input_shape=input_shape, **kwargs)
