r"""The README's result tables as artifacts: run, tabulate, record the machine.

A *table* (`Table`, registered in `TABLES`) names the runs behind one README
table (a config file, its overrides, the seeds) and a builder that turns
the finished runs into rows. `make(table, ...)` (what
`python -m launch.results --table=NAME` calls) runs what is missing and
writes, in the results folder (`results/` by default):

  NAME.md    the title, the table, the seeds, the exact commands and the
             machine the runs ran on (CPU model, core count, jax / jaxlib /
             flax / optax versions, the date the last run finished, the
             runs' wall time)
  NAME.csv   the table's numbers at full precision, one row per row
  NAME.png   a plot, for tables that have one

Runs go through the sweep machinery (`experiments.sweep`), one one-point
sweep per seed in `RUNS/seed_<s>/` (`RUNS` = `results/runs/NAME` by
default, git-ignored): each is a `launch.train` subprocess, a finished run
(its `summary.json`) is skipped and a killed one resumes from its newest
checkpoint, so re-running the command resumes; `--seeds=N` (the first N
seeds) reuses every seed already run. `RUNS/seed_<s>/machine.json` records
the machine a seed's runs ran on, written when they ran, so a later
re-tabulation elsewhere still names the right machine.

The README holds each table between the markers

  <!-- results/NAME.md -->
  | ... the table of results/NAME.md ... |
  <!-- end results/NAME.md -->

and `tests/test_results.py` checks that every such block equals its file's
table (`table_of`), so the README cannot drift from what the command
writes; `update_readme` (`--update_readme`) rewrites the block.

Every mean, sample std, 95 % interval and paired verdict comes from
`experiments.stats`. CPU figures vary slightly between processors (XLA's
CPU code differs), so each file names its machine.

Layout: the data types live in `experiments._result_types`, the builders
in `experiments._result_tables`, the registry (`TABLES`) in
`experiments._result_registry`; this module runs and writes the tables
and re-exports those modules' public names.
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import shlex
from collections.abc import Callable, Sequence
from importlib import metadata

from experiments import sweep as sweep_lib
from experiments._result_registry import BINARYCONNECT_ARMS
from experiments._result_registry import BINARYCONNECT_PAIRS
from experiments._result_registry import TABLES
from experiments._result_registry import get
from experiments._result_tables import ABLATION_BASE
from experiments._result_tables import GRADCOUNT_DENSE
from experiments._result_tables import GRADCOUNT_RHOS
from experiments._result_tables import MAINSUB_CONTROLS
from experiments._result_tables import OVER_SEEDS
from experiments._result_tables import ablation_table
from experiments._result_tables import benn_table
from experiments._result_tables import fbs_table
from experiments._result_tables import flags_table
from experiments._result_tables import fpgm_table
from experiments._result_tables import gradcount_arms
from experiments._result_tables import gradcount_table
from experiments._result_tables import lottery_plot
from experiments._result_tables import lottery_table
from experiments._result_tables import mainsub_table
from experiments._result_tables import paired_arms
from experiments._result_tables import plain_table
from experiments._result_tables import read_json
from experiments._result_tables import scratch_table
from experiments._result_types import Built
from experiments._result_types import ResultsError
from experiments._result_types import Run
from experiments._result_types import RunOf
from experiments._result_types import Table

__all__ = (
    "ABLATION_BASE", "BINARYCONNECT_ARMS", "BINARYCONNECT_PAIRS", "Built",
    "GRADCOUNT_DENSE", "GRADCOUNT_RHOS", "MACHINES", "MAINSUB_CONTROLS",
    "OVER_SEEDS", "README", "RESULTS_DIR", "ROOT", "ResultsError", "Run",
    "RunOf", "TABLES", "Table", "VERSIONED", "ablation_table", "benn_table",
    "choose_seeds", "command", "cpu_model", "fbs_table", "finished_runs",
    "flags_table", "format_machine", "fpgm_table", "get", "gradcount_arms",
    "gradcount_table", "lottery_plot", "lottery_table", "machine", "main",
    "mainsub_table", "make", "markdown_table", "paired_arms", "plain_table",
    "point_label", "readme_blocks", "render", "run_seeds", "scratch_table",
    "seed_dir", "seed_sweep", "sweep_command", "table_of", "table_sweep",
    "update_readme", "write_csv")

ROOT = sweep_lib.ROOT
RESULTS_DIR = os.path.join(ROOT, "results")
README = os.path.join(ROOT, "README.md")
VERSIONED = ("jax", "jaxlib", "flax", "optax")


# ------------------------------------------------------------- machine --
def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo; else the platform's)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
  """This machine: CPU model, core count, OS, Python and the versions of
  jax, jaxlib, flax, optax; the date (UTC)."""
  versions = {}
  for pkg in VERSIONED:
    try:
      versions[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      versions[pkg] = "not installed"
  return {"cpu": cpu_model(), "cores": os.cpu_count(),
          "system": f"{platform.system()} {platform.release()}",
          "python": platform.python_version(), "versions": versions,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%d %H:%M UTC")}


def format_machine(m: dict) -> str:
  v = ", ".join(f"{k} {x}" for k, x in m["versions"].items())
  return (f"{m['cpu']}, {m['cores']} cores, {m['system']}, Python "
          f"{m['python']}; {v}")


# ---------------------------------------------------------------- runs --
def _arm(table: Table, label: str) -> tuple:
  return dict(table.arms)[label]


def seed_sweep(table: Table, seed: int, arm: str = "",
               runs_dir: str | None = None) -> sweep_lib.Sweep:
  """The one-point sweep of `table`'s `arm` at `seed` (validated lazily);
  a `RunOf` value becomes that arm's run directory at `seed` under
  `runs_dir` (relative to the repository root when inside it)."""
  path, _, arg = table.config.partition(":")
  path = os.path.join(ROOT, path)
  module = sweep_lib.load_module(path)
  base = module.get_config(arg) if arg else module.get_config()
  grid = {}
  for f, v in (*table.overrides, *_arm(table, arm)):
    if isinstance(v, RunOf):
      labels = [a for a, _ in table.arms]
      if v.arm not in labels[:labels.index(arm)]:
        raise ResultsError(f"table {table.name}: arm {arm!r} refers to "
                           f"{v.arm!r}, which is not an earlier arm")
      if runs_dir is None:
        raise ResultsError(f"table {table.name}: arm {arm!r} needs the runs "
                           "directory")
      ref = seed_sweep(table, seed, v.arm, runs_dir)
      v = sweep_lib.run_dir(seed_dir(runs_dir, seed, v.arm),
                            ref.points[0]).replace(ROOT + os.sep, "")
    grid[f] = [v]
  return sweep_lib.expand(path + (f":{arg}" if arg else ""), base, [grid],
                          [seed])


def _slug(label: str) -> str:
  """A folder name for an arm's label."""
  return "_".join("".join(c if c.isalnum() else " " for c in label).split())


def seed_dir(runs_dir: str, seed: int, arm: str = "") -> str:
  if arm:
    return os.path.join(runs_dir, _slug(arm), f"seed_{seed}")
  return os.path.join(runs_dir, f"seed_{seed}")


def point_label(p: sweep_lib.Point) -> str:
  """A sweep point's arm: its overrides as `field=value,...` ("base" for
  none), without the seed."""
  return ",".join(f"{f}={sweep_lib.format_value(v)}"
                  for f, v in p.overrides) or "base"


def table_sweep(table: Table, *, check_build: bool = False
                ) -> sweep_lib.Sweep:
  """A sweep table's sweep (its file's grids and seeds); ResultsError when
  the table's seeds are not the file's or it sets arms / overrides."""
  if table.overrides or table.arms != (("", ()),):
    raise ResultsError(f"table {table.name}: a sweep table takes its runs "
                       f"from {table.config}'s get_sweep(), not from arms "
                       "or overrides")
  s = sweep_lib.load(os.path.join(ROOT, table.config),
                     check_build=check_build)
  if list(s.seeds) != list(table.seeds):
    raise ResultsError(f"table {table.name}: seeds {list(table.seeds)} are "
                       f"not {table.config}'s get_sweep() seeds {s.seeds}")
  return s


def _jobs(table: Table, seeds: Sequence[int]) -> list:
  """(arm, seed) of every run, arm by arm (a sweep table: its points, in
  the sweep's order)."""
  if table.sweep:
    return [(point_label(p), p.seed) for p in table_sweep(table).points]
  return [(arm, seed) for arm, _ in table.arms for seed in seeds]


def sweep_command(table: Table, runs_dir: str) -> str:
  """The `launch.sweep` command of a sweep table."""
  rel = lambda a: a.replace(ROOT + os.sep, "")
  return shlex.join(["python", "-m", "launch.sweep",
                     f"--config={table.config}", f"--workdir={rel(runs_dir)}",
                     "--parallel=1"])


MACHINES = "machines.json"
"""A sweep table's RUNS/machines.json: {point name: machine()} of every
run the results command ran (written when it finished)."""


def _run_sweep(table: Table, runs_dir: str, *,
               echo: Callable[[str], None]) -> int:
  """Runs a sweep table's unfinished points; returns the failed count and
  records the machine of each run that finished now."""
  s = table_sweep(table, check_build=True)
  todo = [p for p in s.points
          if sweep_lib.read_summary(runs_dir, p) is None]
  echo(f"{table.name}: {len(s.points)} runs, {len(todo)} to run: "
       f"{sweep_command(table, runs_dir)}")
  failed = sweep_lib.run(s, runs_dir, echo=lambda line: None
                         if "\n" in line else echo(f"  {line}"))
  done = [p.name for p in todo
          if sweep_lib.read_summary(runs_dir, p) is not None]
  if done:
    path = os.path.join(runs_dir, MACHINES)
    record = read_json(path) if os.path.exists(path) else {}
    here = machine()
    record.update({name: here for name in done})
    _write_json(path, record)
  return failed


def command(table: Table, seed: int, runs_dir: str, arm: str = "") -> str:
  """The exact `launch.train` command of one run (paths relative to the
  repository root when they are inside it)."""
  s = seed_sweep(table, seed, arm, runs_dir)
  cmd = sweep_lib.command(s, s.points[0], seed_dir(runs_dir, seed, arm))
  rel = lambda a: a.replace(ROOT + os.sep, "")
  return shlex.join(["python", *(rel(a) for a in cmd[1:])])


def run_seeds(table: Table, seeds: Sequence[int], runs_dir: str, *,
              echo: Callable[[str], None] = print) -> int:
  """Runs every unfinished run (a one-point sweep each; a sweep table: its
  sweep); returns the number of failed runs. Writes `machine.json` (a
  sweep table: `MACHINES`) where something ran."""
  if table.sweep:
    return _run_sweep(table, runs_dir, echo=echo)
  failed = 0
  validated = set()
  jobs = _jobs(table, seeds)
  for i, (arm, seed) in enumerate(jobs, 1):
    s = seed_sweep(table, seed, arm, runs_dir)
    d = seed_dir(runs_dir, seed, arm)
    p = s.points[0]
    what = f"[{i}/{len(jobs)}] {table.name}{' ' + arm if arm else ''} seed "
    if sweep_lib.read_summary(d, p) is not None:
      echo(f"{what}{seed}: finished earlier ({sweep_lib.run_dir(d, p)})")
      continue
    if arm not in validated:  # one build check per arm (seeds share it)
      sweep_lib.validate(s)
      validated.add(arm)
    echo(f"{what}{seed}: running {command(table, seed, runs_dir, arm)}")
    failed += sweep_lib.run(
        s, d, echo=lambda line, i=i: None if "\n" in line else echo(
            f"[{i}/{len(jobs)}]   {line}"))
    if sweep_lib.read_summary(d, p) is not None:
      _write_json(os.path.join(d, "machine.json"), machine())
  return failed


def finished_runs(table: Table, seeds: Sequence[int],
                  runs_dir: str) -> list:
  """The finished runs (`Run`), arm by arm, in seed order (a sweep table:
  in the sweep's order)."""
  out = []
  if table.sweep:
    tries = sweep_lib.attempts(runs_dir)
    for p in table_sweep(table).points:
      summary = sweep_lib.read_summary(runs_dir, p)
      if summary is not None:
        secs = sum(a["seconds"] for a in tries if a["name"] == p.name)
        out.append(Run(p.seed, sweep_lib.run_dir(runs_dir, p), summary,
                       point_label(p), secs, tuple(p.overrides),
                       dict(p.values)))
    return out
  for arm, seed in _jobs(table, seeds):
    s = seed_sweep(table, seed, arm, runs_dir)
    d = seed_dir(runs_dir, seed, arm)
    summary = sweep_lib.read_summary(d, s.points[0])
    if summary is not None:
      secs = sum(a["seconds"] for a in sweep_lib.attempts(d))
      out.append(Run(seed, sweep_lib.run_dir(d, s.points[0]), summary, arm,
                     secs, tuple(_arm(table, arm))))
  return out


def _machines(table: Table, seeds: Sequence[int], runs_dir: str) -> list:
  """(machine record, [seeds]) per distinct machine the seeds ran on."""
  out = []
  if table.sweep:
    path = os.path.join(runs_dir, MACHINES)
    record = read_json(path) if os.path.exists(path) else {}
    found = [(record.get(p.name), p.seed) for p in table_sweep(table).points]
  else:
    found = []
    for arm, seed in _jobs(table, seeds):
      path = os.path.join(seed_dir(runs_dir, seed, arm), "machine.json")
      found.append((read_json(path) if os.path.exists(path) else None,
                    seed))
  for m, seed in found:
    if m is None:
      continue
    key = format_machine(m)
    for rec, ss in out:
      if format_machine(rec) == key:
        if seed not in ss:
          ss.append(seed)
        rec["date"] = max(rec["date"], m["date"])
        break
    else:
      out.append((m, [seed]))
  return out


def _wall_seconds(table: Table, seeds: Sequence[int], runs_dir: str) -> float:
  if table.sweep:
    return sum(a["seconds"] for a in sweep_lib.attempts(runs_dir))
  total = 0.0
  for arm, seed in _jobs(table, seeds):
    total += sum(a["seconds"] for a in sweep_lib.attempts(
        seed_dir(runs_dir, seed, arm)))
  return total


# ------------------------------------------------------------- outputs --
def markdown_table(built: Built) -> str:
  lines = ["| " + " | ".join(built.header) + " |",
           "|" + "|".join("---" for _ in built.header) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in built.rows]
  return "\n".join(lines) + "\n"


def table_of(md: str) -> str:
  """The table of a results file (or of a README block): its first run of
  lines starting with '|'."""
  lines, started = [], False
  for line in md.splitlines():
    if line.startswith("|"):
      lines.append(line.rstrip())
      started = True
    elif started:
      break
  return "\n".join(lines) + ("\n" if lines else "")


def render(table: Table, built: Built, seeds: Sequence[int],
           runs_dir: str) -> str:
  """NAME.md: title, table, notes, seeds, commands, machine."""
  machines = _machines(table, seeds, runs_dir)
  wall = _wall_seconds(table, seeds, runs_dir)
  runs_rel = runs_dir.replace(ROOT + os.sep, "")
  more = ("" if tuple(seeds) == tuple(table.seeds)
          else f" --seeds={len(seeds)}")
  lines = [f"# {table.title}", "", table.description + ".", "",
           markdown_table(built).rstrip("\n"), "", built.notes, "",
           "## How it was made", "",
           f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)}). Written by",
           "", f"    python -m launch.results --table={table.name}{more}", "",
           f"which runs (skipping finished runs, resuming killed ones; "
           f"workdirs under `{runs_rel}`):", ""]
  if table.sweep:
    lines.append(f"    {sweep_command(table, runs_dir)}")
  else:
    lines += [f"    {command(table, s, runs_dir, arm)}"
              for arm, s in _jobs(table, seeds)]
  lines += ["", "## Machine", ""]
  if not machines:
    lines.append("Unknown (no run recorded its machine).")
  for m, ss in machines:
    lines.append(f"- seeds {', '.join(map(str, ss))}: {format_machine(m)}; "
                 f"last run finished {m['date']}")
  lines += ["", f"Wall time of the runs: {wall / 60:.1f} min "
            "(sum over the runs' attempts, on a machine shared with other "
            "jobs). CPU figures vary slightly between processors (XLA's CPU "
            "code differs): reproducible on one machine, not across "
            "machines.", ""]
  return "\n".join(lines)


def write_csv(built: Built, path: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(built.csv_header)
    for row in built.csv_rows:
      w.writerow(["" if x is None else x for x in row])
  os.replace(tmp, path)


def _write_text(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def _write_json(path: str, obj) -> None:
  _write_text(path, json.dumps(obj, indent=1) + "\n")


def make(table: Table, *, seeds: Sequence[int] | None = None,
         runs_dir: str | None = None, out_dir: str = RESULTS_DIR,
         echo: Callable[[str], None] = print) -> dict:
  """Runs what is missing, then writes NAME.md/.csv(/.png) in `out_dir`.

  Returns {"failed": failed runs, "paths": [written files], "table": the
  markdown table}. Raises ResultsError when no seed finished.
  """
  seeds = list(table.seeds if seeds is None else seeds)
  runs_dir = runs_dir or os.path.join(out_dir, "runs", table.name)
  failed = run_seeds(table, seeds, runs_dir, echo=echo)
  runs = finished_runs(table, seeds, runs_dir)
  if len(runs) < len(_jobs(table, seeds)):
    done = {(r.arm, r.seed) for r in runs}
    missing = [j for j in _jobs(table, seeds) if j not in done]
    raise ResultsError(f"table {table.name}: run(s) {missing} did not "
                       f"finish (logs under {runs_dir}); nothing written")
  built = table.build(runs)
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, table.name)
  _write_text(base + ".md", render(table, built, seeds, runs_dir))
  write_csv(built, base + ".csv")
  paths = [base + ".md", base + ".csv"]
  if table.plot is not None:
    table.plot(runs, base + ".png")
    paths.append(base + ".png")
  return {"failed": failed, "paths": paths, "table": markdown_table(built)}


# -------------------------------------------------------------- README --
def _markers(name: str) -> tuple[str, str]:
  return (f"<!-- results/{name}.md -->", f"<!-- end results/{name}.md -->")


def readme_blocks(text: str) -> dict:
  """{NAME: the block's text} of every marked README block."""
  out = {}
  lines = text.splitlines()
  for i, line in enumerate(lines):
    s = line.strip()
    if s.startswith("<!-- results/") and s.endswith(".md -->"):
      name = s[len("<!-- results/"):-len(".md -->")]
      end = _markers(name)[1]
      j = next((k for k in range(i + 1, len(lines))
                if lines[k].strip() == end), None)
      if j is None:
        raise ResultsError(f"README: {s} has no {end}")
      out[name] = "\n".join(lines[i + 1:j]) + "\n"
  return out


def update_readme(name: str, table: str, readme: str = README) -> bool:
  """Replaces the README block of `name` by `table`; False when the README
  has no such block (nothing written)."""
  with open(readme, encoding="utf-8") as f:
    text = f.read()
  start, end = _markers(name)
  if start not in text or end not in text:
    return False
  head, rest = text.split(start, 1)
  _, tail = rest.split(end, 1)
  new = head + start + "\n" + table + end + tail
  if new != text:
    _write_text(readme, new)
  return True


def choose_seeds(table: Table, n: int | None) -> list:
  """The table's seeds (n None), its first n, or its seeds and the next
  integers up to n."""
  if n is None:
    return list(table.seeds)
  if table.sweep and n != len(table.seeds):
    raise ResultsError(f"table {table.name} runs {table.config}'s seeds "
                       f"{list(table.seeds)}; --seeds cannot change them "
                       "(edit its get_sweep())")
  if n < 1:
    raise ResultsError(f"--seeds must be >= 1, got {n}")
  extra = range(max(table.seeds) + 1, max(table.seeds) + 1 + max(
      0, n - len(table.seeds)))
  return list(table.seeds[:n]) + list(extra)


def main(table_name: str, *, seeds: int | None = None,
         runs_dir: str | None = None, out_dir: str = RESULTS_DIR,
         readme: str | None = None,
         echo: Callable[[str], None] = print) -> int:
  """What `launch.results` does; returns its exit code (1: a run failed)."""
  table = get(table_name)
  out = make(table, seeds=choose_seeds(table, seeds), runs_dir=runs_dir,
             out_dir=out_dir, echo=echo)
  echo(out["table"].rstrip("\n"))
  for p in out["paths"]:
    echo(f"wrote {p}")
  if readme is not None:
    if update_readme(table.name, out["table"], readme):
      echo(f"updated the results/{table.name}.md block of {readme}")
    else:
      echo(f"{readme} has no results/{table.name}.md block; add the "
           f"markers {' ... '.join(_markers(table.name))}")
  return 1 if out["failed"] else 0

