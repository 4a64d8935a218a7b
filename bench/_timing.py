"""Timing helpers shared by the benchmarks: interleaved medians."""
import statistics
import time


def interleaved_medians(fns: dict, *, number: int, repeats: int) -> dict:
  """Median seconds per call of each fn, timed in alternation.

  Alternating the candidates within one run cancels most of the drift of a
  shared, noisy machine; ratios of these medians are what we report.
  """
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn(number)
      times[name].append((time.perf_counter() - t0) / number)
  return {k: statistics.median(v) for k, v in times.items()}
