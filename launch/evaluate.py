r"""Evaluates an exported model on the CPU, without JAX.

  python -m launch.evaluate --model=model.sbn --dataset=digits \
      [--split=test] [--data_dir=DIR] [--batch_size=256] [--json] \
      [--no_numba] [--sparse_max_density=D] [--fold_batchnorm] \
      [--no_skip_gated]

Prints the accuracy (pixel accuracy for segmentation outputs), the total
time and, per layer, the kernel chosen when the file was loaded (``xnor``
/ ``xnor-ternary`` for XNOR-popcount, ``csr-numba`` / ``csr-scipy`` with
the kernel's density, ``blas``, ``numpy`` for parameter-free ops; a
``(numpy)`` suffix when the XNOR kernel runs without numba; ``+bn`` when a
BatchNorm was folded into it; ``skip(out <- wta_i, in <- wta_j)`` when
the conv computes only the channels an FBS gate keeps, see
``experiments/export/_gating.py``, off with ``--no_skip_gated``) and the
time spent in it; skipping convs also report the fraction of their dense
MACs they computed (``macs`` column, ``"macs_fraction"`` in JSON).
``--json`` prints one JSON object instead.  An ensemble (the JSON file
``launch.export`` writes for a BENN run without ``--member``) is evaluated
by its soft vote: the alpha-weighted sum of the members' outputs
(``experiments/export/_ensemble.py``); its layers are listed per member.
``--dataset`` defaults to the one the model was trained on; the training
run's ``dataset_kwargs`` and seed (recorded in the file) are used when the
dataset is that one.

Needs NumPy (numba for the fast kernels, SciPy for CSR without numba; both
optional) and the dataset loader ``experiments.data``; never imports JAX
(``tests/test_export.py`` runs it where ``import jax`` fails).

Exit codes: 0 success, 2 bad input, with a one-line message naming it
(malformed / truncated / corrupted model file, unknown dataset or split,
shape mismatch between data and model, bad flag values).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time


def _fail(message: str, code: int = 2) -> None:
  print(f"launch.evaluate: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    _fail(message)


def _parse(argv):
  p = _Parser(prog="python -m launch.evaluate",
              description="Evaluate an exported .sbn model (no JAX).")
  p.add_argument("--model", required=True, help="the exported file")
  p.add_argument("--dataset", default=None,
                 help="e.g. digits, mnist (default: the model's)")
  p.add_argument("--split", default="test",
                 choices=("train", "validation", "test"))
  p.add_argument("--data_dir", default=None, help="TFDS data_dir")
  p.add_argument("--batch_size", type=int, default=256)
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.add_argument("--no_numba", action="store_true",
                 help="pure-NumPy kernels (same results, slower)")
  p.add_argument("--sparse_max_density", type=float, default=None,
                 help="CSR when a kernel's density is at most this "
                 "(default 0.2 with numba, 0.1 with SciPy)")
  p.add_argument("--fold_batchnorm", action="store_true",
                 help="fold BatchNorm into the preceding dense/conv")
  p.add_argument("--no_skip_gated", action="store_true",
                 help="compute every channel of FBS-gated convs")
  return p.parse_args(argv)


def evaluate(model, source, batch_size: int):
  """(accuracy, count, seconds, per-layer seconds) over a split.

  Outputs with spatial axes (segmentation) count every pixel."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from experiments import data  # pylint: disable=g-import-not-at-top
  timings: dict[str, float] = {}
  correct = count = 0.0
  t0 = time.perf_counter()
  for batch in data.eval_batches(source, batch_size=batch_size):
    logits = model.run(batch["image"], timings=timings)
    pred = np.argmax(logits, -1)
    label = np.asarray(batch["label"])
    if pred.shape != label.shape:
      raise ValueError(f"the model predicts {pred.shape[1:]} per example, "
                       f"the labels are {label.shape[1:]}")
    w = np.asarray(batch["weight"], np.float64).reshape(
        (-1,) + (1,) * (pred.ndim - 1))
    correct += float(np.sum((pred == label) * w))
    count += float(np.sum(w)) * int(np.prod(pred.shape[1:]))
  seconds = time.perf_counter() - t0
  return correct / max(count, 1.0), int(count), seconds, timings


def main(argv=None) -> int:
  args = _parse(sys.argv[1:] if argv is None else argv)
  if args.batch_size < 1:
    _fail("--batch_size must be positive")
  if args.sparse_max_density is not None and not (
      0.0 <= args.sparse_max_density <= 1.0):
    _fail("--sparse_max_density must be in [0, 1]")
  from experiments import export  # pylint: disable=g-import-not-at-top
  kwargs = {"use_numba": False} if args.no_numba else {}
  if args.sparse_max_density is not None:
    kwargs["sparse_max_density"] = args.sparse_max_density
  try:
    load = (export.Ensemble.load if export.is_ensemble_file(args.model)
            else export.Model.load)
    model = load(args.model, fold_batchnorm=args.fold_batchnorm,
                 skip_gated=not args.no_skip_gated, **kwargs)
  except export.FormatError as e:
    _fail(f"{args.model}: {e}")
  name = args.dataset or model.meta.get("dataset")
  if not isinstance(name, str) or not name:
    _fail("--dataset is required (the model file does not name one)")
  ds_kwargs, seed = {}, 0
  if name == model.meta.get("dataset"):
    ds_kwargs = dict(model.meta.get("dataset_kwargs") or {})
    seed = int(model.meta.get("seed", 0))
  from experiments import data  # pylint: disable=g-import-not-at-top
  try:
    ds = data.get_dataset(name, data_dir=args.data_dir, seed=seed,
                          **ds_kwargs)
  except (ValueError, KeyError, OSError, TypeError, ImportError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    _fail(f"dataset {name!r}: {message}")
  if tuple(ds.input_shape) != model.input_shape:
    _fail(f"shape mismatch: {name} images are {tuple(ds.input_shape)}"
          f", the model takes {model.input_shape}")
  if args.split not in ds.splits:
    _fail(f"dataset {name!r} has no split {args.split!r} (it has "
          f"{sorted(ds.splits)})")
  try:
    acc, count, seconds, timings = evaluate(model, ds.splits[args.split],
                                            args.batch_size)
  except ValueError as e:
    _fail(f"shape mismatch: {str(e).splitlines()[0]}")
  macs = model.macs()
  rows = [{**row, "seconds": timings.get(row["name"], 0.0)}
          for row in model.plan()]
  for row in rows:
    if row["name"] in macs:
      done, dense = macs[row["name"]]
      row["macs_fraction"] = done / max(dense, 1)
  if args.json:
    print(json.dumps({"accuracy": acc, "count": count, "seconds": seconds,
                      "split": args.split, "dataset": name,
                      "numba": model.use_numba, "meta": model.meta,
                      "layers": rows}))
    return 0
  total = sum(r["seconds"] for r in rows) or math.inf
  print(f"{name}/{args.split}: accuracy {acc:.4f} on {count} "
        f"{'examples' if len(model.plan()[-1]['shape']) == 1 else 'pixels'}"
        f" in {seconds:.3f} s (numba: {'on' if model.use_numba else 'off'})")
  width = max(len(r["name"]) for r in rows)
  kwidth = max(len(r["kernel"]) for r in rows)
  print(f"{'layer':<{width}}  {'op':<10} {'kernel':<{kwidth}} {'ms':>9} "
        f"{'%':>5}" + (f" {'macs':>5}" if macs else ""))
  for r in rows:
    frac = (f" {r['macs_fraction']:5.3f}" if "macs_fraction" in r else "")
    print(f"{r['name']:<{width}}  {r['op']:<10} {r['kernel']:<{kwidth}} "
          f"{r['seconds'] * 1e3:9.2f} {100 * r['seconds'] / total:5.1f}"
          f"{frac}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
