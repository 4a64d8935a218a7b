"""The public API of the library packages, and its per-step transforms.

* ``tests/public_api.txt`` lists every public name (``__all__``) of
  ``sparsity``, ``binary`` and ``lottery``: a change to the API is a
  visible change to that file (regenerate it with
  ``python tests/test_public_api.py --update`` and review the diff).
* Every public function that returns an optax transformation (a per-step
  transform: its return annotation names ``GradientTransformation``) is
  checked by the shared conformance suite (an entry of
  ``tests/conformance.TRANSFORMS``) or named in :data:`EXEMPT` with the
  reason it is not.
"""

import importlib
import inspect
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
  sys.path.insert(0, HERE)

PACKAGES = ("sparsity", "binary", "lottery")
SNAPSHOT = os.path.join(HERE, "public_api.txt")

# Registry entries whose name is not the public function they check.
ALIASES = {"masked": "sparsity.masked",
           "sparsity.expand_filter_masks": "sparsity.project_to_mask"}

# Per-step transforms deliberately outside the conformance suite, with why.
EXEMPT = {}


def public_names() -> list:
  out = []
  for pkg in PACKAGES:
    module = importlib.import_module(pkg)
    out += [f"{pkg}.{name}" for name in module.__all__]
  return sorted(out)


def _transforms() -> list:
  """The public functions whose return annotation is an optax transform."""
  found = []
  for full in public_names():
    pkg, name = full.split(".", 1)
    obj = getattr(importlib.import_module(pkg), name)
    if not inspect.isfunction(obj):
      continue
    ret = inspect.signature(obj).return_annotation
    text = ret if isinstance(ret, str) else getattr(ret, "__name__", "")
    if "GradientTransformation" in str(text):
      found.append(full)
  return found


def _registered() -> set:
  import conformance  # pylint: disable=g-import-not-at-top
  names = set()
  for entry in conformance.TRANSFORMS:
    base = entry.name.split("[")[0]
    names.add(ALIASES.get(base, base))
  return names


@pytest.mark.parametrize("pkg", PACKAGES)
def test_all_names_exist_and_are_public(pkg):
  module = importlib.import_module(pkg)
  assert len(set(module.__all__)) == len(module.__all__), "duplicates"
  for name in module.__all__:
    assert not name.startswith("_"), name
    assert hasattr(module, name), f"{pkg}.__all__ names missing {name}"


def test_public_api_matches_the_snapshot():
  with open(SNAPSHOT) as f:
    listed = [l.strip() for l in f if l.strip() and not l.startswith("#")]
  now = public_names()
  added = sorted(set(now) - set(listed))
  removed = sorted(set(listed) - set(now))
  assert not added and not removed, (
      f"public API changed: added {added}, removed {removed}; if intended, "
      "run `python tests/test_public_api.py --update` and commit the diff")


def test_transforms_are_detected():
  found = _transforms()
  for name in ("sparsity.masked", "sparsity.count_gradients",
               "binary.clip_params", "binary.mask_budget"):
    assert name in found, (name, found)


def test_every_per_step_transform_is_in_the_conformance_suite():
  registered = _registered()
  missing = [t for t in _transforms()
             if t not in registered and t not in EXEMPT]
  assert not missing, (
      f"per-step transforms outside the conformance suite: {missing}; add "
      "an entry to tests/conformance.TRANSFORMS (or to EXEMPT here, with "
      "the reason)")
  stale = [e for e in EXEMPT if e in registered]
  assert not stale, f"exempt but registered: {stale}"


if __name__ == "__main__":
  if sys.argv[1:] == ["--update"]:
    sys.path.insert(0, os.path.dirname(HERE))
    with open(SNAPSHOT, "w") as f:
      f.write("# The public API (`__all__`) of sparsity, binary and lottery."
              "\n# Regenerate: python tests/test_public_api.py --update\n")
      f.writelines(n + "\n" for n in public_names())
    print(f"wrote {SNAPSHOT}")
  else:
    print("usage: python tests/test_public_api.py --update")
