"""Optimizers and learning-rate schedules named in configs.

`make_optimizer(config)` returns the *inner* optax transform; the trainer
wraps it with `sparsity.masked` so pruned weights and their moments stay 0.
"""
from __future__ import annotations

import optax

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "warmup_cosine")


def make_schedule(config) -> optax.Schedule:
  """The learning-rate schedule of `config` as a function of the step.

  constant: lr. cosine: lr * 0.5 (1 + cos(pi t / T)). step: lr times
  `lr_decay_factor` at each step in `lr_decay_steps`. warmup_cosine: linear
  warm-up over `warmup_steps`, then cosine.
  """
  lr, total = config.learning_rate, config.num_steps
  name = config.lr_schedule
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "cosine":
    return optax.cosine_decay_schedule(lr, decay_steps=total)
  if name == "step":
    return optax.piecewise_constant_schedule(
        lr, {int(s): config.lr_decay_factor for s in config.lr_decay_steps})
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=config.warmup_steps, decay_steps=total)
  raise ValueError(f"unknown lr_schedule {name!r}; choose one of: "
                   + ", ".join(SCHEDULES))


def make_optimizer(config) -> optax.GradientTransformation:
  """The optax optimizer named by `config.optimizer` (see OPTIMIZERS).

  Weight decay (`config.weight_decay`) is coupled L2 (added to the gradient)
  for the SGD family and decoupled for adamw, as in the papers' code.
  """
  lr = make_schedule(config)
  name, wd = config.optimizer, config.weight_decay
  if name == "adamw":
    return optax.adamw(lr, weight_decay=wd)
  if name == "adam":
    opt = optax.adam(lr)
  elif name == "sgd":
    opt = optax.sgd(lr)
  elif name == "momentum":
    opt = optax.sgd(lr, momentum=config.momentum)
  elif name == "nesterov":
    opt = optax.sgd(lr, momentum=config.momentum, nesterov=True)
  else:
    raise ValueError(f"unknown optimizer {name!r}; choose one of: "
                     + ", ".join(OPTIMIZERS))
  if wd:
    opt = optax.chain(optax.add_decayed_weights(wd), opt)
  return opt
