"""Every shipped config: loads, has at most one method section, validates,
and its docstring gives the command that runs it.

A config without a method section is a plain run (``experiments.train.run``);
one with a section runs that section's driver (``experiments.drivers``).
"""

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
# at most one method section; running them fails with one line).
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
    section = drivers.section_of(config)  # two sections raise
    assert section is None or section in drivers.DRIVERS
    if name in NOT_RUNNABLE:
      with pytest.raises(config_check.ConfigError, match=NOT_RUNNABLE[name]):
        config_check.validate(config, device_count=1)
    else:
      config_check.validate(config, device_count=1)
    mod = drivers.driver_of(config)
    assert callable(mod.run), (name, variant)
