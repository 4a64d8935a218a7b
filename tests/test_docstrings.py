"""Every docstring example of the packages runs (``>>>`` lines, doctest).

One test per module of ``sparsity``, ``binary``, ``lottery`` and
``experiments`` that has examples, so a new example is run by CI the moment
it is written. ``test_every_module_is_collected`` guards the collection
itself (a module that fails to import would otherwise drop its examples).
"""

import doctest
import importlib
import os
import pkgutil

import pytest

PACKAGES = ("sparsity", "binary", "lottery", "experiments")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list:
  names = []
  for pkg in PACKAGES:
    names.append(pkg)
    path = [os.path.join(ROOT, pkg)]
    for info in pkgutil.walk_packages(path, prefix=pkg + "."):
      names.append(info.name)
  return sorted(names)


def _has_examples(name: str) -> bool:
  path = os.path.join(ROOT, *name.split("."))
  path = (os.path.join(path, "__init__.py") if os.path.isdir(path)
          else path + ".py")
  with open(path) as f:
    return ">>>" in f.read()


MODULES = [n for n in _module_names() if _has_examples(n)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  finder = doctest.DocTestFinder(exclude_empty=True)
  runner = doctest.DocTestRunner(optionflags=FLAGS)
  attempted = 0
  for test in finder.find(module):
    # Only the module's own docstrings (not re-exported objects' docs).
    if not test.examples or test.filename != module.__file__:
      continue
    runner.run(test)
    attempted += len(test.examples)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{name}: {result.failed} example(s) failed"
  assert attempted > 0, f"{name} has '>>>' but no example was collected"


def test_every_module_is_collected():
  assert len(MODULES) >= 20, MODULES
  for pkg in ("sparsity", "binary", "lottery", "experiments"):
    assert any(m.startswith(pkg) for m in MODULES), pkg
