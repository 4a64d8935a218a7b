"""The driver registry: which module runs a config.

A config selects its driver by its one *method section* (``config.lottery``,
``config.repr``, ...); a config without one is a plain run
(``experiments.train.run``: train, prune by ``config.pruning``, evaluate).
``launch.train`` and every test call :func:`run`; nothing else dispatches.

A driver is a module with ``run(config, workdir) -> dict`` (the summary)
that opens its workdir through ``experiments.runs``. Adding a method is one
driver module and one line in :data:`DRIVERS` (or, from a test or a user's
own package, one :func:`register` call)::

    from experiments import drivers
    drivers.register("my_method", "mypackage.my_driver")

The registry names modules instead of importing them, so that this module
imports no driver: the drivers import the trainer library
(``experiments.train``), and nothing the trainer imports may import them
back (``tests/test_layering.py`` checks that the import graph is acyclic).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from experiments import errors

# section name -> driver module (None: the plain run).
PLAIN = "experiments.train"
DRIVERS: dict[str, str] = {
    "lottery": "experiments.lottery_run",
    "gradcount": "experiments.gradcount_run",
    "benn": "experiments.benn_run",
    "mainsub": "experiments.mainsub_run",
    "repr": "experiments.repr_run",
    "filterprune": "experiments.filterprune_run",
    "fbs": "experiments.fbs_run",
}


def register(section: str, module: str) -> None:
  """Registers the driver module (import path) of a new method section."""
  if not section.isidentifier():
    raise ValueError(f"driver section {section!r} is not an identifier")
  if section in DRIVERS and DRIVERS[section] != module:
    raise ValueError(f"driver section {section!r} is already registered "
                     f"to {DRIVERS[section]}")
  DRIVERS[section] = module


def section_of(config) -> str | None:
  """The config's method section (None for a plain run).

  Raises ``ConfigError`` naming both sections when there are two or more:
  the driver of the first would silently ignore the second.
  """
  present = [s for s in DRIVERS if s in config]
  if len(present) > 1:
    raise errors.ConfigError(
        f"config.{present[0]}, config.{present[1]}: a config has at most "
        f"one method section; {present[0]!r} and {present[1]!r} cannot be "
        f"combined (remove one)")
  return present[0] if present else None


def driver_of(config) -> ModuleType:
  """The driver module that runs `config`."""
  section = section_of(config)
  return importlib.import_module(PLAIN if section is None
                                 else DRIVERS[section])


def run(config, workdir: str) -> dict:
  """Runs (or resumes, or returns the stored result of) `config` in
  `workdir` with its driver; returns the run's summary dict.

  Raises ``errors.ConfigError`` for a bad config, two method
  sections, or a workdir of another config (nothing is written then).
  """
  return driver_of(config).run(config, workdir)


__all__ = ["DRIVERS", "PLAIN", "driver_of", "register", "run", "section_of"]
