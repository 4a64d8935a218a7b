"""The driver registry: which module runs a config.

A config selects its driver by its one *method section* (``config.lottery``,
``config.repr``, ...); a config without one is a plain run
(``experiments.train.run``: train, prune by ``config.pruning``, evaluate).
``config.pruning`` (:data:`PLAIN_SECTION`) is the plain run's method
section: it counts against the one-section rule next to a driver's section
unless its ``method`` is ``"none"``, and a plain run without it is dense
(:func:`method_sections`). ``launch.train`` and every test call :func:`run`;
nothing else dispatches.

A driver is a module with ``run(config, workdir) -> dict`` (the summary)
that opens its workdir through ``experiments.runs``, and optionally
``validate(config)`` (its section's checks, raising ``ConfigError``; called
by ``config_check.validate`` through :func:`validate`) and
``defaults()`` (its section with its documented defaults; what
the configs' base builds sections with, through :func:`defaults`). Adding a method is one
driver module and one line in :data:`DRIVERS` (or, from a test or a user's
own package, one :func:`register` call)::

    from experiments import drivers
    drivers.register("my_method", "mypackage.my_driver")

The registry names modules instead of importing them, so that this module
imports no driver: the drivers import the engine
(``experiments.engine``), and nothing the engine imports may import them
back (``tests/test_layering.py`` checks that the import graph is acyclic).

**The result a driver declares.** Every driver module also has
``deployable(config, workdir, **options) -> Deployable`` (or an
:class:`Ensemble`): the network a user would deploy, built deterministically
from what the finished run stored, and ``DEPLOY_OPTIONS``, the options it
takes (``level`` for lottery, ``member`` for BENN; ``launch.export``
refuses the others). ``experiments.export.export_run`` asks
:func:`deployable` for it, so ``launch.export --workdir=RUN`` exports every
driver's result, and ``launch.evaluate`` on the file gives the run's
reported test accuracy (``Deployable.info["test_accuracy"]``):

=================  ===================================================
plain run, FBS     the newest checkpoint of ``RUN/checkpoints``
lottery            level N (``level=N``, required): ``RUN/level_NN``
RePr               the final phase, ``RUN/final``
FPGM               ``RUN/train`` at T, after the final hard removal
slimming           ``RUN/finetune``: pruned and fine-tuned
gradient counting  ``RUN/checkpoints``: the final mask, filters removed
main/subsidiary    the last main stage: every layer's keeps baked in
BENN               member K (``member=K``), or without it the ensemble:
                   every member and the vote weights (``Ensemble``)
=================  ===================================================

A run without ``summary.json`` is unfinished and is refused
(:func:`finished_summary`), except a finished lottery level.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
from types import ModuleType
from typing import Any, NamedTuple

import jax

from experiments import errors
from experiments import locks
from experiments import pruning
from experiments import signals

# section name -> driver module (None: the plain run).
PLAIN = "experiments.train"
# The plain run's method section (magnitude pruning by ``experiments.train``).
PLAIN_SECTION = "pruning"
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
  if section == PLAIN_SECTION:
    raise ValueError(f"driver section {section!r} is the plain run's "
                     f"({PLAIN})")
  if section in DRIVERS and DRIVERS[section] != module:
    raise ValueError(f"driver section {section!r} is already registered "
                     f"to {DRIVERS[section]}")
  DRIVERS[section] = module


def method_sections(config) -> list[str]:
  """The config's method sections: the drivers' (in :data:`DRIVERS` order),
  then ``pruning``, the plain run's, unless it says ``method="none"`` next
  to a driver's section (no pruning: harmless). A valid config has at most
  one; a shipped config exactly one (``tests/test_configs.py``)."""
  present = [s for s in DRIVERS if s in config]
  if PLAIN_SECTION in config and not (
      present and pruning.method_of(config) == "none"):
    present.append(PLAIN_SECTION)
  return present


def section_of(config) -> str | None:
  """The config's driver section (None for a plain run, with or without
  its ``pruning`` section).

  Raises ``ConfigError`` naming both sections when there are two or more:
  the driver of the first would silently ignore the second.
  """
  present = method_sections(config)
  if len(present) > 1:
    if present[1] == PLAIN_SECTION:
      raise errors.ConfigError(
          f"config.{PLAIN_SECTION}.method: must be 'none' next to "
          f"config.{present[0]}, got {pruning.method_of(config)!r} (a config "
          f"has at most one method section; the {present[0]!r} driver would "
          f"ignore config.{PLAIN_SECTION})")
    raise errors.ConfigError(
        f"config.{present[0]}, config.{present[1]}: a config has at most "
        f"one method section; {present[0]!r} and {present[1]!r} cannot be "
        f"combined (remove one)")
  return present[0] if present and present[0] != PLAIN_SECTION else None


def driver_of(config) -> ModuleType:
  """The driver module that runs `config`."""
  section = section_of(config)
  return importlib.import_module(PLAIN if section is None
                                 else DRIVERS[section])


def validate(config) -> None:
  """Validates the config's method section with its driver.

  ``section_of`` first (two sections are one ``ConfigError``), then the
  driver module's ``validate(config)`` (the plain run's for a config
  without a driver section): each driver owns its section's checks and
  imports the allowed values from where they are defined.
  """
  module = driver_of(config)
  check = getattr(module, "validate", None)
  if check is not None:
    check(config)


def defaults(section: str, *args, **overrides):
  """The `section`'s fields at the defaults its driver declares
  (``module.defaults(*args)``; the plain run's ``pruning`` section too),
  each field of `overrides` replacing its default; what ``experiments/configs/_base.py``'s ``*_section``
  builders return."""
  if section == PLAIN_SECTION:
    name = PLAIN
  elif section in DRIVERS:
    name = DRIVERS[section]
  else:
    raise ValueError(f"unknown method section {section!r}; known: "
                     f"{', '.join([PLAIN_SECTION, *DRIVERS])}")
  section = importlib.import_module(name).defaults(*args)
  for field, value in overrides.items():  # replaced, never merged
    section[field] = value
  return section


class Deployable(NamedTuple):
  """A run's result as one network.

  ``config``: the config whose model (``engine.build(config).model``)
  computes it; ``state``: an ``engine.TrainState`` (its ``params``,
  ``batch_stats``, ``mask`` and ``step`` are exported; pruned weights are
  exactly 0); ``info``: ``"result"`` (what it is, in words),
  ``"test_accuracy"`` (the run's reported test accuracy of this network)
  and the export options used (``"level"``, ``"member"``)."""
  config: Any
  state: Any
  info: dict


class Ensemble(NamedTuple):
  """Several networks and their vote (BENN): ``members`` (Deployables),
  ``alphas`` (one weight per member), ``vote`` ("soft": argmax of the
  alpha-weighted sum of the members' outputs), ``scores`` ("scores": the
  raw outputs, "probabilities": their softmax), ``info`` as above."""
  members: list
  alphas: list
  vote: str
  scores: str
  info: dict


def finished_summary(workdir: str) -> dict:
  """The stored summary of the finished run in `workdir`; raises
  FileNotFoundError (one line) for an unfinished run."""
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} has no summary.json: the run is "
                            "unfinished")
  with open(path) as f:
    return json.load(f)


def deployable(config, workdir: str, **options):
  """The result the driver of `config` declares for the finished run in
  `workdir` (a :class:`Deployable` or an :class:`Ensemble`).

  ``options`` with value None are dropped; one the driver does not take
  (``DEPLOY_OPTIONS``) is a ValueError naming it.
  """
  module = driver_of(config)
  options = {k: v for k, v in options.items() if v is not None}
  accepted = tuple(getattr(module, "DEPLOY_OPTIONS", ()))
  for name in options:
    if name not in accepted:
      raise ValueError(
          f"--{name} is not an option of {section_of(config) or 'plain'} "
          f"runs ({workdir}; they take "
          f"{', '.join('--' + a for a in accepted) or 'none'})")
  if not hasattr(module, "deployable"):
    raise ValueError(f"the {section_of(config) or 'plain'} driver "
                     f"({module.__name__}) declares no result to export "
                     "(it has no deployable())")
  return module.deployable(config, workdir, **options)


def run(config, workdir: str) -> dict:
  """Runs (or resumes, or returns the stored result of) `config` in
  `workdir` with its driver; returns the run's summary dict.

  Raises ``errors.ConfigError`` for a bad config, two method
  sections, or a workdir of another config (nothing is written then).
  """
  workdir = locks.absolute(workdir)
  driver = driver_of(config)
  new = not os.path.exists(workdir)
  try:
    # SIGTERM/SIGINT: checkpoint, then Preempted. One process only: under
    # jax.distributed the processes could stop at different steps and
    # deadlock in the collective checkpoint save.
    with (signals.handling() if jax.process_count() == 1
          else contextlib.nullcontext()):
      return driver.run(config, workdir)
  except BaseException:
    # A run that fails before its first checkpoint (a bad model setting, a
    # batch larger than the split, ...) leaves a new workdir absent, so the
    # corrected command is not refused as "a run of another config".
    if new and locks.is_main() and not _holds_progress(workdir):
      shutil.rmtree(workdir, ignore_errors=True)
    raise
  finally:
    locks.unlock(workdir)  # taken by runs.open_run / runs.create


def _holds_progress(workdir: str) -> bool:
  """Whether `workdir` holds a checkpoint or a finished phase."""
  for dirpath, dirnames, filenames in os.walk(workdir):
    if "result.json" in filenames or "summary.json" in filenames:
      return True
    if os.path.basename(dirpath) == "checkpoints" and any(
        d.isdigit() for d in dirnames):
      return True
  return False


__all__ = ["DRIVERS", "Deployable", "Ensemble", "PLAIN", "PLAIN_SECTION",
           "defaults", "deployable", "driver_of", "finished_summary", "method_sections",
           "register", "run", "section_of", "validate"]
