"""The import graph: acyclic, and the library never imports the experiments.

Every ``import`` statement of every module of the project's packages counts,
including those inside functions (a function-level import hides a cycle
from Python, not from a reader). Edges are between modules:
``from experiments import train`` is an edge to ``experiments.train``,
``from experiments.train import Engine`` too, ``import sparsity`` an edge to
the package ``sparsity`` (its ``__init__``).
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("sparsity", "binary", "lottery", "experiments", "launch",
            "bench")
LIBRARY = ("sparsity", "binary", "lottery")


def _modules() -> dict:
  """module name -> file path, for every .py file of the packages."""
  out = {}
  for pkg in PACKAGES:
    for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
      for f in files:
        if not f.endswith(".py"):
          continue
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3]
        parts = rel.split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        out[".".join(parts)] = os.path.join(dirpath, f)
  return out


def _imports(name: str, path: str, modules: dict) -> set:
  """The project modules that `name` imports, anywhere in its file."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_pkg = path.endswith("__init__.py")
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = name.split(".")
        anchor = anchor if is_pkg else anchor[:-1]
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules
                 else base for a in node.names]
    else:
      continue
    for t in targets:
      while t and t not in modules:  # `import a.b.c` of a symbol path
        t = t.rpartition(".")[0]
      if t and t != name:
        out.add(t)
  return out


def _graph() -> dict:
  modules = _modules()
  return {m: _imports(m, p, modules) for m, p in modules.items()}


def _cycle(graph: dict):
  """One cycle as a list of modules, or None."""
  state = {}
  stack = []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for n in sorted(graph.get(m, ())):
      if state.get(n) == "open":
        return stack[stack.index(n):] + [n]
      if n not in state:
        found = visit(n)
        if found:
          return found
    stack.pop()
    state[m] = "done"
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def _is_package_edge(a: str, b: str) -> bool:
  """A package's ``__init__`` importing its own submodule (re-exports),
  or a submodule importing its own package: both are the normal shape of a
  package with private modules and not a layering cycle."""
  return b.startswith(a + ".") or a.startswith(b + ".")


def test_import_graph_is_acyclic():
  graph = {m: {n for n in deps if not _is_package_edge(m, n)}
           for m, deps in _graph().items()}
  cycle = _cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("pkg", LIBRARY)
def test_library_never_imports_experiments_or_launch(pkg):
  bad = sorted(f"{m} imports {n}" for m, deps in _graph().items()
               if m == pkg or m.startswith(pkg + ".")
               for n in deps if n.split(".")[0] in ("experiments", "launch",
                                                    "bench"))
  assert not bad, bad


def test_the_graph_sees_function_level_imports():
  graph = _graph()
  # launch.train imports the drivers inside main() (after absl parsing).
  assert "experiments.drivers" in graph["launch.train"]
  assert "experiments.engine" in graph["experiments.lottery_run"]


def test_the_engine_imports_no_driver():
  """The engine (`train_phase`, `Engine`) imports neither a driver (a
  ``*_run`` module, ``scratch``, the registry) nor the plain run."""
  drivers = {m for m in _modules() if m.startswith("experiments.") and (
      m.endswith("_run") or m in ("experiments.train", "experiments.scratch",
                                  "experiments.drivers"))}
  bad = sorted(_graph()["experiments.engine"] & drivers)
  assert not bad, bad


def test_a_cycle_is_found():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_export_package_imports_nothing_else_from_experiments():
  """The layer-list spec and the evaluator (NumPy) stand alone; only the
  JAX glue that reads a run's workdir (`_from_run`, loaded lazily by
  `export_run`) reaches the trainer and the drivers."""
  glue = "experiments.export._from_run"
  bad = sorted(f"{m} imports {n}" for m, deps in _graph().items()
               if m.startswith("experiments.export") and m != glue
               for n in deps
               if n.startswith("experiments") and n != glue
               and not n.startswith("experiments.export"))
  assert not bad, bad
