"""XNOR-popcount kernels vs float32 BLAS at the same shapes (target >= 8x).

  python -m bench.xnor_kernels [--quick]

Binary dense 1024 -> 1024 at batch 64, and a 3x3 conv 256 -> 256 on 16x16
('SAME', batch 8), sign inputs and sign weights.  The XNOR side is the
evaluator's kernel (``experiments.export._kernels``: uint64 words, numba,
every core numba is given) on packed operands; "+pack" also counts
binarizing and packing the float input (what the evaluator runs).  The
float side multiplies the same +-1 values as float32 with NumPy's BLAS
(conv: the GEMM of the im2col patches; "+im2col" also builds them).
Results are checked bit-exact before timing.

Candidates are timed in alternation within one run; each line gives the
median over repeats and the best (min) repeat.  Each shape is measured
twice: with every core (wall time; numba's and BLAS's thread pools) and on
one thread in CPU time of the calling thread (``time.thread_time``, numba
and BLAS limited to 1 thread), which other jobs on the machine cannot
inflate: the per-core ratio, the 2-core ratio of an idle machine when both
sides scale to 2 cores alike.  On a machine shared with
other jobs the median is noisy (a parallel region waits for its slowest
thread); the best repeat is the closest to an idle machine.  Ratios are of
the same statistic from the same run.
"""
import statistics
import sys
import time

import numpy as np

from experiments.export import _kernels
from experiments.export import _ops
from experiments.export import _pack


def timed(fns: dict, *, number: int, repeats: int) -> dict:
  """{name: (median, min)} seconds per call, candidates interleaved."""
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      for _ in range(number):
        fn()
      times[name].append((time.perf_counter() - t0) / number)
  return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def cpu_timed(fns: dict, *, number: int, repeats: int) -> dict:
  """Like :func:`timed`, on ONE thread (numba and BLAS limited to 1),
  measured in CPU time of the calling thread (``time.thread_time``), so
  other jobs on the machine do not inflate it: per-core throughput."""
  import numba  # pylint: disable=g-import-not-at-top
  import threadpoolctl  # pylint: disable=g-import-not-at-top
  threads = numba.get_num_threads()
  numba.set_num_threads(1)
  try:
    with threadpoolctl.threadpool_limits(1):
      times = {k: [] for k in fns}
      for _ in range(repeats):
        for name, fn in fns.items():
          t0 = time.thread_time()
          for _ in range(number):
            fn()
          times[name].append((time.thread_time() - t0) / number)
  finally:
    numba.set_num_threads(threads)
  return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def report(title, t, base):
  """Prints each candidate against ``base``; returns {name: (med, best)}
  speedups."""
  print(title)
  b_med, b_min = t[base]
  print(f"  {base:<14} median {b_med * 1e3:8.3f} ms   best "
        f"{b_min * 1e3:8.3f} ms")
  out = {}
  for k, (med, best) in t.items():
    if k == base:
      continue
    out[k] = (b_med / med, b_min / best)
    print(f"  {k:<14} median {med * 1e3:8.3f} ms   best {best * 1e3:8.3f} ms"
          f"   speedup {out[k][0]:6.1f}x (median) {out[k][1]:6.1f}x (best)")
  return out


def threads_line():
  import numba  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  return (f"numba threads: {numba.get_num_threads()}, CPUs: "
          f"{os.cpu_count()}, load average (1 min): {load:.2f}")


def bench_dense(number, repeats):
  rng = np.random.default_rng(0)
  n, d, o = 64, 1024, 1024
  x = rng.standard_normal((n, d)).astype(np.float32)
  w = rng.standard_normal((d, o)).astype(np.float32)
  xs, ws = _ops.sign(x), _ops.sign(w)
  layer = _kernels.XnorDense(_pack.pack(w.T < 0), None, d, _kernels.SIGN)
  xb = layer.pack(x)
  acc = layer.run_packed(xb)
  assert np.array_equal(acc, (xs @ ws).astype(np.int32)), "not bit-exact"
  assert np.array_equal(layer(x), acc)
  fns = {"blas": lambda: xs @ ws, "xnor": lambda: layer.run_packed(xb),
         "xnor+pack": lambda: layer(x)}
  title = f"binary dense {d}x{o}, batch {n} (bit-exact)"
  return (report(title + ", all cores, wall time:",
                 timed(fns, number=number, repeats=repeats), "blas"),
          report(title + ", 1 thread, CPU time:",
                 cpu_timed(fns, number=number, repeats=repeats), "blas"))


def bench_conv(number, repeats):
  rng = np.random.default_rng(1)
  n, hw, c = 8, 16, 256
  pad, strides = ((1, 1), (1, 1)), (1, 1)
  x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
  w = rng.standard_normal((3, 3, c, c)).astype(np.float32)
  xs, ws = _ops.sign(x), _ops.sign(w)
  wm = ws.reshape(-1, c)
  layer = _kernels.XnorConv(_pack.pack(np.transpose(w, (3, 0, 1, 2)) < 0),
                            None, c, (hw, hw), strides, pad, _kernels.SIGN)
  xb = layer.pack(x)
  cols = _ops.im2col(xs, (3, 3), strides, pad, (hw, hw))
  want = (cols @ wm).reshape(n, hw, hw, c)
  assert np.array_equal(layer.run_packed(xb), want.astype(np.int32)), (
      "not bit-exact")
  assert np.array_equal(layer(x), want.astype(np.int32))
  fns = {"blas": lambda: cols @ wm,
         "blas+im2col": lambda: _ops.im2col(xs, (3, 3), strides, pad,
                                            (hw, hw)) @ wm,
         "xnor": lambda: layer.run_packed(xb),
         "xnor+pack": lambda: layer(x)}
  title = f"binary conv 3x3 {c}->{c} on {hw}x{hw}, batch {n} (bit-exact)"
  return (report(title + ", all cores, wall time:",
                 timed(fns, number=number, repeats=repeats), "blas"),
          report(title + ", 1 thread, CPU time:",
                 cpu_timed(fns, number=number, repeats=repeats), "blas"))


def main(argv):
  quick = "--quick" in argv
  print(threads_line())
  (d, d1) = bench_dense(5 if quick else 20, 5 if quick else 15)
  (c, c1) = bench_conv(2 if quick else 5, 5 if quick else 15)
  print("summary (xnor+pack vs float32 blas; target >= 8x):")
  for what, r, r1 in (("dense", d, d1), ("conv", c, c1)):
    print(f"  {what}: all cores {r['xnor+pack'][0]:.1f}x median, "
          f"{r['xnor+pack'][1]:.1f}x best; 1 thread (CPU time) "
          f"{r1['xnor+pack'][0]:.1f}x median, {r1['xnor+pack'][1]:.1f}x best;"
          f" kernel only (no packing): all cores {r['xnor'][1]:.1f}x best, "
          f"1 thread {r1['xnor'][1]:.1f}x best")


if __name__ == "__main__":
  main(sys.argv)
