"""The results command's data types: a table (`Table`), a finished run
(`Run`), an arm's reference to an earlier arm's run (`RunOf`), a built
table (`Built`) and the command's one-line error (`ResultsError`).

Private module; `experiments.results` re-exports every name.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable


class ResultsError(ValueError):
  """Bad input to the results command (one line)."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One finished run of a table: its seed, workdir, summary.json, arm
  (label; "" for a one-arm table), wall seconds (over its attempts), the
  arm's overrides ((field, value), ...) and, in a sweep table, the
  effective value of every grid field (`sweep.Point.values`)."""
  seed: int
  workdir: str
  summary: dict
  arm: str = ""
  seconds: float = 0.0
  overrides: tuple = ()
  values: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunOf:
  """An arm's override value: the run directory of the earlier arm `arm`
  at the same seed, e.g. a control's ``gradcount.match_workdir`` (the
  controls prune to the sparsity that run reached)."""
  arm: str


@dataclasses.dataclass(frozen=True)
class Built:
  """A table's content: the markdown header and rows (strings), the CSV's
  header and rows (numbers), and notes printed under the table."""
  header: list
  rows: list
  csv_header: list
  csv_rows: list
  notes: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  """One result table: the runs behind it and how to tabulate them.

  `config` is relative to the repository root (`file.py:arg` passes `arg`
  to its `get_config`, as `launch.train --config=file.py:arg` does);
  `overrides` are
  `--config.<field>=<value>` of every run; `arms` ((label, overrides), ...)
  are variants each run at every seed (in `RUNS/<label>/seed_<s>/`; one
  unnamed arm by default); `build(runs)` gets the finished runs, arm by
  arm, in seed order; `plot(runs, path)` (optional) writes the PNG.
  `test_only` tables exist for tests/test_results.py (tiny, tmp dirs).

  A `sweep` table's `config` is a sweep file (`get_config` and
  `get_sweep`, experiments/sweep.py): its points are the runs, run as one
  sweep in RUNS (what `python -m launch.sweep --config=CONFIG
  --workdir=RUNS` runs); each run's arm is its point's overrides
  (`point_label`), in the sweep's order. It has no `arms` or `overrides`,
  and its `seeds` are the sweep file's (checked when it runs).
  """
  name: str
  title: str
  config: str
  seeds: tuple
  build: Callable[[list], Built]
  overrides: tuple = ()
  arms: tuple = (("", ()),)
  plot: Callable[[list, str], None] | None = None
  description: str = ""
  test_only: bool = False
  sweep: bool = False

