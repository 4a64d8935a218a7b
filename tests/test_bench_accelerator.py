"""`python -m bench.accelerator --quick`: the accelerator check runs on CPU.

The quick mode is the full program at toy sizes; this checks that it prints
the devices and every ratio row with a finite value, and that a bad flag is
one line and exit code 2. No timing is asserted (a shared CPU says nothing
about an accelerator).
"""
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = ("trainer / hand-written loop steps/s", "masked / dense step",
        "STE-binary / float step", "BENN vmapped / sequential speed-up",
        "mask update share of the step time")


def _run(*args):
  return subprocess.run(
      [sys.executable, "-m", "bench.accelerator", *args], cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
      text=True, timeout=600)


def test_quick_prints_devices_and_finite_ratios():
  proc = _run("--quick")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("devices: cpu, "), lines[0]
  assert "quick mode" in lines[1], lines[1]
  for row in ROWS:
    found = [l for l in lines if l.startswith(row + ": ")]
    assert len(found) == 1, (row, proc.stdout)
    value = float(re.match(r"[-+0-9.eainf]+", found[0][len(row) + 2:])[0])
    assert math.isfinite(value) and value > 0, found[0]


def test_bad_flag_is_one_line_and_exit_2():
  proc = _run("--quik")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "usage: python -m bench.accelerator [--quick] (unknown argument "
      "'--quik')"], proc.stderr
