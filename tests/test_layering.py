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


# ------------------------------------------------- no borrowed private names
#
# No module borrows another's private names: neither ``mod._name`` on an
# imported module, nor ``from pkg import _private`` / ``import pkg._private``
# of another package's private module (a module's own package may import its
# private modules: a package's ``__init__`` re-exporting them, siblings
# sharing them, ``tests/_*.py`` helpers of the test suite, ``bench._timing``
# of the benchmarks).

BORROWERS = ("tests", "bench", "launch", "experiments")
# The standard library's documented underscore names.
STDLIB_PRIVATE_OK = {"os._exit", "sys._getframe"}
# Remaining borrowings, each with the reason it stays: "importer: what".
_EVALUATOR_INTERNALS = (
    "unit test of the NumPy evaluator's internals (kernels, ops, bit "
    "packing, the file container, the gating plan), which "
    "experiments.export keeps private behind Model / read / write")
_KERNEL_BENCH = ("microbenchmark of the evaluator's kernels themselves "
                 "(and the float reference and packing they are timed "
                 "against); no public handle by design")
BORROW_ALLOWED = {
    "bench.sparse_kernels: from experiments.export import _sparse":
        _KERNEL_BENCH,
    "bench.xnor_kernels: from experiments.export import _kernels":
        _KERNEL_BENCH,
    "bench.xnor_kernels: from experiments.export import _ops": _KERNEL_BENCH,
    "bench.xnor_kernels: from experiments.export import _pack": _KERNEL_BENCH,
    "tests.test_evaluator: from experiments.export import _kernels":
        _EVALUATOR_INTERNALS,
    "tests.test_evaluator: from experiments.export import _ops":
        _EVALUATOR_INTERNALS,
    "tests.test_evaluator: from experiments.export import _pack":
        _EVALUATOR_INTERNALS,
    "tests.test_evaluator_fbs: from experiments.export import _gating":
        _EVALUATOR_INTERNALS,
    "tests.test_evaluator_fbs: from experiments.export import _ops":
        _EVALUATOR_INTERNALS,
    "tests.test_evaluator_fbs: from experiments.export import _spec":
        _EVALUATOR_INTERNALS,
    "tests.test_export: from experiments.export import _ops":
        _EVALUATOR_INTERNALS,
    "tests.test_export_malformed: from experiments.export import _format":
        _EVALUATOR_INTERNALS,
    "tests.test_spec: from experiments.export import _ops":
        _EVALUATOR_INTERNALS,
    "tests.test_spec: from experiments.export import _spec":
        _EVALUATOR_INTERNALS,
    # prune_n_m must reuse one compiled selection for every n: the jit
    # cache of the private jitted kernel has no public handle.
    "tests.test_nm: from sparsity import _nm": "the jit-cache check below",
    "tests.test_nm: _nm._keep_n_of_m": "prune_n_m compiles its selection "
                                       "once for every n (jit cache size)",
}


def _is_private(part: str) -> bool:
  return part.startswith("_") and not (part.startswith("__")
                                        and part.endswith("__"))


def _scanned_modules() -> dict:
  """module name -> file path for the borrowers' files; tests/ (a folder
  on sys.path, no package) as ``tests.<name>``."""
  out = {}
  for top in BORROWERS:
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for f in files:
        if f.endswith(".py"):
          rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3]
          parts = rel.split(os.sep)
          if parts[-1] == "__init__":
            parts = parts[:-1]
          out[".".join(parts)] = os.path.join(dirpath, f)
  return out


def _package_of(name: str, path: str) -> str:
  return name if path.endswith("__init__.py") else name.rpartition(".")[0]


def _private_module_borrowed(importer: str, path: str, target: str) -> bool:
  """Whether importing module `target` borrows a private module of another
  package: a private part of `target` below a package that is not the
  importer's (nor one of its ancestors)."""
  own = _package_of(importer, path)
  parts = target.split(".")
  for i, part in enumerate(parts):
    if _is_private(part):
      parent = ".".join(parts[:i])
      return not (own == parent or own.startswith(parent + "."))
  return False


def _borrowings(name: str, path: str, modules: dict, project: dict) -> list:
  """'name: what' for each private name `name` borrows."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  in_tests = name.startswith("tests.")

  def resolve(mod: str) -> str:
    # tests/ is on sys.path: `import helpers` is tests/helpers.py.
    if in_tests and mod.split(".")[0] not in project and (
        f"tests.{mod.split('.')[0]}" in modules):
      return f"tests.{mod}"
    return mod

  known = set(modules) | set(project)
  module_names = {}  # local name -> module it is bound to
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        target = resolve(a.name)
        if _private_module_borrowed(name, path, target):
          out.append(f"{name}: import {a.name}")
        if a.asname:
          module_names[a.asname] = target
        else:
          module_names[a.name.split(".")[0]] = resolve(a.name.split(".")[0])
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = name.split(".")
        anchor = anchor if path.endswith("__init__.py") else anchor[:-1]
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      base = resolve(base)
      for a in node.names:
        full = f"{base}.{a.name}"
        if full in known:  # a module
          module_names[a.asname or a.name] = full
          bad = _private_module_borrowed(name, path, full)
        else:  # a name of module `base`
          bad = (_private_module_borrowed(name, path, base)
                 or (_is_private(a.name) and base != name))
        if bad:
          out.append(f"{name}: from {node.module or '.'} import {a.name}")
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and _is_private(node.attr)
        and isinstance(node.value, ast.Name)
        and node.value.id in module_names):
      what = f"{node.value.id}.{node.attr}"
      if f"{module_names[node.value.id]}.{node.attr}" in STDLIB_PRIVATE_OK:
        continue
      if module_names[node.value.id] == name:
        continue
      out.append(f"{name}: {what} (line {node.lineno})")
  return out


def _all_borrowings() -> list:
  modules = _scanned_modules()
  project = _modules()
  return sorted(b for m, p in modules.items()
                for b in _borrowings(m, p, modules, project))


def test_no_module_borrows_private_names():
  found = _all_borrowings()
  key = lambda b: b.split(" (line")[0]
  bad = [b for b in found if key(b) not in BORROW_ALLOWED]
  assert not bad, ("private names borrowed (make the name public where it "
                   "lives, or use the public API):\n" + "\n".join(bad))
  stale = sorted(set(BORROW_ALLOWED) - {key(b) for b in found})
  assert not stale, f"allowed borrowings that no longer happen: {stale}"
  assert all(BORROW_ALLOWED.values()), "every allowed borrowing has a reason"


def test_the_borrowing_check_sees_each_form(tmp_path):
  src = tmp_path / "probe.py"
  src.write_text(
      "import os, sys\n"
      "from sparsity import _masks\n"
      "import binary._layers\n"
      "from experiments import train, _private_name\n"
      "from experiments.export._spec import LAYER_OPS\n"
      "import experiments.lottery_report as report\n"
      "train._helper(); report._series; binary.__name__\n"
      "os._exit; sys._getframe; os.__file__\n")
  modules = {"launch.probe": str(src)}
  got = _borrowings("launch.probe", str(src), modules, _modules())
  assert sorted(g.split(" (line")[0] for g in got) == sorted([
      "launch.probe: from sparsity import _masks",
      "launch.probe: import binary._layers",
      "launch.probe: from experiments import _private_name",
      "launch.probe: from experiments.export._spec import LAYER_OPS",
      "launch.probe: train._helper",
      "launch.probe: report._series",
  ]), got
