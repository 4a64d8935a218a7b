"""The Colab notebooks run headless on CPU at a reduced size.

Each notebook has one code cell tagged ``parameters``; the test replaces
it with small values (as papermill does) and executes every cell with
nbclient; any cell error fails the test.
"""
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "launch", "notebooks")


def _execute(name: str, parameters: str, tmp_path) -> list:
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  tagged = [c for c in nb.cells
            if "parameters" in c.get("metadata", {}).get("tags", [])]
  assert len(tagged) == 1, "one cell tagged 'parameters'"
  tagged[0].source = parameters
  client = nbclient.NotebookClient(
      nb, timeout=600, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}})
  client.execute(env=dict(os.environ, JAX_PLATFORMS="cpu",
                          PYTHONPATH=ROOT))
  return [o for c in nb.cells if c.cell_type == "code"
          for o in c.get("outputs", [])]


def test_lottery_quickstart(tmp_path):
  outputs = _execute("lottery_quickstart.ipynb", "\n".join([
      "LEVELS = 1", "STEPS = 40", "CONTROL_SEEDS = 1", 'RESET = "init"',
      f'WORKDIR = "{tmp_path / "run"}"']), tmp_path)
  assert (tmp_path / "run" / "summary.json").exists()
  assert any("image/png" in o.get("data", {}) for o in outputs)
  assert any("text/markdown" in o.get("data", {}) for o in outputs)


def test_binary_quickstart(tmp_path):
  outputs = _execute("binary_quickstart.ipynb", "\n".join([
      "STEPS = 60", "HIDDEN = (16,)", f'WORKDIR = "{tmp_path / "runs"}"']),
      tmp_path)
  assert any("image/png" in o.get("data", {}) for o in outputs)
  md = [o["data"]["text/markdown"] for o in outputs
        if "text/markdown" in o.get("data", {})]
  assert md and "float twin" in md[0]
