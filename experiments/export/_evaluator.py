r"""The CPU reference evaluator: loads a ``.sbn`` file and runs it.

    model = Model.load("model.sbn")          # validates everything
    logits = model(images)                   # (N, *input_shape) float32
    model.plan()                             # per layer: op, kernel, shape

NumPy only, plus numba (XNOR-popcount kernels) and SciPy (CSR) when
present; never JAX.  Loading checks the file (``_format.read``), then every
entry: known op and attributes, unique names, inputs that are earlier
entries, the tensors each role needs with the right dtype and shape, and
finally runs one zero example through the model and compares every
computed shape with the recorded ``"shape"``.  It refuses non-finite
weights (NaN in any float tensor, by ``_format``; inf in any float tensor
but a BatchNorm threshold, where +-inf encodes a constant channel), a
negative BatchNorm variance, and a ``"meta"`` of the wrong types
(``_format.check_meta``).  Any failure is a :class:`FormatError` with a
one-line message naming the layer and tensor.

``Model(..., fold_batchnorm=True)`` folds BatchNorm into the preceding
dense/conv where it is that layer's only reader (not the threshold
encoding of format version 2, which outputs +-1 and reports
``sign threshold``).  A BatchNorm stored folded (format version 3, see
``_encode.py``) is the identity and reports ``folded into <layer>``; the
binary-weight layer before it computes ``scale * (x . W_b) + shift``
(reported ``blas+bn`` / ``csr-...+bn``).  Loading checks that such a layer
has real inputs, is read only by its folded BatchNorm, and that a folded
BatchNorm reads such a layer.

``Model(..., skip_gated=True)`` (the default) makes the float convs
behind an FBS gate (``gate`` whose g is a ``wta`` output) compute only
each example's kept output channels and read only its nonzero input
channels (``_gating.py``); ``plan()`` reports them as ``blas skip(out <-
wta_i, in <- wta_j)`` and :meth:`Model.macs` gives the MACs they did.
``skip_gated=False`` computes every channel (same logits up to float32
summation order).

Float layers compute in float32 with JAX's formulas (agreement to ~1e-6
relative); binary layers' accumulations are exact integers.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from experiments.export import _format
from experiments.export import _gating
from experiments.export import _kernels
from experiments.export import _linear
from experiments.export import _ops
from experiments.export import _pack
from experiments.export import _spec
from experiments.export._format import FormatError

F32 = np.float32


def _ints(v, n=None) -> bool:
  return isinstance(v, list) and (n is None or len(v) == n) and all(
      isinstance(d, int) and not isinstance(d, bool) for d in v)


class _Layer:
  """One entry: ``fn(list of inputs) -> output`` plus what to report."""

  def __init__(self, entry: dict, fn: Callable, kernel: str, linear=None):
    self.entry, self.fn, self.kernel = entry, fn, kernel
    self.linear = linear
    self.name, self.op = entry["name"], entry["op"]
    self.inputs = list(entry["inputs"])
    self.extra: list[str] = []  # more inputs (the gates of a skipping conv)
    self.gated = None  # the _gating.GatedConv of a skipping conv
    self.shape = tuple(entry["shape"])


def _check(check: Callable, e: dict, **kwargs) -> None:
  """A check of the layer-list spec, its SpecError as a FormatError."""
  try:
    check(e, **kwargs)
  except _spec.SpecError as err:
    raise FormatError(str(err)) from None


def _threshold_batchnorm(e, t, version):
  """The threshold encoding of a BatchNorm read only through a sign
  (``_encode.py``): +1 where x >= t (x <= t where the direction bit is
  1), else -1."""
  name, c = e["name"], e["shape"][-1]
  if version < 2:
    raise FormatError(f"layer {name!r}: the batchnorm threshold encoding "
                      f"needs format version 2, the file is version "
                      f"{version}")
  if set(t) != {"threshold", "direction"}:
    raise FormatError(f"layer {name!r}: a threshold batchnorm takes the "
                      f"tensors 'threshold' and 'direction', got "
                      f"{sorted(t)}")
  thr, words = t["threshold"], t["direction"]
  if thr.dtype != F32 or thr.shape != (c,):
    raise FormatError(f"layer {name!r}: shape mismatch or wrong dtype in "
                      "tensor 'threshold'")
  if words.dtype != np.uint32 or words.shape != (_pack.num_words(c),):
    raise FormatError(f"layer {name!r}: shape mismatch or wrong dtype in "
                      "tensor 'direction'")
  if not _pack.padding_is_zero(words, c):
    raise FormatError(f"layer {name!r}: nonzero padding bits in "
                      "'direction'")
  if np.any(np.isnan(thr)):
    raise FormatError(f"layer {name!r}: NaN in 'threshold'")
  # _ops.threshold_sign with its per-channel factors computed once.
  sgn = np.where(_pack.unpack(words, c), F32(-1), F32(1))
  bound = (thr * sgn).astype(F32)
  return lambda xs: np.where(xs[0] * sgn >= bound, F32(1), F32(-1))


def _batchnorm(e, t):
  for role in ("mean", "var", "scale", "bias"):
    if role in t and (t[role].dtype != F32 or t[role].shape !=
                      (e["shape"][-1],)):
      raise FormatError(f"layer {e['name']!r}: shape mismatch or wrong dtype "
                        f"in tensor {role!r}")
  for role in ("mean", "var"):
    if role not in t:
      raise FormatError(f"layer {e['name']!r}: missing tensor for role "
                        f"{role!r}")
  if np.any(t["var"] < 0):
    c = int(np.argmax(t["var"] < 0))
    raise FormatError(f"layer {e['name']!r}: negative variance "
                      f"{float(t['var'][c]):g} in 'var' (channel {c})")
  mul, add = _ops.batchnorm_affine(t["mean"], t["var"], t.get("scale"),
                                   t.get("bias"), e["epsilon"])
  mean = t["mean"]
  fn = lambda xs: (xs[0] - mean) * mul + add
  fn.affine = (mean, mul, add)
  return fn


def _simple(e) -> Callable:
  op = e["op"]
  if op == "activation":
    f = _ops.ACTIVATIONS[e["kind"]]
    return lambda xs: f(xs[0])
  if op == "sign":
    return lambda xs: _ops.sign(xs[0])
  if op == "pool":
    return lambda xs: _ops.pool(xs[0], e)
  if op == "flatten":
    return lambda xs: xs[0].reshape(xs[0].shape[0], -1)
  if op == "add":
    def add(xs):
      if any(x.shape != xs[0].shape for x in xs):
        raise ValueError(f"add of shapes {[x.shape for x in xs]}")
      y = xs[0]
      for x in xs[1:]:
        y = y + x
      return y
    return add
  if op == "concat":
    return lambda xs: np.concatenate(xs, axis=e["axis"])
  if op == "upsample":
    fh, fw = e["scale"]
    return lambda xs: xs[0].repeat(fh, axis=1).repeat(fw, axis=2)
  if op == "wta":
    k = e["k"]
    def wta(xs):
      if xs[0].ndim != 2:
        raise ValueError(f"wta of {xs[0].shape}, needs (N, C)")
      return _ops.wta(xs[0], k)
    return wta
  if op == "gate":
    def gate(xs):
      x, g = xs
      if g.ndim != 2 or x.ndim != 4 or g.shape[-1] != x.shape[-1]:
        raise ValueError(f"gate of {x.shape} by {g.shape}")
      return x * g[:, None, None, :]
    return gate
  raise AssertionError(op)


class Model:
  """A loaded model file; call it on a batch to get the logits."""

  def __init__(self, header: dict, tensors: dict[str, np.ndarray], *,
               use_numba: bool | None = None,
               sparse_max_density: float | None = None,
               fold_batchnorm: bool = False, skip_gated: bool = True):
    self.header, self.meta = header, header.get("meta", {})
    _format.check_meta(self.meta)
    self.version = header.get("version", 1)
    self.use_numba = (_kernels.numba_available() if use_numba is None else
                      bool(use_numba) and _kernels.numba_available())
    shape = header.get("input_shape")
    if not _ints(shape) or not shape or min(shape) < 1:
      raise FormatError(f"bad input_shape {shape!r}")
    self.input_shape = tuple(shape)
    layers = header.get("layers")
    if not isinstance(layers, list) or not layers:
      raise FormatError("the file holds no layers")
    shapes: dict[str, tuple] = {"input": self.input_shape}
    used: set[str] = set()
    self.layers: list[_Layer] = []
    for e in layers:
      self.layers.append(self._build(e, tensors, shapes, sparse_max_density))
      used.update(e["inputs"])
      shapes[e["name"]] = tuple(e["shape"])
    self._check_folded()
    unused = [l.name for l in self.layers[:-1] if l.name not in used]
    if unused:
      raise FormatError(f"layers not used by the output: {unused}")
    self._dry_run()
    if fold_batchnorm:
      self._fold_batchnorm()
    self.skip_gated = bool(skip_gated)
    if self.skip_gated:
      self._plan_skipping()

  def _check_folded(self) -> None:
    """A layer holding a folded BatchNorm is read by that BatchNorm only
    (the BatchNorm's side is checked in :meth:`_build`)."""
    readers: dict[str, list[_Layer]] = {}
    for l in self.layers:
      for i in l.inputs:
        readers.setdefault(i, []).append(l)
    for l in self.layers:
      if l.linear is None or l.linear.scale is None:
        continue
      r = readers.get(l.name, [])
      if len(r) != 1 or r[0].kernel != f"folded into {l.name}":
        raise FormatError(f"layer {l.name!r}: a layer holding a folded "
                          "batchnorm must be read by that batchnorm only, "
                          f"it is read by {[x.name for x in r]}")

  def _plan_skipping(self) -> None:
    """Convs behind an FBS gate compute only the kept channels
    (``_gating.py``); they report ``skip(out <- wta, in <- wta)``."""
    eligible = {l.name for l in self.layers
                if l.op == "conv" and l.linear is not None and
                l.linear.kernel.startswith("blas") and
                l.linear.groups == 1 and l.linear.quantize is None and
                l.linear.scale is None}
    plan = _gating.find([l.entry for l in self.layers], eligible)
    if plan and self.use_numba:
      _gating.warm_up()
    for l in self.layers:
      p = plan.get(l.name)
      if p is None:
        continue
      gated = _gating.GatedConv(l.linear, p["out"] is not None,
                                p["in"] is not None)
      l.extra = [w for w in (p["out"], p["in"]) if w is not None]
      l.fn, l.gated = gated, gated
      parts = [f"{k} <- {p[k]}" for k in ("out", "in") if p[k] is not None]
      l.kernel = f"{l.kernel} skip({', '.join(parts)})"

  def macs(self) -> dict[str, tuple[int, int]]:
    """Per skipping conv, (MACs computed, dense MACs) summed over every
    example run so far (padding channels of :func:`_gating.kept` count as
    computed)."""
    return {l.name: tuple(l.gated.macs) for l in self.layers
            if l.gated is not None}

  def _fold_batchnorm(self) -> None:
    r"""Folds each BatchNorm whose input is a dense/conv layer read by
    nothing else into that layer:
    :math:`((xW + b) - \mu)\,m + a = x(W m) + ((b - \mu)\,m + a)`
    (XNOR layers scale ``alpha`` instead, so their integer sums stay
    exact).  The BatchNorm becomes the identity and reports
    ``folded into <layer>``; results change by float32 rounding only."""
    readers: dict[str, int] = {}
    for l in self.layers:
      for i in l.inputs:
        readers[i] = readers.get(i, 0) + 1
    by_name = {l.name: l for l in self.layers}
    for l in self.layers:
      if l.op != "batchnorm":
        continue
      src = by_name.get(l.inputs[0])
      if getattr(l.fn, "affine", None) is None:
        continue  # the threshold encoding: nothing to fold
      if src is None or src.linear is None or readers[src.name] != 1:
        continue
      src.linear.fold_affine(*l.fn.affine)
      src.kernel = src.linear.kernel
      l.fn, l.kernel = (lambda xs: xs[0]), f"folded into {src.name}"

  @classmethod
  def load(cls, path: str, **kwargs) -> "Model":
    """Reads and validates ``path``; raises :class:`FormatError`."""
    header, tensors = _format.read(path)
    return cls(header, tensors, **kwargs)

  def _build(self, e, tensors, shapes, sparse_max_density) -> _Layer:
    keys = _spec.RESERVED_KEYS
    if not isinstance(e, dict) or any(k not in e for k in keys):
      name = e.get("name") if isinstance(e, dict) else None
      raise FormatError(f"layer {name!r}: entry lacks one of {keys}")
    name, op = e["name"], e["op"]
    if not isinstance(name, str) or name in shapes:
      raise FormatError(f"layer {name!r}: duplicate or reserved name")
    _check(_spec.check_op, e)
    ins = e["inputs"]
    if not isinstance(ins, list) or not ins or any(
        not isinstance(i, str) or i not in shapes for i in ins):
      raise FormatError(f"layer {name!r}: inputs {ins!r} are not earlier "
                        "layers")
    _check(_spec.check_arity, e)
    if not _ints(e["shape"]) or min(e["shape"], default=1) < 1:
      raise FormatError(f"layer {name!r}: bad shape {e['shape']!r}")
    params = e["params"]
    if not isinstance(params, dict) or any(
        not isinstance(v, str) for v in params.values()):
      raise FormatError(f"layer {name!r}: bad params")
    for role, tname in params.items():
      if tname not in tensors:
        raise FormatError(f"layer {name!r}: missing tensor {tname!r}")
      arr = tensors[tname]
      if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)) and not (
          op == "batchnorm" and role == "threshold" and
          not np.any(np.isnan(arr))):
        bad = "NaN" if np.any(np.isnan(arr)) else "inf"
        raise FormatError(f"layer {name!r}: {bad} in {role!r} (tensor "
                          f"{tname!r})")
    # Lenient: a key that no op has is ignored, as it always was.
    _check(_spec.check_attributes, e, strict=False)
    in_shape = shapes[ins[0]]
    if op in ("dense", "conv"):
      _linear.check_shapes(e, tensors, in_shape)
      sign_input = any(l.name == ins[0] and l.op == "sign"
                       for l in self.layers)
      if "batchnorm" in e["storage"]:
        self._need_version(e, "the folded batchnorm encoding", 3)
        if e.get("input_quantizer") is not None or sign_input:
          raise FormatError(f"layer {name!r}: a folded batchnorm needs a "
                            "layer with real inputs")
      lin = _linear.Linear(e, tensors, in_shape, use_numba=self.use_numba,
                           sparse_max_density=sparse_max_density,
                           sign_input=sign_input)
      return _Layer(e, lambda xs: lin(xs[0]), lin.kernel, lin)
    if params and op != "batchnorm":
      raise FormatError(f"layer {name!r}: op {op} takes no tensors")
    if op == "batchnorm":
      t = {role: tensors[tname] for role, tname in params.items()}
      st = e.get("storage")
      if st is None:
        return _Layer(e, _batchnorm(e, t), "numpy")
      if st == {"batchnorm": "folded"}:
        return self._folded_batchnorm(e, t)
      if st != {"batchnorm": "threshold"}:
        raise FormatError(f"layer {name!r}: unknown batchnorm storage "
                          f"{st!r}")
      return _Layer(e, _threshold_batchnorm(e, t, self.version),
                    "sign threshold")
    return _Layer(e, _simple(e), "numpy")

  def _need_version(self, e, what, version) -> None:
    if self.version < version:
      raise FormatError(f"layer {e['name']!r}: {what} needs format version "
                        f"{version}, the file is version {self.version}")

  def _folded_batchnorm(self, e, t) -> _Layer:
    """A BatchNorm stored folded into the binary layer it reads: the
    identity (that layer computes ``scale * (x . W_b) + shift``)."""
    name = e["name"]
    self._need_version(e, "the folded batchnorm encoding", 3)
    if t:
      raise FormatError(f"layer {name!r}: a folded batchnorm takes no "
                        f"tensors, got {sorted(t)}")
    src = next(l for l in self.layers if l.name == e["inputs"][0]) if (
        e["inputs"][0] != "input") else None
    if src is None or src.linear is None or src.linear.scale is None:
      raise FormatError(f"layer {name!r}: a folded batchnorm must read a "
                        "dense/conv that holds its scale and shift")
    return _Layer(e, lambda xs: xs[0], f"folded into {src.name}")

  def _dry_run(self) -> None:
    """One zero example through the model: computed vs recorded shapes."""
    self.run(np.zeros((1,) + self.input_shape, F32), check=True)

  def run(self, x: np.ndarray, *, timings: dict[str, float] | None = None,
          outputs: dict[str, np.ndarray] | None = None,
          check: bool = False,
          clock: Callable[[], float] = time.perf_counter) -> np.ndarray:
    """Logits of the batch ``x`` (N, *input_shape).

    ``timings`` (a dict) accumulates seconds per layer name; ``outputs``
    (a dict) receives every layer's output.  ``check`` compares every
    output shape with the recorded one.  ``clock`` reads the time for
    ``timings`` (e.g. ``time.thread_time`` for the CPU time of this
    thread, robust to other jobs when the BLAS runs on one thread).
    """
    x = np.asarray(x, F32)
    if x.shape[1:] != self.input_shape:
      raise ValueError(f"input of shape {x.shape[1:]}, the model takes "
                       f"{self.input_shape}")
    values: dict[str, np.ndarray] = {"input": x}
    for layer in self.layers:
      ins = [values[i] for i in layer.inputs + layer.extra]
      t0 = clock()
      try:
        y = layer.fn(ins)
      except (ValueError, IndexError) as e:
        if not check:
          raise
        raise FormatError(f"layer {layer.name!r}: shape mismatch: "
                          f"{str(e).splitlines()[0]}") from None
      y = np.asarray(y, F32)
      if timings is not None:
        timings[layer.name] = timings.get(layer.name, 0.0) + (
            clock() - t0)
      if check and y.shape[1:] != layer.shape:
        raise FormatError(f"layer {layer.name!r}: shape mismatch: computes "
                          f"{y.shape[1:]}, the file records {layer.shape}")
      values[layer.name] = y
    if outputs is not None:
      outputs.update(values)
    return values[self.layers[-1].name]

  __call__ = run

  def plan(self) -> list[dict[str, Any]]:
    """Per layer: name, op, kernel chosen at load, output shape."""
    return [{"name": l.name, "op": l.op, "kernel": l.kernel,
             "shape": list(l.shape)} for l in self.layers]
