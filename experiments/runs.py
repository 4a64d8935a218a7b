"""The workdir protocol: the one module that decides what a run writes.

A run is addressed by its workdir. Every driver (the plain run, lottery,
RePr, BENN, main/subsidiary, gradient counting, FPGM / slimming, FBS) opens
it through :func:`open_run` and writes through the functions below, so the
rules hold in one place:

* **One config per workdir.** ``config.json`` is written once, on the first
  start; a later start with another config is refused with
  :class:`WorkdirError` (a ``ConfigError``: one line, exit 2) before
  anything is written. A driver whose workdir legitimately gains fields
  (lottery branches) passes its own ``compare`` projection.
* **Done-markers.** ``summary.json`` is written last: its presence means the
  run finished, and a re-run returns it at once. A named phase of a driver
  (a lottery level, a RePr phase, a BENN member) finishes by writing its
  ``result.json`` (:func:`write_result`); :func:`read_result` returns it, or
  None while the phase is unfinished.
* **Atomic writes.** Every file is written to a temporary name and renamed
  (:func:`write_json`, :func:`write_text`, :func:`write_with`), so a kill
  never leaves a half-written file under the real name.
* **One writer per workdir.** A run holds an OS lock on ``W/.lock``
  (``fcntl.flock``) from the moment its workdir exists until its driver
  returns (:func:`lock`, taken by :func:`open_run` / :func:`create`,
  released by ``drivers.run``); a second run on the same workdir is refused
  with :class:`WorkdirError` naming the holder's pid. The OS drops the lock
  when the process dies, so a stale lock never needs cleaning.
* **Absolute paths.** :func:`absolute` expands ``~`` and makes a path
  absolute once, at the boundary (``drivers.run`` and the ``launch``
  programs), so orbax (which needs absolute paths) and the sweep's
  subprocesses see the same directory.
* **Host 0 writes.** Under ``jax.distributed`` every process runs the same
  code; only process 0 writes (:func:`is_main`), the others compute the same
  values and skip the write.

The layout a run leaves (``config.json``, ``metrics.jsonl``,
``checkpoints/``, ``summary.json``; drivers add phase directories) is
described in README.md, "What a run writes".
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax

from experiments import config_check
from experiments import locks
from experiments.locks import absolute
from experiments.locks import lock
from experiments.locks import unlock


WorkdirError = locks.WorkdirError  # re-exported


is_main = locks.is_main  # re-exported


def config_json(config) -> dict:
  """A config as the plain JSON dict stored in ``config.json``."""
  return json.loads(config.to_json())


# ------------------------------------------------------------ files ------
def write_with(path: str, write: Callable[[str], None], *,
               suffix: str = ".tmp") -> None:
  """Atomically creates or replaces `path` (process 0 only).

  ``write(tmp)`` writes the content to the temporary path ``path +
  suffix`` (give the suffix the extension a writer needs, e.g. ``.tmp.npy``
  for ``np.save`` or ``.tmp.png`` for matplotlib); it is then renamed onto
  `path`, so readers see the old file or the new one, never a torn one.
  """
  if not is_main():
    return
  tmp = path + suffix
  write(tmp)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  """Atomically writes `obj` as indented JSON (process 0 only)."""
  def dump(tmp):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2)
  write_with(path, dump)


def write_text(path: str, text: str) -> None:
  """Atomically writes a text file (process 0 only)."""
  def dump(tmp):
    with open(tmp, "w") as f:
      f.write(text)
  write_with(path, dump)


def read_json(path: str) -> Any:
  """The JSON content of `path` (raises if absent)."""
  with open(path) as f:
    return json.load(f)


def read_json_if_exists(path: str) -> Any | None:
  """The JSON content of `path`, or None when there is no such file."""
  return read_json(path) if os.path.exists(path) else None


def _reason(error: BaseException) -> str:
  return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def read_marker(path: str) -> Any | None:
  """A done-marker's JSON (``summary.json``, ``result.json``), or None.

  Markers are written atomically, so an unreadable one was damaged from
  outside (a disk error, a hand edit). It is set aside, never deleted
  (renamed to ``<name>.unreadable``, ``.unreadable.1``, ...) with a
  one-line warning, and None is returned: the run (or phase) counts as
  unfinished and is finished again from its checkpoints, so no state of the
  workdir blocks a re-run forever.
  """
  try:
    return read_json_if_exists(path)
  except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError included
    if is_main():
      target, n = path + ".unreadable", 1
      while os.path.exists(target):
        target, n = f"{path}.unreadable.{n}", n + 1
      os.replace(path, target)
      print(f"warning: {path} is unreadable ({_reason(e)}); moved to "
            f"{target}; finishing the run again from its checkpoints",
            flush=True)
    return None


# ------------------------------------------------------------ phases -----
def read_result(directory: str) -> Any | None:
  """A finished phase's ``result.json`` (None while it is unfinished)."""
  return read_marker(os.path.join(directory, "result.json"))


def write_result(directory: str, result: Any) -> None:
  """Marks the phase in `directory` finished with `result` (process 0)."""
  write_json(os.path.join(directory, "result.json"), result)


# ------------------------------------------------------------ the run ----
def check_workdir(config, workdir: str,
                  compare: Callable[[dict], dict] | None = None,
                  what: str = "a run") -> None:
  """Refuses a workdir that holds a run of a different config.

  `compare` maps a stored config dict to the part that must agree (default:
  all of it); `what` names the run in the message.
  """
  path = os.path.join(workdir, "config.json")
  try:
    stored = read_json_if_exists(path)
  except (ValueError, UnicodeDecodeError) as e:
    raise WorkdirError(
        f"workdir {workdir}: config.json is unreadable ({_reason(e)}), so "
        "the run it holds cannot be checked against this config; move the "
        "workdir aside or use a new --workdir") from None
  if stored is None:
    return
  new = config_json(config)
  if compare is not None:
    stored, new = compare(stored), compare(new)
  if stored != new:
    diff = sorted(k for k in set(stored) | set(new)
                  if stored.get(k) != new.get(k))
    if len(diff) == 1 and isinstance(stored.get(diff[0]), dict) and (
        isinstance(new.get(diff[0]), dict)):
      a, b, sec = stored[diff[0]], new[diff[0]], diff[0]
      diff = sorted(f"{sec}.{k}" for k in set(a) | set(b)
                    if a.get(k) != b.get(k))
    raise WorkdirError(
        f"workdir {workdir} holds {what} of another config (differs in: "
        f"{', '.join(diff)}); use a new --workdir")


def validate(config) -> None:
  """The config checks every run starts with (``ConfigError``): one
  method section at most, then every field."""
  config_check.validate(config, device_count=jax.device_count())


def create(config, workdir: str) -> None:
  """Creates the workdir and writes ``config.json`` (first start only)."""
  if not is_main():
    return
  os.makedirs(workdir, exist_ok=True)
  lock(workdir)
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    write_json(path, config_json(config))


def stored_summary(workdir: str) -> dict | None:
  """The summary of a finished run in `workdir`, else None."""
  return read_marker(os.path.join(workdir, "summary.json"))


def write_summary(workdir: str, summary: dict) -> None:
  """Marks the run finished: ``summary.json`` is the last file written."""
  write_json(os.path.join(workdir, "summary.json"), summary)


def open_run(config, workdir: str, *,
             format_fn: Callable[[dict], str] | None = None,
             compare: Callable[[dict], dict] | None = None,
             create_now: bool = True) -> dict | None:
  """The start every driver shares.

  Validates `config`, refuses another config's workdir (nothing is written
  in either case), and returns the stored summary of a finished run
  (printed with `format_fn` on process 0). Otherwise creates the workdir
  and ``config.json`` (unless ``create_now=False``: a driver with checks
  that need the built model calls :func:`create` after them) and returns
  None.
  """
  validate(config)
  check_workdir(config, workdir, compare)
  summary = stored_summary(workdir)  # a finished run is only read: no lock
  if summary is None:
    locks.check_writable(workdir)
    lock(workdir)
    summary = stored_summary(workdir)  # finished while we took the lock?
  if summary is not None:
    if format_fn is not None and is_main():
      print(f"Run in {workdir} already finished; stored result:")
      print(format_fn(summary), flush=True)
    return summary
  if create_now:
    create(config, workdir)
  return None


__all__ = ["WorkdirError", "absolute", "check_workdir", "config_json",
           "create", "is_main", "lock", "open_run", "unlock", "read_json", "read_json_if_exists",
           "read_marker", "read_result", "stored_summary", "validate", "write_json",
           "write_result", "write_summary", "write_text", "write_with"]
