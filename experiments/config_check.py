"""Validation of run configs: one clear error naming the culprit field.

`validate(config)` raises `ConfigError("config.<field>: <problem>")` for the
first problem it finds; `launch.train` prints that one line and exits 2.
"""
from __future__ import annotations

from experiments import data as data_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import pruning


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field."""


def _require(cond: bool, field: str, problem: str) -> None:
  if not cond:
    raise ConfigError(f"config.{field}: {problem}")


def _positive_int(config, field: str) -> None:
  value = config[field]
  _require(isinstance(value, int) and not isinstance(value, bool)
           and value > 0, field, f"must be a positive integer, got {value!r}")


def _choice(value, choices, field: str) -> None:
  _require(value in choices, field,
           f"unknown value {value!r}; choose one of: {', '.join(choices)}")


def validate(config, *, device_count: int | None = None) -> None:
  """Raises ConfigError for the first bad field of a training config."""
  _choice(config.dataset, tuple(data_lib.DATASETS), "dataset")
  _choice(config.model, tuple(models_lib.MODELS), "model")
  _choice(config.optimizer, optimizers.OPTIMIZERS, "optimizer")
  _choice(config.lr_schedule, optimizers.SCHEDULES, "lr_schedule")
  for field in ("num_steps", "batch_size", "eval_batch_size", "log_every",
                "eval_every", "checkpoint_every"):
    _positive_int(config, field)
  _require(config.learning_rate > 0, "learning_rate",
           f"must be > 0, got {config.learning_rate!r}")
  _require(config.weight_decay >= 0, "weight_decay",
           f"must be >= 0, got {config.weight_decay!r}")
  if device_count is not None:
    _require(config.batch_size % device_count == 0, "batch_size",
             f"{config.batch_size} is not divisible by the device count "
             f"{device_count}")
  p = config.pruning
  _choice(p.method, pruning.METHODS, "pruning.method")
  if p.method == "none":
    return
  _choice(p.schedule, pruning.SCHEDULES, "pruning.schedule")
  _choice(p.scope, pruning.SCOPES, "pruning.scope")
  _require(0.0 <= p.target_sparsity < 1.0, "pruning.target_sparsity",
           f"must be in [0, 1), got {p.target_sparsity!r}")
  for name, s in dict(p.layer_sparsity or {}).items():
    _require(0.0 <= s < 1.0, f"pruning.layer_sparsity.{name}",
             f"must be in [0, 1), got {s!r}")
  _require(0 <= p.begin_step < config.num_steps, "pruning.begin_step",
           f"must be in [0, num_steps={config.num_steps}), got "
           f"{p.begin_step!r}")
  if p.schedule == "gradual":
    _require(p.begin_step <= p.end_step < config.num_steps,
             "pruning.end_step", f"must be in [begin_step, num_steps), got "
             f"{p.end_step!r}")
    _require(isinstance(p.frequency, int) and p.frequency > 0,
             "pruning.frequency", f"must be a positive integer, got "
             f"{p.frequency!r}")
