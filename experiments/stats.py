"""Statistics over seeds, one convention for every report.

    >>> s = summarize([0.90, 0.92, 0.94])
    >>> s["n"], round(s["mean"], 4), round(s["std"], 4)
    (3, 0.92, 0.02)
    >>> format_mean_std_ci(s)
    '0.9200 ± 0.0200 [0.8703, 0.9697], n=3'
    >>> paired([0.92, 0.93, 0.95], [0.90, 0.92, 0.92])["verdict"]
    'indistinguishable at n=3'

Conventions:

* `std` is the sample standard deviation (ddof = 1): the spread of the seeds
  as an estimate of the population's, not of these n numbers.
* `ci95` is the two-sided 95 % Student t interval for the mean,
  mean ± t(0.975, n - 1) · std / sqrt(n): it assumes the seeds are
  independent draws from a normal distribution, and is exact then at any n.
  With n = 2 it is wide (t = 12.71): two seeds rarely separate anything.
* One value (n = 1): `std` is 0.0 (so a table cell still has a number; the
  table says n) and `ci95` is None: one draw says nothing about the spread,
  and (mean, mean) would claim a certainty that does not exist.
  `format_mean_std_ci` then writes `[no CI]`.
* A paired comparison (`paired(a, b)`: a[i] and b[i] come from the same
  seed, e.g. a method and its control trained on the same data order, or
  the same run's ticket and random re-init) is the summary of the
  differences d = a - b. The verdict is "ahead" when the whole 95 % interval
  of d is above 0, "behind" when it is below 0, and "indistinguishable at
  n=N" otherwise, including when n = 1 (no interval). Differences that are
  all equal (std 0, n >= 2) give a zero-width interval: ahead or behind
  unless they are 0.

NumPy and SciPy only (no JAX): usable from any report, test or notebook.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95


def _values(values, what: str = "values") -> np.ndarray:
  v = np.asarray(values, np.float64).reshape(-1)
  if v.size == 0:
    raise ValueError(f"{what}: no values to summarize")
  if not np.all(np.isfinite(v)):
    raise ValueError(f"{what}: non-finite value(s) {v[~np.isfinite(v)]}")
  return v


def t_quantile(n: int) -> float:
  """t(0.975, n - 1): the half-width of the 95 % interval in standard errors
  (n >= 2)."""
  if n < 2:
    raise ValueError(f"a t interval needs n >= 2 values, got {n}")
  return float(_scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))


def t_interval(mean: float, std: float, n: int) -> tuple[float, float] | None:
  """The 95 % Student t interval from a mean, a sample std and n (None for
  n < 2): for rows that stored only those, e.g. older summary.json files."""
  if n < 2:
    return None
  half = t_quantile(n) * float(std) / math.sqrt(n)
  return (float(mean) - half, float(mean) + half)


def summarize(values: Sequence[float]) -> dict:
  """{"n", "mean", "std" (ddof 1; 0.0 for n = 1), "ci95": (lo, hi) or None
  for n = 1}. Raises ValueError for no values or a non-finite one."""
  v = _values(values)
  n = int(v.size)
  mean = float(v.mean())
  std = float(v.std(ddof=1)) if n > 1 else 0.0
  return {"n": n, "mean": mean, "std": std, "ci95": t_interval(mean, std, n)}


def verdict(ci95: tuple[float, float] | None, n: int) -> str:
  """"ahead" (interval above 0), "behind" (below 0) or "indistinguishable at
  n=N" (it contains 0, or there is no interval)."""
  if ci95 is not None and ci95[0] > 0:
    return "ahead"
  if ci95 is not None and ci95[1] < 0:
    return "behind"
  return f"indistinguishable at n={n}"


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
  """The paired difference a - b over seeds: {"n", "mean_diff", "std",
  "ci95", "verdict"} (a[i] and b[i] must share seed i)."""
  va, vb = _values(a, "a"), _values(b, "b")
  if va.shape != vb.shape:
    raise ValueError(f"paired: a has {va.size} values, b has {vb.size}; "
                     "a paired comparison needs one pair per seed")
  d = summarize(va - vb)
  return {"n": d["n"], "mean_diff": d["mean"], "std": d["std"],
          "ci95": d["ci95"], "verdict": verdict(d["ci95"], d["n"])}


def format_mean_std_ci(summary: dict, digits: int = 4, *,
                       with_n: bool = True) -> str:
  """"mean ± std [lo, hi], n=N" for a `summarize` result ("[no CI]" at n = 1;
  without ", n=N" when with_n is False)."""
  f = f"{{:.{digits}f}}"
  ci = summary.get("ci95")
  text = (f"{f.format(summary['mean'])} ± {f.format(summary['std'])} "
          + ("[no CI]" if ci is None else
             f"[{f.format(ci[0])}, {f.format(ci[1])}]"))
  return text + (f", n={summary['n']}" if with_n else "")


def format_paired(result: dict, digits: int = 4) -> str:
  """"+d ± std [lo, hi], verdict" for a `paired` result."""
  f = f"{{:+.{digits}f}}"
  ci = result.get("ci95")
  return (f"{f.format(result['mean_diff'])} ± {result['std']:.{digits}f} "
          + ("[no CI]" if ci is None else
             f"[{f.format(ci[0])}, {f.format(ci[1])}]")
          + f", {result['verdict']}")
