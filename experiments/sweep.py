"""Grid sweeps: expand a grid of config overrides into named runs, run them.

A sweep file is an experiment config file (its `get_config()` is the base
training config, usable on its own by `launch.train`) that also defines
`get_sweep()`:

  def get_sweep():
    return {"seeds": [0, 1, 2],
            "grids": [{"optimizer": ["sgd", "adam"],
                       "model_kwargs.kernel_quantizer": ["ste_sign"]},
                      {"clip_weights": [0.0, 1.0]}]}

Each sub-grid maps config field paths to lists of values; its product is
taken, crossed with `seeds`, and the union over sub-grids is de-duplicated
by the resulting config (a point of two sub-grids runs once and counts in
both). A point is named after the fields its first sub-grid sets, e.g.
`optimizer=adam,kernel_quantizer=ste_sign,seed=1` (a field is shortened to
its last component when that is unambiguous), and runs in
`DIR/runs/<name>` as a subprocess

  python -m launch.train --config=FILE --workdir=DIR/runs/<name> \
      --config.<field>=<value> ... --config.seed=<seed>

so a crash in one run does not stop the sweep. A run whose workdir holds
`summary.json` is skipped; a killed run resumes from its newest checkpoint
(the trainer does that). Preemption: a run that stops on SIGTERM / SIGINT
(exit 143 / 130, after checkpointing its step) is started again at once, up
to `MAX_PREEMPTIONS` times, and resumes where it stopped; a SIGTERM to the
sweep itself is passed to its running runs, which checkpoint, and the
sweep exits with 143 (`Stopped`): re-running it resumes them. Everything is validated before anything runs
(`load`): unknown fields, wrong types and values `config_check.validate`
or the model/optimizer builder refuses raise `SweepError` naming the grid
entry. `DIR/sweep.json` records the expanded grid; a DIR holding another
grid's sweep is refused, except the same grid with seeds added (`grows`):
re-running a sweep after adding seeds to `get_sweep()` runs only the new
seeds' points and keeps every finished one.

Outputs in DIR: `sweep.json`, `results.csv` (one row per run; its last
columns repeat, on every run of a grid point, the point's test accuracy
over its seeds: n, mean, sample std, 95 % t interval), `results.md` (mean
± sample std [95 % CI] of test accuracy over seeds, a table per sub-grid),
`results.png` (bars with the 95 % CI), and per run `logs/<name>.out|.err`.
The statistics are `experiments.stats`'. `run` is the local executor;
`experiments.sweep_slurm` submits the same commands as a submitit job
array (SLURM).
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable

import ml_collections

from experiments import signals
from experiments import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# launch.train's exits after a checkpointed stop on SIGTERM / SIGINT.
PREEMPTED_EXIT_CODES = (signals.EXIT_PREEMPTED, 130)
MAX_PREEMPTIONS = 3  # re-runs of one preempted run within one sweep


class Stopped(Exception):
  """The sweep itself got SIGTERM / SIGINT: it passed the signal to its
  running runs, which checkpointed; re-running the sweep resumes them."""

  def __init__(self, signum: int, unfinished: int):
    super().__init__(f"{signal.Signals(signum).name} received: {unfinished} "
                     "run(s) unfinished, running ones checkpointed; re-run "
                     "the same command to resume")
    self.exit_code = 130 if signum == signal.SIGINT else (
        signals.EXIT_PREEMPTED)
MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")


class SweepError(ValueError):
  """Bad sweep input (grid, config file or workdir); one-line message."""


@dataclasses.dataclass
class Point:
  """One run of the sweep."""
  name: str
  overrides: tuple      # ((field, value), ...) set by its first sub-grid
  seed: int
  values: dict          # field -> effective value, for every grid field
  grids: list           # indices of the sub-grids that contain it


@dataclasses.dataclass
class Sweep:
  """A validated, expanded sweep."""
  config_path: str      # absolute path of the sweep file
  base: Any             # ml_collections.ConfigDict from get_config()
  fields: list          # union of the grid fields, in order of appearance
  grids: list           # [{field: [values]}] as normalized
  seeds: list
  points: list          # [Point]

  def spec(self) -> dict:
    """What sweep.json stores and compares (JSON-normalized)."""
    return _json_norm({
        "base": json.loads(self.base.to_json()),
        "grids": [{f: list(v) for f, v in g.items()} for g in self.grids],
        "seeds": self.seeds,
        "runs": [{"name": p.name, "overrides": dict(p.overrides),
                  "seed": p.seed} for p in self.points]})


def _json_norm(obj):
  return json.loads(json.dumps(obj, sort_keys=True))


# ------------------------------------------------------------- loading --
def load_module(path: str):
  """Imports a sweep/config file by path."""
  if not os.path.isfile(path):
    raise SweepError(f"--config={path}: no such file")
  name = "sweep_config_" + hashlib.sha1(path.encode()).hexdigest()[:8]
  try:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  except Exception as e:  # pylint: disable=broad-except
    raise SweepError(f"--config={path}: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  return f"{type(e).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def load(path: str, *, check_build: bool = True) -> Sweep:
  """Loads, expands and validates the sweep file at `path`.

  Raises SweepError (one line naming the culprit) for any bad entry;
  nothing is written.
  """
  path = os.path.abspath(path)
  module = load_module(path)
  for fn in ("get_config", "get_sweep"):
    if not callable(getattr(module, fn, None)):
      raise SweepError(f"--config={path}: defines no {fn}()")
  try:
    base, spec = module.get_config(), module.get_sweep()
  except Exception as e:  # pylint: disable=broad-except
    raise SweepError(f"--config={path}: {_first_line(e)}") from e
  if not isinstance(base, ml_collections.ConfigDict):
    raise SweepError("get_config() must return an ml_collections.ConfigDict")
  grids, seeds = _check_spec(base, spec)
  sweep = expand(path, base, grids, seeds)
  validate(sweep, check_build=check_build)
  return sweep


def _check_spec(base, spec) -> tuple[list, list]:
  """Structure, field existence and value types of get_sweep()'s result."""
  if isinstance(spec, ml_collections.ConfigDict):
    spec = spec.to_dict()
  if not isinstance(spec, dict) or set(spec) - {"grids", "seeds"}:
    raise SweepError("get_sweep() must return a dict with keys 'grids' "
                     "(a list of {field: [values]}) and 'seeds'")
  seeds = list(spec.get("seeds", [base.get("seed", 0)]))
  if (not seeds or len(set(seeds)) != len(seeds) or
      not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
    raise SweepError(f"seeds: must be a non-empty list of distinct integers, "
                     f"got {seeds!r}")
  if "seed" not in base:
    raise SweepError("the base config has no 'seed' field")
  raw = spec.get("grids")
  if not isinstance(raw, (list, tuple)) or not raw:
    raise SweepError("grids: must be a non-empty list of {field: [values]}")
  grids = []
  for i, grid in enumerate(raw):
    if isinstance(grid, ml_collections.ConfigDict):
      grid = grid.to_dict()
    if not isinstance(grid, dict):
      raise SweepError(f"grids[{i}]: must be a dict {{field: [values]}}, got "
                       f"{type(grid).__name__}")
    norm = {}
    for field, values in grid.items():
      where = f"grids[{i}][{field!r}]"
      if not isinstance(field, str) or not field:
        raise SweepError(f"{where}: a field must be a dotted config path")
      if field == "seed":
        raise SweepError(f"{where}: list seeds under 'seeds', not in a grid")
      if not isinstance(values, (list, tuple)) or not values:
        raise SweepError(f"{where}: must be a non-empty list of values, got "
                         f"{values!r}")
      coerced = [_coerce(base, field, v, where) for v in values]
      if len({json.dumps(v, sort_keys=True) for v in coerced}) < len(coerced):
        raise SweepError(f"{where}: repeated value in {list(values)!r}")
      norm[field] = coerced
    grids.append(norm)
  return grids, seeds


def _node(config, field: str):
  """(parent ConfigDict, last key) of a dotted path that must exist."""
  node, *path = config, *field.split(".")
  for key in path[:-1]:
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
      return None, None
    node = node[key]
  if not isinstance(node, ml_collections.ConfigDict) or path[-1] not in node:
    return None, None
  return node, path[-1]


def _coerce(base, field: str, value, where: str):
  """`value` as the field would hold it (ml_collections' type-safety)."""
  node, key = _node(base, field)
  if node is None:
    raise SweepError(f"{where}: unknown config field 'config.{field}'")
  old = node[key]
  if isinstance(value, bool) != isinstance(old, bool) and old is not None:
    raise SweepError(f"{where}: {value!r} has type {type(value).__name__}, "
                     f"config.{field} is {type(old).__name__}")
  trial = copy.deepcopy(node)
  try:
    trial[key] = value
  except (TypeError, ValueError) as e:
    raise SweepError(f"{where}: {value!r} has type {type(value).__name__}, "
                     f"config.{field} is {type(old).__name__}") from e
  out = trial[key]
  if isinstance(out, ml_collections.ConfigDict):
    out = out.to_dict()
  return out


def _set(config, field: str, value) -> None:
  node, key = _node(config, field)
  node[key] = value


def point_config(base, point: Point):
  """The full training config of a point (a copy of `base`)."""
  config = copy.deepcopy(base)
  for field, value in point.overrides:
    _set(config, field, value)
  config.seed = point.seed
  return config


# ----------------------------------------------------------- expansion --
def format_value(value) -> str:
  """A value as it appears in a run name."""
  if isinstance(value, (list, tuple)):
    return "-".join(format_value(v) for v in value) if value else "empty"
  if isinstance(value, dict):
    return "-".join(f"{k}{format_value(v)}" for k, v in sorted(value.items()))
  if isinstance(value, float):
    return repr(value)
  return str(value)


def cli_value(value) -> str:
  """A value as `--config.<field>=` parses it back (config_flags)."""
  if isinstance(value, str):
    return value
  if isinstance(value, list):
    value = tuple(value)
  return repr(value)


def short_names(fields: list) -> dict:
  """field -> its last component when no other field ends the same."""
  last = [f.split(".")[-1] for f in fields]
  return {f: (l if last.count(l) == 1 else f) for f, l in zip(fields, last)}


def run_name(overrides, seed: int, short: dict) -> str:
  """A readable, filesystem-safe name; long ones end in a hash."""
  parts = [f"{short[f]}={format_value(v)}" for f, v in overrides]
  full = ",".join(parts or ["base"]) + f",seed={seed}"
  name = _UNSAFE.sub("_", full)
  if len(name) > MAX_NAME:
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    name = name[:MAX_NAME - 9] + "_" + digest
  return name


def expand(config_path: str, base, grids: list, seeds: list) -> Sweep:
  """The union of the sub-grids' products, crossed with the seeds."""
  fields = list(dict.fromkeys(f for g in grids for f in g))
  short = short_names(fields)
  points, index = [], {}
  for i, grid in enumerate(grids):
    for combo in itertools.product(*grid.values()):
      overrides = tuple(zip(grid.keys(), combo))
      for seed in seeds:
        config = copy.deepcopy(base)
        for field, value in overrides:
          _set(config, field, value)
        values = {f: _effective(config, f) for f in fields}
        key = json.dumps([values, seed], sort_keys=True, default=repr)
        if key in index:
          if i not in index[key].grids:
            index[key].grids.append(i)
          continue
        index[key] = Point(run_name(overrides, seed, short), overrides, seed,
                           values, [i])
        points.append(index[key])
  seen = {}
  for p in points:  # distinct points whose names collide after sanitizing
    if p.name in seen:
      p.name += "_" + hashlib.sha1(repr(p.overrides).encode()).hexdigest()[:8]
    seen[p.name] = p
  return Sweep(config_path, base, fields, grids, list(seeds), points)


def _effective(config, field: str):
  node, key = _node(config, field)
  value = node[key]
  return value.to_dict() if isinstance(value, ml_collections.ConfigDict) \
      else value


# ---------------------------------------------------------- validation --
def validate(sweep: Sweep, *, check_build: bool = True) -> None:
  """Every point passes config_check (and builds: model, optimizer, data).

  The error names the grid entry when the failing field is one the point
  sets, else the point.
  """
  from experiments import config_check  # pylint: disable=g-import-not-at-top
  built = set()
  for p in sweep.points:
    config = point_config(sweep.base, p)
    try:
      config_check.validate(config)
    except config_check.ConfigError as e:
      raise SweepError(f"{_culprit(sweep, p, str(e))}: {e}") from e
    key = json.dumps(_without_seed(config), sort_keys=True, default=repr)
    if check_build and key not in built:
      built.add(key)
      _check_build(sweep, p, config)


def _without_seed(config) -> dict:
  d = json.loads(config.to_json())
  d.pop("seed", None)
  return d


def _culprit(sweep: Sweep, p: Point, message: str) -> str:
  m = re.match(r"config\.([\w.]+)", message)
  named = m.group(1) if m else ""
  for field, value in p.overrides:
    if named == field or named.startswith(field + "."):
      return f"grids[{p.grids[0]}][{field!r}] = {value!r}"
  return f"grids[{p.grids[0]}] run {p.name}"


def _check_build(sweep: Sweep, p: Point, config) -> None:
  """Builds the dataset, model and optimizer and shapes the init state."""
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top
  try:
    run = train.build(config)
    jax.eval_shape(run.init_state, jax.random.PRNGKey(0))
  except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
    raise SweepError(f"{_culprit(sweep, p, str(e))}: {_first_line(e)}") from e


# -------------------------------------------------------------- workdir --
def prepare_workdir(sweep: Sweep, workdir: str):
  """Refuses another grid's (or a non-sweep) workdir, then takes the lock
  and writes sweep.json. Returns the open lock file (keep it open)."""
  path = os.path.join(workdir, "sweep.json")
  spec = sweep.spec()
  diff = []
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    diff = [k for k in ("base", "grids", "seeds", "runs")
            if stored.get("spec", {}).get(k) != spec[k]]
    if diff and not grows(stored.get("spec", {}), spec):
      raise SweepError(f"workdir {workdir} holds a sweep of another grid "
                       f"(differs in: {', '.join(diff)}); use a new --workdir")
  elif os.path.isdir(workdir) and os.listdir(workdir):
    raise SweepError(f"workdir {workdir} is not empty and holds no sweep.json;"
                     " use a new --workdir")
  os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
  lock = open(os.path.join(workdir, ".lock"), "w")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    lock.close()
    raise SweepError(f"workdir {workdir} is in use by another sweep") from None
  if not os.path.exists(path) or diff:
    _write_json(path, {"config": sweep.config_path, "spec": spec})
  return lock


def grows(stored: dict, spec: dict) -> bool:
  """Whether sweep spec `spec` is `stored` with seeds added: the same base
  config and grids, every stored seed still there and every stored run
  (name, overrides, seed) still one of its runs."""
  return (stored.get("base") == spec["base"]
          and stored.get("grids") == spec["grids"]
          and set(stored.get("seeds", ())) <= set(spec["seeds"])
          and all(r in spec["runs"] for r in stored.get("runs", ())))


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def run_dir(workdir: str, p: Point) -> str:
  return os.path.join(workdir, "runs", p.name)


def command(sweep: Sweep, p: Point, workdir: str) -> list:
  """The launch.train command of a point."""
  return ([sys.executable, "-m", "launch.train",
           f"--config={sweep.config_path}", f"--workdir={run_dir(workdir, p)}"]
          + [f"--config.{f}={cli_value(v)}" for f, v in p.overrides]
          + [f"--config.seed={p.seed}"])


# Children die with the sweep (Linux PR_SET_PDEATHSIG), so a killed sweep
# leaves no orphan training in a run's workdir; the signals listed in argv[2]
# are ignored (SIG_IGN survives exec); then exec the trainer.
_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "  ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "except (OSError, AttributeError):\n"
    "  pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "  sys.exit(137)\n"
    "for s in filter(None, sys.argv[2].split(',')):\n"
    "  signal.signal(int(s), signal.SIG_IGN)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n")


def start_run(cmd: list, out_path: str, err_path: str, *,
              ignore_signals: tuple = ()):
  """Starts `cmd` in ROOT, stdout and stderr appended to the two files.

  The child dies with this process (PR_SET_PDEATHSIG) and ignores
  `ignore_signals`. Returns (the Popen, the stderr offset it starts at).
  """
  out, err = open(out_path, "ab"), open(err_path, "ab")  # pylint: disable=consider-using-with
  offset = err.tell()
  ignored = ",".join(str(int(s)) for s in ignore_signals)
  proc = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-c", _WRAPPER, str(os.getpid()), ignored, *cmd],
      cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
  out.close()
  err.close()
  return proc, offset


def log_tail(path: str, offset: int = 0, n: int = 5) -> str:
  """The last `n` non-blank lines of a log from `offset`, joined by ' | '."""
  if not os.path.exists(path):
    return ""
  with open(path, "rb") as f:
    f.seek(offset)
    text = f.read().decode(errors="replace")
  lines = [l.rstrip() for l in text.splitlines() if l.strip()]
  return " | ".join(lines[-n:])


def read_summary(workdir: str, p: Point) -> dict | None:
  path = os.path.join(run_dir(workdir, p), "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def attempts(workdir: str) -> list:
  """The rows of DIR/attempts.jsonl: {"name", "rc", "seconds"} per run
  attempt (a preempted and re-run point has several)."""
  path = os.path.join(workdir, "attempts.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def record_attempt(workdir: str, row: dict) -> None:
  """Appends one attempt row to DIR/attempts.jsonl."""
  with open(os.path.join(workdir, "attempts.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------ run --
def run(sweep: Sweep, workdir: str, *, parallel: int = 1,
        echo: Callable[[str], None] = print) -> int:
  """Runs every unfinished point, `parallel` at a time; returns the number
  of failed runs. Writes results.csv/md/png at the end."""
  lock = prepare_workdir(sweep, workdir)
  try:
    n = len(sweep.points)
    todo = [p for p in sweep.points if read_summary(workdir, p) is None]
    echo(f"sweep: {n} runs ({n - len(todo)} finished earlier, {len(todo)} to "
         f"run, {parallel} at a time) in {workdir}")
    k = 0
    for p in sweep.points:
      if p not in todo:
        k += 1
        f = read_summary(workdir, p)["final"]
        echo(f"[{k}/{n}] {p.name}  finished earlier  test accuracy "
             f"{f['test_accuracy']:.4f}")
    failed = 0
    running = {}  # name -> (point, proc, start time, stderr offset)
    queue = list(todo)
    preemptions: dict[str, int] = {}
    forwarded = False
    with signals.handling():
      while queue or running:
        stop = signals.requested()
        if stop is not None and not forwarded:  # the sweep is preempted:
          for _, proc, _, _ in running.values():  # its runs checkpoint
            if proc.poll() is None:
              proc.send_signal(signal.SIGTERM)  # (a 2nd SIGINT kills)
          forwarded = True
        if stop is not None:
          queue = []
        while queue and len(running) < parallel:
          p = queue.pop(0)
          logs = os.path.join(workdir, "logs", p.name)
          proc, offset = start_run(command(sweep, p, workdir),
                                   logs + ".out", logs + ".err")
          running[p.name] = (p, proc, time.time(), offset)
        time.sleep(0.05)
        for name, (p, proc, start, offset) in list(running.items()):
          if proc.poll() is None:
            continue
          del running[name]
          secs = time.time() - start
          record_attempt(workdir, {"name": name, "rc": proc.returncode,
                                   "seconds": round(secs, 2)})
          if (proc.returncode in PREEMPTED_EXIT_CODES and stop is None
              and preemptions.get(name, 0) < MAX_PREEMPTIONS):
            # The run alone was preempted (it checkpointed the step it
            # reached): run it again at once; it resumes there.
            preemptions[name] = preemptions.get(name, 0) + 1
            echo(f"[{k + 1}/{n}] {name}  preempted (exit "
                 f"{proc.returncode}) after {secs:.1f} s; re-running it "
                 f"(attempt {preemptions[name] + 1}, resumes from its "
                 "checkpoint)")
            queue.insert(0, p)
            continue
          k += 1
          failed += _report(sweep, workdir, p, proc, secs, offset, k, n,
                            echo, stopped=stop is not None)
      if signals.requested() is not None:
        write_results(sweep, workdir, plot=False)
        raise Stopped(signals.requested(), sum(
            read_summary(workdir, p) is None for p in sweep.points))
    table = write_results(sweep, workdir)
    echo(table)
    if failed:
      echo(f"sweep: {failed} of {n} runs failed (logs in "
           f"{os.path.join(workdir, 'logs')})")
    return failed
  finally:
    lock.close()


def _report(sweep: Sweep, workdir: str, p: Point, proc, secs: float,
            offset: int, k: int, n: int, echo, stopped: bool) -> int:
  """Prints a finished run's line; returns 1 if it failed, else 0."""
  name = p.name
  summary = read_summary(workdir, p)
  if proc.returncode == 0 and summary is not None:
    f = summary["final"]
    echo(f"[{k}/{n}] {name}  test accuracy {f['test_accuracy']:.4f}  "
         f"{secs:.1f} s")
    return 0
  if stopped and proc.returncode in PREEMPTED_EXIT_CODES:
    echo(f"[{k}/{n}] {name}  stopped (exit {proc.returncode}) after "
         f"{secs:.1f} s, checkpointed; re-run the sweep to resume it")
    return 0
  tail = log_tail(os.path.join(workdir, "logs", name + ".err"), offset)
  echo(f"[{k}/{n}] {name}  FAILED (exit {proc.returncode}) after "
       f"{secs:.1f} s: {tail}")
  return 1


# -------------------------------------------------------------- results --
def collect(sweep: Sweep, workdir: str) -> list:
  """One row per run: name, grid fields, seed, metrics, seconds, status."""
  tries = attempts(workdir)
  rows = []
  for p in sweep.points:
    mine = [a for a in tries if a["name"] == p.name]
    summary = read_summary(workdir, p)
    final = (summary or {}).get("final", {})
    status = ("ok" if summary else
              "failed" if mine and mine[-1]["rc"] != 0 else "not run")
    rows.append({"name": p.name, **p.values, "seed": p.seed,
                 "test_accuracy": final.get("test_accuracy"),
                 "test_loss": final.get("test_loss"),
                 **{k: final[k] for k in EXTRA_METRICS if k in final},
                 "step": final.get("step"),
                 "wall_seconds": round(sum(a["seconds"] for a in mine), 2),
                 "status": status})
  return rows


EXTRA_METRICS = ("latent_outside_window",)
"""Optional `summary.json["final"]` fields a run may report (binary runs:
the fraction of latent binary weights outside the STE window |w| <= 1,
see `train.latent_window_stats`): a results.csv column and a results.md
column (mean over the seeds' finished runs) when any run has them."""


def _extras(rows: list) -> list:
  """The EXTRA_METRICS that some run of `rows` reported."""
  return [k for k in EXTRA_METRICS if any(r.get(k) is not None
                                          for r in rows)]


_NO_RUNS = {"n": 0, "mean": float("nan"), "std": float("nan"), "ci95": None}


def _summary(xs: list) -> dict:
  """`stats.summarize(xs)`; n = 0 and NaNs when no run finished."""
  return stats.summarize(xs) if xs else dict(_NO_RUNS)


SEED_COLUMNS = ("test_accuracy_n", "test_accuracy_mean", "test_accuracy_std",
                "test_accuracy_ci95_lo", "test_accuracy_ci95_hi")
"""results.csv's last columns: the test accuracy of the run's grid point over
its finished seeds (the same on every seed's row; std ddof = 1; the 95 %
Student t interval is blank for fewer than 2 finished seeds)."""


def _seed_columns(sweep: Sweep, rows: list) -> list:
  """Per row, SEED_COLUMNS over the finished rows with the same values of
  every grid field (the seeds of one grid point)."""
  key_of = lambda r: json.dumps([r[f] for f in sweep.fields], default=repr)
  accs = {}
  for r in rows:
    accs.setdefault(key_of(r), [])
    if r["status"] == "ok":
      accs[key_of(r)].append(r["test_accuracy"])
  out = []
  for r in rows:
    s = _summary(accs[key_of(r)])
    ci = s["ci95"] or (None, None)
    out.append(dict(zip(SEED_COLUMNS, (s["n"], *(
        None if s["n"] == 0 else s[k] for k in ("mean", "std")), *ci))))
  return out


def grouped(sweep: Sweep, rows: list) -> list:
  """Per sub-grid: (fields, [(values, mean, std, n, runs, extras, ci95)])
  over seeds (`stats.summarize`: std the sample std, ddof = 1; ci95 the 95 %
  Student t interval, None for n < 2; extras: {metric: mean over the
  finished runs that report it} for EXTRA_METRICS)."""
  by_name = {r["name"]: r for r in rows}
  out = []
  for i, grid in enumerate(sweep.grids):
    groups = {}
    for p in sweep.points:
      if i in p.grids:
        key = tuple(json.dumps(p.values[f], default=repr) for f in grid)
        groups.setdefault(key, ([p.values[f] for f in grid], []))[1].append(
            by_name[p.name])
    table = []
    for values, members in groups.values():
      accs = [r["test_accuracy"] for r in members if r["status"] == "ok"]
      acc = _summary(accs)
      extras = {}
      for k in EXTRA_METRICS:
        xs = [r[k] for r in members if r["status"] == "ok"
              and r.get(k) is not None]
        if xs:
          extras[k] = sum(xs) / len(xs)
      table.append((values, acc["mean"], acc["std"], acc["n"], len(members),
                    extras, acc["ci95"]))
    out.append((list(grid), table))
  return out


def markdown(sweep: Sweep, rows: list) -> str:
  """results.md: one table per sub-grid, mean ± sample std [95% CI] over
  seeds."""
  short = short_names(sweep.fields)
  ok = sum(r["status"] == "ok" for r in rows)
  failed = sum(r["status"] == "failed" for r in rows)
  lines = [f"# Sweep {os.path.basename(sweep.config_path)}", "",
           f"{len(rows)} runs: {ok} ok, {failed} failed, "
           f"{len(rows) - ok - failed} not run. Test accuracy, mean ± "
           f"sample std [95% CI, Student t] over seeds {sweep.seeds} "
           "(n = finished runs; no CI for n = 1)."]
  extra_cols = _extras(rows)
  if extra_cols:
    lines += ["", f"Also the mean over seeds of {', '.join(extra_cols)} "
              "(summary.json; blank: not reported)."]
  base_vals = {f: _effective(sweep.base, f) for f in sweep.fields}
  for fields, table in grouped(sweep, rows):
    others = [f"{short[f]}={format_value(base_vals[f])}"
              for f in sweep.fields if f not in fields]
    lines += ["", f"## {' x '.join(short[f] for f in fields) or 'base'}"]
    if others:
      lines += ["", f"Others at base: {', '.join(others)}."]
    lines += ["", "| " + " | ".join([short[f] for f in fields]
                                    + ["test accuracy", "n", *extra_cols])
              + " |", "|" + "---|" * (len(fields) + 2 + len(extra_cols))]
    for values, mean, std, n, total, extras, ci in table:
      acc = (stats.format_mean_std_ci(
          {"n": n, "mean": mean, "std": std, "ci95": ci}, with_n=False)
             if n else "-")
      cnt = f"{n}" if n == total else f"{n} of {total}"
      ext = [f"{extras[k]:.4g}" if k in extras else "" for k in extra_cols]
      lines.append("| " + " | ".join([format_value(v) for v in values]
                                     + [acc, cnt, *ext]) + " |")
  return "\n".join(lines) + "\n"


def plot_results(sweep: Sweep, rows: list, path: str) -> None:
  """results.png: per sub-grid, bars of mean test accuracy with its 95 % t
  interval over seeds (no bar for n = 1)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  short = short_names(sweep.fields)
  groups = grouped(sweep, rows)
  width = max(6.0, 0.45 * max(len(t) for _, t in groups) + 2)
  fig, axes = plt.subplots(len(groups), 1, squeeze=False,
                           figsize=(width, 3.2 * len(groups)))
  lows = [ci[0] if ci else m for _, t in groups
          for _, m, _, n, _, _, ci in t if n]
  low = max(0.0, min(lows, default=0.0) - 0.05)
  for ax, (fields, table) in zip(axes[:, 0], groups):
    first = lambda v: format_value(v[0]) if v else "base"
    rest_of = lambda v: ",".join(format_value(x) for x in v[1:])
    firsts = list(dict.fromkeys(first(v) for v, *_ in table))
    rests = list(dict.fromkeys(rest_of(v) for v, *_ in table))
    bw = 0.8 / len(rests)
    for j, rest in enumerate(rests):
      xs, ms, ss = [], [], []
      for values, mean, _, n, _, _, ci in table:
        if rest_of(values) == rest and n:
          xs.append(firsts.index(first(values)) + (j - (
              len(rests) - 1) / 2) * bw)
          ms.append(mean)
          ss.append(0.0 if ci is None else ci[1] - mean)
      ax.bar(xs, ms, bw, yerr=ss, capsize=3,
             label=rest if len(rests) > 1 else None)
    ax.set_xticks(range(len(firsts)), firsts)
    ax.set_xlabel(short[fields[0]] if fields else "base")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(low, 1.0)  # one scale for every panel
    if len(rests) > 1:
      ax.legend(title=",".join(short[f] for f in fields[1:]), fontsize=7,
                title_fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
  fig.suptitle(f"{os.path.basename(sweep.config_path)}: mean and 95% CI "
               f"over {len(sweep.seeds)} seed(s)")
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)


def write_results(sweep: Sweep, workdir: str, *, plot: bool = True) -> str:
  """Writes results.csv, results.md (and results.png); returns the md."""
  rows = collect(sweep, workdir)
  header = ["name", *sweep.fields, "seed", "test_accuracy", "test_loss",
            *_extras(rows), "step", "wall_seconds", "status", *SEED_COLUMNS]
  tmp = os.path.join(workdir, "results.csv.tmp")
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, header)
    writer.writeheader()
    for r, extra in zip(rows, _seed_columns(sweep, rows)):
      writer.writerow({k: format_value(v) if isinstance(v, (tuple, list, dict))
                       else v for k, v in {**r, **extra}.items()})
  os.replace(tmp, os.path.join(workdir, "results.csv"))
  table = markdown(sweep, rows)
  with open(os.path.join(workdir, "results.md.tmp"), "w",
            encoding="utf-8") as f:
    f.write(table)
  os.replace(os.path.join(workdir, "results.md.tmp"),
             os.path.join(workdir, "results.md"))
  if plot and any(r["status"] == "ok" for r in rows):
    plot_results(sweep, rows, os.path.join(workdir, "results.png"))
  return table
