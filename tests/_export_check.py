"""Export a finished run's declared result and evaluate it without JAX.

Every driver's test file calls :func:`check` on the finished run its
fixture already trained (no new training): ``launch.export`` (in-process,
or ``cli=True`` as a subprocess) writes the file, ``launch.evaluate`` runs
in a subprocess where ``import jax`` fails, and its test accuracy must
equal the one the run reported.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Makes `import jax` (flax, optax, orbax, tensorflow) fail (the prefix of
# every no-JAX subprocess in the tests).
BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = {"jax", "jaxlib", "flax", "optax", "orbax", "tensorflow"}
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError(f"{name} is blocked (no-JAX test)")
sys.meta_path.insert(0, Block())
"""
# ... then runs launch.evaluate as __main__ with the remaining arguments.
NO_JAX = BLOCKER + """
sys.argv = ["launch.evaluate", *sys.argv[1:]]
runpy.run_module("launch.evaluate", run_name="__main__", alter_sys=True)
"""


def export(workdir, out, cli=False, **options):
  """Exports with ``launch.export`` (subprocess when `cli`); returns the
  export summary (in-process) or the CompletedProcess (cli)."""
  if cli:
    flags = [f"--{k}={v}" for k, v in options.items() if v is not None]
    return subprocess.run(
        [sys.executable, "-m", "launch.export", f"--workdir={workdir}",
         f"--out={out}", *flags], cwd=ROOT, capture_output=True, text=True,
        timeout=600)
  from experiments import export as export_lib  # pylint: disable=g-import-not-at-top
  return export_lib.export_run(workdir, str(out), **options)


def evaluate_without_jax(model_file, *args) -> dict:
  """``launch.evaluate --json`` in a subprocess that cannot import JAX."""
  r = subprocess.run([sys.executable, "-c", NO_JAX, f"--model={model_file}",
                      "--json", *args], cwd=ROOT, capture_output=True,
                     text=True, timeout=600)
  assert r.returncode == 0, r.stderr
  return json.loads(r.stdout)


def reported(workdir) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def check(workdir, tmp_path, name="model.sbn", cli=False, **options):
  """Exports the run's result, evaluates it without JAX; asserts the
  accuracy equals the reported one; returns (evaluation, export info)."""
  out = os.path.join(str(tmp_path), name)
  info = export(workdir, out, cli=cli, **options)
  if cli:
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith(f"wrote {out}"), info.stdout
  result = evaluate_without_jax(out)
  assert result["meta"]["workdir"] == os.path.abspath(workdir)
  want = result["meta"]["reported_test_accuracy"]
  assert result["accuracy"] == want, (result["accuracy"], want)
  return result, info
