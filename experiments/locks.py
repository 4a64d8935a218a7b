"""The workdir lock and path normalization (re-exported by ``runs``).

A module of its own because both ``experiments.runs`` (which takes the lock
when a run opens its workdir) and ``experiments.drivers`` (which releases
it when the driver returns) need it, and ``drivers`` must not import
``runs`` (``runs`` validates configs, and the validation asks ``drivers``
for the method sections).
"""
from __future__ import annotations

import fcntl
import os

import jax

from experiments import errors


class WorkdirError(errors.ConfigError):
  """The workdir holds another config's run, or another run holds it."""


def is_main() -> bool:
  """True on the process that writes the workdir (process 0)."""
  return jax.process_index() == 0


def absolute(path: str) -> str:
  """`path` with ``~`` expanded, made absolute (the one place this is
  done; every program calls it on its path flags)."""
  return os.path.abspath(os.path.expanduser(path))


def check_writable(workdir: str) -> None:
  """Raises :class:`WorkdirError` (one line) unless `workdir` is a
  writable directory or can be created: not a file, not below a file, not
  in a read-only or unwritable place. Nothing is created."""
  path = absolute(workdir)
  probe = path
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe):
    where = "" if probe == path else f" ({probe} is a file)"
    raise WorkdirError(f"workdir {workdir} is not a directory{where}; use "
                       "another --workdir")
  if not os.access(probe, os.W_OK | os.X_OK):
    what = "" if probe == path else f" (its parent {probe} is not)"
    raise WorkdirError(f"workdir {workdir} is not writable{what}; use "
                       "another --workdir")


_LOCKS: dict[str, int] = {}  # absolute workdir -> fd holding its flock


def lock(workdir: str) -> None:
  """Takes the workdir's lock for this process (process 0; re-entrant).

  Does nothing while the workdir does not exist (``runs.create`` locks it
  once made). Raises :class:`WorkdirError` when another process holds it.
  """
  if not is_main():
    return
  path = absolute(workdir)
  if path in _LOCKS or not os.path.isdir(path):
    return
  fd = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
    os.close(fd)
    raise WorkdirError(
        f"workdir {workdir} is in use by another run (pid {holder}); wait "
        "for it to finish or use another --workdir") from None
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
  _LOCKS[path] = fd


def unlock(workdir: str) -> None:
  """Releases the lock :func:`lock` took (no-op if not held)."""
  fd = _LOCKS.pop(absolute(workdir), None)
  if fd is not None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


__all__ = ["WorkdirError", "absolute", "check_writable", "is_main", "lock",
           "unlock"]
