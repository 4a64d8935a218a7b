"""A 95%-sparse dense layer: CSR vs dense float32 BLAS (target >= 4x).

  python -m bench.sparse_kernels [--quick]

Dense layer 1024 -> 1024 at batch 64 with 95% of the weights pruned
(density 0.05, a uniformly random mask).  Candidates: NumPy's BLAS on the
dense (zero-filled) kernel, and the evaluator's CSR product
(``experiments.export._sparse.Csr``: the numba kernel, and the SciPy one
the evaluator uses without numba), both including the transposes the
evaluator does.  Results are checked against BLAS (float32 rounding).
Timed like ``bench.xnor_kernels``: all cores in wall time, and one thread
in CPU time (robust to other jobs on the machine).

Then the crossover: the 1-thread CPU-time ratio BLAS / CSR over densities,
which is what ``experiments.export.SPARSE_MAX_DENSITY`` (per CSR
implementation, the density up to which the evaluator picks CSR at load
time) is read from.
"""
import sys

import numpy as np

from bench.xnor_kernels import cpu_timed
from bench.xnor_kernels import report
from bench.xnor_kernels import threads_line
from bench.xnor_kernels import timed
from experiments.export import SPARSE_MAX_DENSITY
from experiments.export import _sparse


def _layer(density, n=64, d=1024, o=1024, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, d)).astype(np.float32)
  w = rng.standard_normal((d, o)).astype(np.float32)
  w *= rng.random((d, o)) < density
  return x, w


def bench_95(number, repeats):
  x, w = _layer(0.05)
  fns = {"blas": lambda: x @ w}
  want = x @ w
  for impl, use_numba in (("csr-numba", True), ("csr-scipy", False)):
    if use_numba and not _sparse.numba_available():
      continue
    if not use_numba and not _sparse.scipy_available():
      continue
    csr = _sparse.Csr(np.ascontiguousarray(w.T), use_numba=use_numba)
    np.testing.assert_allclose(csr(x), want, rtol=1e-4, atol=1e-4)
    fns[impl] = (lambda c: lambda: c(x))(csr)
  title = "dense 1024x1024, batch 64, 95% sparse (density 0.05)"
  return (report(title + ", all cores, wall time:",
                 timed(fns, number=number, repeats=repeats), "blas"),
          report(title + ", 1 thread, CPU time:",
                 cpu_timed(fns, number=number, repeats=repeats), "blas"))


def crossover(number, repeats):
  print("crossover, 1 thread, CPU time (BLAS time / CSR time, best "
        "repeat):")
  print(f"  {'density':>8} {'csr-numba':>10} {'csr-scipy':>10}")
  for density in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
    x, w = _layer(density, seed=1)
    fns = {"blas": lambda: x @ w}
    for impl, use_numba in (("csr-numba", True), ("csr-scipy", False)):
      if (_sparse.numba_available() if use_numba else
          _sparse.scipy_available()):
        fns[impl] = (lambda c: lambda: c(x))(
            _sparse.Csr(np.ascontiguousarray(w.T), use_numba=use_numba))
    t = cpu_timed(fns, number=number, repeats=repeats)
    cells = [f"{t['blas'][1] / t[k][1]:9.1f}x" if k in t else f"{'-':>10}"
             for k in ("csr-numba", "csr-scipy")]
    print(f"  {density:8.2f} {cells[0]} {cells[1]}")
  print(f"  (the evaluator picks CSR up to density: {SPARSE_MAX_DENSITY})")


def main(argv):
  quick = "--quick" in argv
  print(threads_line())
  r, r1 = bench_95(5 if quick else 20, 5 if quick else 15)
  crossover(3 if quick else 10, 3 if quick else 7)
  print("summary (95% sparse vs dense float32 blas; target >= 4x):")
  for impl in r:
    print(f"  {impl}: all cores {r[impl][0]:.1f}x median, {r[impl][1]:.1f}x "
          f"best; 1 thread (CPU time) {r1[impl][0]:.1f}x median, "
          f"{r1[impl][1]:.1f}x best")


if __name__ == "__main__":
  main(sys.argv)
