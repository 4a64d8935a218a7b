"""The driver registry: a new method is one module and one registry line."""
import json
import os

import ml_collections
import pytest

from experiments import config_check
from experiments import drivers
import helpers


def _toy_config():
  config = helpers.small_config(**{"pruning.method": "none",
                                   "num_steps": 60, "eval_every": 60,
                                   "checkpoint_every": 30})
  config.toy = ml_collections.ConfigDict({"prune_at": 30, "fraction": 0.5})
  return config


def test_a_toy_driver_is_one_module_and_one_registry_line(tmp_path,
                                                          monkeypatch):
  monkeypatch.setitem(drivers.DRIVERS, "toy", "_toy_driver")  # the line
  config = _toy_config()
  assert drivers.section_of(config) == "toy"
  workdir = str(tmp_path / "toy")
  summary = drivers.run(config, workdir)
  assert summary["toy"] == {"fraction": 0.5}
  kept = summary["final"]["remaining_fraction"]
  assert 0.45 < kept < 0.55, kept  # half of every layer removed once
  # the run protocol: config.json, summary.json last, resume returns it
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["toy"] == {"prune_at": 30, "fraction": 0.5}
  assert drivers.run(config, workdir) == summary
  # and the registry's one-section rule covers the new section
  config.repr = ml_collections.ConfigDict({"cycles": 1})
  with pytest.raises(config_check.ConfigError, match="toy.*repr|repr.*toy"):
    drivers.run(config, str(tmp_path / "two"))
  assert not os.path.exists(tmp_path / "two")


def test_the_plain_run_is_a_driver_too():
  assert drivers.driver_of(helpers.small_config()).__name__ == (
      "experiments.train")
  assert drivers.section_of(helpers.small_config()) is None


def test_register_refuses_a_clash_and_a_bad_name():
  with pytest.raises(ValueError, match="already registered"):
    drivers.register("lottery", "somewhere.else")
  with pytest.raises(ValueError, match="not an identifier"):
    drivers.register("two words", "x")
  with pytest.raises(ValueError, match="plain run"):
    drivers.register("pruning", "somewhere.else")


def test_pruning_is_the_plain_runs_method_section():
  plain = helpers.small_config()  # pruning.method = magnitude
  assert drivers.method_sections(plain) == ["pruning"]
  del plain["pruning"]  # a dense run without a method section
  assert drivers.method_sections(plain) == []
  assert drivers.section_of(plain) is None
  config_check.validate(plain)
  assert drivers.driver_of(plain).__name__ == drivers.PLAIN
  # next to a driver's section, pruning.method="none" is no second section
  lottery = helpers.small_lottery_config()
  assert "pruning" not in lottery
  assert drivers.method_sections(lottery) == ["lottery"]
  lottery.pruning = helpers.small_config().pruning
  lottery.pruning.method = "none"
  assert drivers.method_sections(lottery) == ["lottery"]
  config_check.validate(lottery)
  lottery.pruning.method = "magnitude"  # the lottery driver would ignore it
  assert drivers.method_sections(lottery) == ["lottery", "pruning"]
  with pytest.raises(config_check.ConfigError,
                     match=r"^config\.pruning\.method: must be 'none' next "
                           r"to config\.lottery"):
    drivers.section_of(lottery)


@pytest.mark.parametrize("section", [drivers.PLAIN_SECTION,
                                     *sorted(drivers.DRIVERS)])
def test_each_driver_owns_its_sections_defaults_and_validation(section):
  """A section's defaults and checks live in its driver module (the
  configs' base builds sections through ``drivers.defaults``; the
  validation reaches the driver through ``drivers.validate``)."""
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(
      drivers.PLAIN if section == drivers.PLAIN_SECTION
      else drivers.DRIVERS[section])
  assert callable(module.validate) and callable(module.defaults)
  built = drivers.defaults(section)
  assert isinstance(built, ml_collections.ConfigDict) and built.keys()
  # overrides replace a field (a nested ConfigDict too), never merge
  field = sorted(built.keys())[0]
  assert drivers.defaults(section, **{field: built[field]})[field] == (
      built[field])
  with pytest.raises(ValueError, match="unknown method section"):
    drivers.defaults("no_such_section")


def test_validation_of_a_section_is_its_drivers(monkeypatch):
  """``config_check.validate`` calls the driver's ``validate`` for the
  config's one section, and only that one."""
  seen = []
  from experiments import lottery_run  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(lottery_run, "validate",
                      lambda config: seen.append("lottery"))
  config_check.validate(helpers.small_lottery_config())
  assert seen == ["lottery"]
  config_check.validate(helpers.small_config())  # plain: not the lottery's
  assert seen == ["lottery"]


def test_config_check_restates_no_sections_values():
  """Allowed values are imported from where they are defined: the generic
  check module names no method section."""
  import inspect  # pylint: disable=g-import-not-at-top
  source = inspect.getsource(config_check)
  for section in drivers.DRIVERS:
    assert f'"{section}"' not in source and f"config.{section}" not in (
        source), section
