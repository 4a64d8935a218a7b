"""Every shipped config: loads, has exactly one method section, validates,
imports no config but the neutral base, and its docstring gives the command
that runs it.

A config whose method section is ``pruning`` (or that has none, as a user's
dense run may) is a plain run (``experiments.train.run``); one with a
driver's section runs that driver (``experiments.drivers``).
"""

import ast
import importlib
import inspect
import os

import pytest

from experiments import config_check
from experiments import drivers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "experiments", "configs")
NAMES = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
               if f.endswith(".py") and not f.startswith("_"))
# Documented recipes that cannot run yet, and why (they still load and have
# one method section; running them fails with one line).
NOT_RUNNABLE = {
    "benn_imagenet_resnet18": "config.dataset: unknown value 'imagenet2012'",
}


def _variants(module) -> list:
  """get_config() and, for configs that take a variant argument, each
  variant named in the module (``VARIANTS`` / ``RECIPES``), if any."""
  fn = module.get_config
  params = inspect.signature(fn).parameters
  out = [("", fn())]
  for attr in ("VARIANTS", "RECIPES"):
    for v in getattr(module, attr, ()) if params else ():
      out.append((v, fn(v)))
  return out


def test_configs_are_found():
  assert len(NAMES) >= 30, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_shipped_config(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  doc = module.__doc__ or ""
  assert "launch." in doc, f"{name}: the docstring gives no command"
  for variant, config in _variants(module):
    assert len(drivers.method_sections(config)) == 1, (
        name, variant, drivers.method_sections(config))
    section = drivers.section_of(config)  # two sections raise
    assert section is None or section in drivers.DRIVERS
    if name in NOT_RUNNABLE:
      with pytest.raises(config_check.ConfigError, match=NOT_RUNNABLE[name]):
        config_check.validate(config, device_count=1)
    else:
      config_check.validate(config, device_count=1)
    mod = drivers.driver_of(config)
    assert callable(mod.run), (name, variant)


def _config_imports(name: str) -> list:
  """The modules a config file imports (``from a import b``: ``a.b``)."""
  path = os.path.join(CONFIG_DIR, name + ".py")
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = "experiments.configs" if node.level else node.module
      if node.level and node.module:
        base += "." + node.module
      out += [f"{base}.{a.name}" for a in node.names]
  return out


@pytest.mark.parametrize("name", NAMES)
def test_config_imports_only_the_base(name):
  project = [m for m in _config_imports(name)
             if m.split(".")[0] in ("experiments", "launch", "sparsity",
                                    "binary", "lottery", "bench")]
  assert project == ["experiments.configs._base"], (name, project)


def test_the_base_is_neutral():
  base = importlib.import_module("experiments.configs._base")
  config = base.get_config()
  assert drivers.method_sections(config) == []  # no pruning, no method
  assert drivers.section_of(config) is None
  config_check.validate(config, device_count=1)  # a plain dense run
  assert drivers.driver_of(config).__name__ == drivers.PLAIN
