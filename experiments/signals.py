"""Preemption: SIGTERM / SIGINT end a run at a step boundary, checkpointed.

A cluster preempts a job with SIGTERM (SLURM: then SIGKILL after a grace
period); a user stops one with Ctrl-C (SIGINT). While ``drivers.run`` runs
a driver, :func:`handling` replaces both handlers with one that only sets a
flag; ``engine.train_phase`` checks it after every step, writes a checkpoint
of that step and raises :class:`Preempted`. ``launch.train`` then exits with
:data:`EXIT_PREEMPTED` (SIGTERM) or 130 (SIGINT), and re-running the same
command resumes from that step: no step is lost.
"""
from __future__ import annotations

import contextlib
import signal
import threading

EXIT_PREEMPTED = 143  # 128 + SIGTERM, what a shell reports for the signal

_received: list[int] = []


class Preempted(Exception):
  """The run stopped on a signal after checkpointing step `step`."""

  def __init__(self, step: int, signum: int):
    name = signal.Signals(signum).name
    super().__init__(f"{name} received: stopped after step {step}, "
                     f"checkpoint written; re-run the same command to resume")
    self.step, self.signum = step, signum

  @property
  def exit_code(self) -> int:
    return 130 if self.signum == signal.SIGINT else EXIT_PREEMPTED


def requested() -> int | None:
  """The signal number received since :func:`handling` began, else None."""
  return _received[0] if _received else None


@contextlib.contextmanager
def handling():
  """Within: SIGTERM and SIGINT set the flag instead of killing (main
  thread only; elsewhere a no-op). The previous handlers come back after."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  _received.clear()
  previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

  def flag(signum, _frame):
    if signum == signal.SIGINT and _received:  # a second Ctrl-C: stop now
      raise KeyboardInterrupt
    _received.append(signum)

  for s in previous:
    signal.signal(s, flag)
  try:
    yield
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
    _received.clear()


__all__ = ["EXIT_PREEMPTED", "Preempted", "handling", "requested"]
