"""Validation of run configs: one clear error naming the culprit field.

`validate(config)` raises `ConfigError("config.<field>: <problem>")` for the
first problem it finds; `launch.train` prints that one line and exits 2.
This module checks what every run reads (dataset, model, optimizer, steps,
batch sizes, ...); a method section is checked by its driver
(``experiments.drivers.validate``: each driver module's ``validate``, the
plain run's ``pruning`` section by ``experiments.train.validate``), with the
allowed values imported from where they are defined. The helpers
:func:`require`, :func:`choice`, :func:`positive_int` and
:func:`nonnegative_int` are what the drivers' checks are written with.
"""
from __future__ import annotations

import math

from experiments import data as data_lib
from experiments import drivers
from experiments import errors
from experiments import models as models_lib
from experiments import optimizers

ConfigError = errors.ConfigError  # re-exported: every caller catches this


def require(cond: bool, field: str, problem: str) -> None:
  """Raises ``ConfigError("config.<field>: <problem>")`` unless `cond`."""
  if not cond:
    raise ConfigError(f"config.{field}: {problem}")


def _is_int(value) -> bool:
  """An int proper: ``True`` and ``False`` are not step counts."""
  return isinstance(value, int) and not isinstance(value, bool)


def positive_int(config, field: str) -> None:
  """``config[field]`` is an int > 0 (not a bool). `field` may be a dotted
  path into a method section (``"repr.s1_steps"``: a ConfigDict resolves
  it), and is the field the error names."""
  value = config[field]
  require(_is_int(value) and value > 0, field,
           f"must be a positive integer, got {value!r}")


def nonnegative_int(config, field: str) -> None:
  """``config[field]`` is an int >= 0 (not a bool); `field` as in
  :func:`positive_int`."""
  value = config[field]
  require(_is_int(value) and value >= 0, field,
           f"must be an integer >= 0, got {value!r}")


def choice(value, choices, field: str) -> None:
  """`value` is one of `choices` (the tuple where they are defined)."""
  require(value in choices, field,
           f"unknown value {value!r}; choose one of: {', '.join(choices)}")


def validate(config, *, device_count: int | None = None) -> None:
  """Raises ConfigError for the first bad field of a training config.

  First the one-method-section rule (``drivers.section_of``), then the
  fields every run reads, then the method section with its driver's
  ``validate`` (``drivers.validate``; the plain run's ``pruning`` section
  by ``experiments.train.validate``).
  """
  drivers.section_of(config)
  choice(config.dataset, tuple(data_lib.DATASETS), "dataset")
  choice(config.model, tuple(models_lib.MODELS), "model")
  choice(config.optimizer, optimizers.OPTIMIZERS, "optimizer")
  choice(config.lr_schedule, optimizers.SCHEDULES, "lr_schedule")
  for field in ("num_steps", "batch_size", "eval_batch_size", "log_every",
                "eval_every", "checkpoint_every"):
    positive_int(config, field)
  require(isinstance(config.learning_rate, (int, float))
           and math.isfinite(config.learning_rate)
           and config.learning_rate > 0, "learning_rate",
           f"must be > 0 and finite, got {config.learning_rate!r}")
  require(_is_int(config.seed) and 0 <= config.seed < 2**31, "seed",
           f"must be an integer in [0, 2**31), got {config.seed!r}")
  keep = config.get("keep_checkpoints", 1)
  require(_is_int(keep) and keep >= 1, "keep_checkpoints",
           f"must be an integer >= 1, got {keep!r}")
  if "warmup_steps" in config:  # absent: 0
    nonnegative_int(config, "warmup_steps")
  require(config.weight_decay >= 0, "weight_decay",
           f"must be >= 0, got {config.weight_decay!r}")
  if device_count is not None:
    require(config.batch_size % device_count == 0, "batch_size",
             f"{config.batch_size} is not divisible by the device count "
             f"{device_count}")
  _validate_training_extras(config)
  drivers.validate(config)  # the method section, by its driver


def _validate_training_extras(config) -> None:
  """Optional fields of binary runs and ablations (absent = default)."""
  if "loss" in config:
    choice(config.loss, ("cross_entropy", "squared_hinge"), "loss")
  if "lr_decay_every" in config:
    positive_int(config, "lr_decay_every")
  for field in ("clip_weights", "grad_clip_norm"):
    if field in config:
      require(config[field] >= 0, field,
              f"must be >= 0 (0 = off), got {config[field]!r}")


def layer_matches(pattern: str, name: str) -> bool:
  """A layer selector: an exact leaf name, a path prefix ("BasicBlock_3")
  or a glob over the leaf name ("*Conv_*")."""
  import fnmatch  # pylint: disable=g-import-not-at-top
  key = pattern.rstrip("/")
  return (name == key or name.startswith(key + "/")
          or fnmatch.fnmatchcase(name, pattern))


def validate_data(config, dataset) -> None:
  """The check that needs the loaded dataset (``ConfigError``): the
  training batch fits the train split. (A huge ``eval_batch_size`` needs
  no error: the engine caps the evaluation batch at the largest split.)"""
  train = len(dataset.splits["train"])
  require(config.batch_size <= train, "batch_size",
           f"{config.batch_size} is larger than the train split "
           f"({train} examples)")


def model_error(config, error: BaseException) -> ConfigError:
  """The one-line error for a model that its settings cannot build (a
  negative width, a wrong type in ``config.model_kwargs``)."""
  text = (str(error).splitlines() or [""])[0][:200]
  return ConfigError(
      f"config.model_kwargs: model {config.model!r} cannot be built with "
      f"{dict(config.model_kwargs)}: {type(error).__name__}: {text}")

