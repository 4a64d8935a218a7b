"""Run outputs: metrics.jsonl, TensorBoard events, the progress line.

Only process 0 writes. `MetricWriter.write(step, metrics)` appends one JSON
object per log step to `<workdir>/metrics.jsonl` (each with "step") and,
when `tensorboardX` or `tensorboard` is importable, scalar events too.
"""
from __future__ import annotations

import json
import os
import time

import jax


def _tensorboard_writer(logdir: str):
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    return SummaryWriter(logdir)
  except ImportError:
    pass
  try:
    from torch.utils.tensorboard import SummaryWriter  # pylint: disable=g-import-not-at-top
    return SummaryWriter(logdir)
  except ImportError:
    return None


class MetricWriter:
  """Appends metrics to metrics.jsonl (and TensorBoard when available)."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self._active = jax.process_index() == 0
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self._active:
      self._drop_after(resume_step)
      self._tb = _tensorboard_writer(os.path.join(workdir, "tensorboard"))

  def _drop_after(self, step: int) -> None:
    """Forgets lines past the resume point, written before a kill."""
    if not os.path.exists(self._path):
      return
    with open(self._path) as f:
      lines = [l for l in f if l.strip()]
    rows = [_parse(l) for l in lines]
    torn = sum(r is None for r in rows)
    if torn:  # a kill or a full disk mid-write: drop it, say so
      print(f"note: {self._path}: dropped {torn} unreadable line(s) (a "
            "write cut short); the checkpoint is intact", flush=True)
    kept = [l if l.endswith("\n") else l + "\n"
            for l, r in zip(lines, rows) if r is not None and r["step"] <= step]
    if kept != lines:  # dropped rows, a torn line or a missing newline
      tmp = self._path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(kept)
      os.replace(tmp, self._path)

  def write(self, step: int, metrics: dict) -> None:
    if not self._active:
      return
    row = {"step": int(step), **{k: _scalar(v) for k, v in metrics.items()}}
    with open(self._path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def write_event(path: str, row: dict) -> None:
  """Records one event of a run as a line of a JSON-lines file.

  `row["step"]` addresses the line: an event re-run after a resume replaces
  its line and drops every later one (written before a kill), so the file
  always describes the run that the checkpoints hold. Process 0 only;
  written to a temporary file and renamed.
  """
  if jax.process_index() != 0:
    return
  step = int(row["step"])
  lines = []
  if os.path.exists(path):
    with open(path) as f:
      lines = [l for l in f if l.strip() and json.loads(l)["step"] < step]
  lines.append(json.dumps(row) + "\n")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(lines)
  os.replace(tmp, path)


def read_events(path: str) -> list[dict]:
  """The rows of a JSON-lines event file (`write_event`), [] if absent."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def _parse(line: str) -> dict | None:
  """One metrics row, or None for a torn line (not a JSON object with a
  step)."""
  try:
    row = json.loads(line)
  except ValueError:
    return None
  return row if isinstance(row, dict) and "step" in row else None


def _scalar(v):
  try:
    return float(v)
  except (TypeError, ValueError):
    return v


class Progress:
  """One progress line per log step: step, loss, steps/s and ETA."""

  def __init__(self, start_step: int, total_steps: int):
    self._total = total_steps
    self._last_step, self._last_time = start_step, time.perf_counter()

  def update(self, step: int) -> tuple[float, float]:
    """(steps/s since the previous call, ETA in seconds)."""
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self._total - step) / rate if rate > 0 else float("inf")
    return rate, eta

  def line(self, step: int, loss: float, rate: float, eta: float) -> str:
    eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta < 1e7 else "?"
    return (f"step {step:>7d}/{self._total}  loss {loss:.4f}  "
            f"{rate:8.1f} steps/s  ETA {eta_s}")
