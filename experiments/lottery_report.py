"""Tables and plots of lottery runs: printed, markdown and PNG.

`format_table(summary)` is the table printed at the end of a run and saved
as `lottery.md`; `plot(summaries, path)` draws test accuracy against the
remaining weights (log x axis) for tickets and controls, the mean and its
95 % Student t interval over seeds (over the controls' seeds within a run,
and over runs when several summaries of different seeds are given).
Every mean, sample std and interval comes from `experiments.stats`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from experiments import stats


def sample_std(values) -> float:
  """The sample standard deviation (ddof = 1), the one convention of every
  table here and of the sweep; 0.0 for a single value (the tables give n)."""
  return stats.summarize(values)["std"]


def mean_over_seeds(runs: Sequence[dict]) -> dict:
  """One control row from its per-seed results (the summary contract).

  Means of the accuracies, the remaining fraction and the early-stop step
  (rounded), the sample standard deviation of the test accuracy (ddof = 1,
  0 for one seed), its 95 % Student t interval `test_accuracy_ci95`
  ([lo, hi]; None for one seed) and the list of seeds.
  """
  acc = stats.summarize([r["test_accuracy"] for r in runs])
  return {
      "level": int(runs[0]["level"]),
      "remaining_fraction": float(np.mean([r["remaining_fraction"]
                                           for r in runs])),
      "test_accuracy": acc["mean"],
      "test_accuracy_std": acc["std"],
      "test_accuracy_ci95": (None if acc["ci95"] is None
                             else list(acc["ci95"])),
      "early_stop_step": int(round(float(np.mean(
          [r["early_stop_step"] for r in runs])))),
      "early_stop_test_accuracy": float(np.mean(
          [r["early_stop_test_accuracy"] for r in runs])),
      "train_accuracy": float(np.mean([r["train_accuracy"] for r in runs])),
      "seeds": [int(r.get("seed", i)) for i, r in enumerate(runs)],
  }


def _control_summary(row: dict) -> dict:
  """A control row as `stats.summarize` gives it; rows written before the
  interval was stored get it from their mean, std and number of seeds."""
  n = len(row["seeds"])
  ci = row.get("test_accuracy_ci95", stats.t_interval(
      row["test_accuracy"], row["test_accuracy_std"], n))
  return {"n": n, "mean": row["test_accuracy"],
          "std": row["test_accuracy_std"],
          "ci95": None if ci is None else tuple(ci)}


def _pct(x: float) -> str:
  return f"{100 * x:.1f}"


def format_table(summary: dict, markdown: bool = False) -> str:
  """Per level: remaining %, ticket accuracies, early stop, controls."""
  controls = summary.get("controls", {})
  by_level = {name: {r["level"]: r for r in rows}
              for name, rows in controls.items()}
  has_inst = any("instability" in r for r in summary["levels"])
  head = ["level", "remaining %", "test acc", "early-stop step",
          "early-stop acc", "train acc"]
  head += [f"{name} acc (mean ± sample std [95% CI], n)"
           for name in controls]
  if has_inst:
    head.append("instability")
  rows = []
  for r in summary["levels"]:
    row = [str(r["level"]), _pct(r["remaining_fraction"]),
           f"{r['test_accuracy']:.4f}", str(r["early_stop_step"]),
           f"{r['early_stop_test_accuracy']:.4f}",
           f"{r['train_accuracy']:.4f}"]
    for name in controls:
      c = by_level[name].get(r["level"])
      row.append("-" if c is None else
                 stats.format_mean_std_ci(_control_summary(c)))
    if has_inst:
      row.append(f"{r['instability']:.4f}" if "instability" in r else "-")
    rows.append(row)
  title = (f"Lottery tickets: {summary['model']} on {summary['dataset']}, "
           f"reset {summary.get('reset', '?')}"
           + (f" (k={summary['rewind_step']})"
              if summary.get("rewind_step") else "")
           + (", one-shot" if summary.get("oneshot") else ", iterative"))
  if markdown:
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
  widths = [max(len(h), *(len(row[i]) for row in rows))
            for i, h in enumerate(head)]
  fmt = "  ".join(f"{{:>{w}}}" for w in widths)
  return "\n".join([title, fmt.format(*head)] +
                   [fmt.format(*row) for row in rows])


def series(summaries: Sequence[dict], rows_of) -> tuple:
  """x, mean, lo, hi over runs of rows keyed by level: the mean and its 95 %
  t interval over seeds (lo = hi = mean where there is no interval).

  One run: a control row's interval over its own seeds; a ticket (one
  seed) has none. Several runs: the interval over the runs' values (for
  controls, each run's mean over its seeds; the runs are the independent
  draws)."""
  per_level: dict[int, list] = {}
  for s in summaries:
    for r in rows_of(s):
      per_level.setdefault(r["level"], []).append(r)
  levels = sorted(per_level)
  x = np.asarray([np.mean([r["remaining_fraction"] for r in per_level[lv]])
                  for lv in levels])
  mean, lo, hi = [], [], []
  for lv in levels:
    rs = per_level[lv]
    if len(rs) == 1 and "test_accuracy_std" in rs[0]:
      summary = _control_summary(rs[0])  # the controls' own seeds
    else:
      summary = stats.summarize([r["test_accuracy"] for r in rs])
    ci = summary["ci95"] or (summary["mean"], summary["mean"])
    mean.append(summary["mean"])
    lo.append(ci[0])
    hi.append(ci[1])
  return x, np.asarray(mean), np.asarray(lo), np.asarray(hi)


def plot(summaries: Sequence[dict], path: str) -> str:
  """Test accuracy against remaining weights (%, log x): tickets and
  controls, mean line and a band of its 95 % t interval over seeds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
  curves = [("ticket", lambda s: s["levels"])]
  names = sorted({n for s in summaries for n in s.get("controls", {})})
  curves += [(n, lambda s, n=n: s.get("controls", {}).get(n, []))
             for n in names]
  for label, rows_of in curves:
    x, mean, lo, hi = series(summaries, rows_of)
    if not len(x):
      continue
    line, = ax.plot(100 * x, mean, marker="o", ms=3,
                    label=label.replace("_", " "))
    ax.fill_between(100 * x, lo, hi, color=line.get_color(), alpha=0.2)
  ax.set_xscale("log")
  ticks = sorted({round(100 * r["remaining_fraction"], 1)
                  for r in summaries[0]["levels"]}, reverse=True)
  if len(ticks) > 8:  # keep the labels readable
    ticks = ticks[::-(-len(ticks) // 8)]
  ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.invert_xaxis()
  ax.set_xlabel("weights remaining (%)")
  ax.set_ylabel("test accuracy")
  s0 = summaries[0]
  ax.set_title(f"{s0['model']} on {s0['dataset']} (reset "
               f"{s0.get('reset', '?')}, {len(summaries)} run(s)); "
               "band: 95% CI over seeds", fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def write_reports(summary: dict, workdir: str) -> None:
  """`lottery.md` and `lottery.png` in `workdir`."""
  md = os.path.join(workdir, "lottery.md")
  with open(md + ".tmp", "w") as f:
    f.write(format_table(summary, markdown=True))
  os.replace(md + ".tmp", md)
  plot([summary], os.path.join(workdir, "lottery.png"))
