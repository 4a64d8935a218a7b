"""The Colab notebooks install the project and run headless on CPU.

Each notebook has one code cell tagged ``parameters`` (``REPO``, where the
project lives, and the sizes); the test replaces it with small values (as
papermill does) and executes every cell with nbclient; any cell error fails
the test. Each notebook's install cell runs for real: ``pip install -e``
of this checkout into the kernel's environment. That environment is a
virtual environment made for this module (``--system-site-packages``: it
sees the suite's dependencies, so nothing is downloaded but pip's build
requirements) whose kernel has no ``PYTHONPATH``, so the notebook imports
the package only through what its install cell installed, and the
environment the tests run in is never touched (its package may point at
another tree). One notebook leaves ``REPO`` empty and runs in
launch/notebooks, as when opened from a checkout: its install cell finds
the checkout by walking up.
"""
import json
import os
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("jupyter_client.kernelspec")
manager = pytest.importorskip("jupyter_client.manager")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "launch", "notebooks")
KERNEL = "sbn-notebook-test"


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
  """A folder holding the kernel spec of a fresh virtual environment."""
  base = tmp_path_factory.mktemp("notebook_env")
  venv = base / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                  "--without-pip", str(venv)], check=True)
  spec = base / "kernels" / KERNEL
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher",
               "-f", "{connection_file}"],
      "display_name": "sparse-binary-nets notebook test",
      "language": "python"}))
  return str(base / "kernels")


def _execute(kernels, name: str, parameters: str, cwd) -> list:
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  tagged = [c for c in nb.cells
            if "parameters" in c.get("metadata", {}).get("tags", [])]
  assert len(tagged) == 1, "one cell tagged 'parameters'"
  assert "REPO" in tagged[0].source
  tagged[0].source = parameters
  km = manager.KernelManager(
      kernel_name=KERNEL,
      kernel_spec_manager=kernelspec.KernelSpecManager(
          kernel_dirs=[kernels]))
  client = nbclient.NotebookClient(
      nb, km=km, timeout=600, resources={"metadata": {"path": str(cwd)}})
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "SPARSE_BINARY_NETS_REPO")}
  client.execute(env=dict(env, JAX_PLATFORMS="cpu"))
  outputs = [o for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", [])]
  text = "".join(o.get("text", "") for o in outputs)
  # The install cell ran pip, and the package comes from this checkout.
  assert f"experiments imported from {ROOT}\n" in text, text[:3000]
  assert "backend: cpu, " in text, text[:3000]
  return outputs


def _params(**values) -> str:
  return "\n".join(f"{k} = {v!r}" for k, v in values.items())


def test_lottery_quickstart(kernels, tmp_path):
  # REPO "" in launch/notebooks: the checkout is found by walking up.
  outputs = _execute(kernels, "lottery_quickstart.ipynb", _params(
      REPO="", LEVELS=1, STEPS=40, CONTROL_SEEDS=1, RESET="init",
      WORKDIR=str(tmp_path / "run")), NOTEBOOKS)
  assert (tmp_path / "run" / "summary.json").exists()
  assert any("image/png" in o.get("data", {}) for o in outputs)
  assert any("text/markdown" in o.get("data", {}) for o in outputs)


def test_binary_quickstart(kernels, tmp_path):
  outputs = _execute(kernels, "binary_quickstart.ipynb", _params(
      REPO=ROOT, STEPS=60, HIDDEN=(16,), WORKDIR=str(tmp_path / "runs")),
      tmp_path)
  assert any("image/png" in o.get("data", {}) for o in outputs)
  md = [o["data"]["text/markdown"] for o in outputs
        if "text/markdown" in o.get("data", {})]
  assert md and "float twin" in md[0]


def test_binary_ablation_sweep(kernels, tmp_path):
  workdir = tmp_path / "sweep"
  outputs = _execute(kernels, "binary_ablation_sweep.ipynb", _params(
      REPO=ROOT, GRID={"optimizer": ["sgd", "adam"]}, SEEDS=[0], STEPS=20,
      HIDDEN=(16,), PARALLEL=2, WORKDIR=str(workdir)), tmp_path)
  assert len(os.listdir(workdir / "runs")) == 2
  md = [o["data"]["text/markdown"] for o in outputs
        if "text/markdown" in o.get("data", {})]
  assert md and "sgd" in md[0] and "adam" in md[0], md
  assert any("image/png" in o.get("data", {}) for o in outputs)


def test_export_evaluate(kernels, tmp_path):
  outputs = _execute(kernels, "export_evaluate.ipynb", _params(
      REPO=ROOT, CONFIG="binaryconnect_digits", STEPS=60, HIDDEN=(16,),
      WORKDIR=str(tmp_path / "export")), tmp_path)
  assert (tmp_path / "export" / "model.sbn").exists()
  md = [o["data"]["text/markdown"] for o in outputs
        if "text/markdown" in o.get("data", {})]
  assert md and "| equal | True |" in md[-1], md


def test_every_notebook_is_executed():
  """Each notebook in launch/notebooks has its test above (so its install
  cell is exercised)."""
  tested = {name[len("test_"):] + ".ipynb" for name in globals()
            if name.startswith("test_")}
  assert set(os.listdir(NOTEBOOKS)) <= tested, (
      sorted(set(os.listdir(NOTEBOOKS)) - tested))
