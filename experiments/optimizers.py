"""Optimizers and learning-rate schedules named in configs.

`make_optimizer(config)` returns the *inner* optax transform; the trainer
wraps it with `sparsity.masked` so pruned weights and their moments stay 0.
Optional config fields (absent = off): `grad_clip_norm` (clip by global
norm first), `glorot_lr_scale` and `clip_weights` (BinaryConnect's
per-layer learning-rate scale and latent-weight clipping, applied to the
binary layers' kernels only, and only when `binarize` is not False).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import optax

import binary

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "warmup_cosine", "warmup_step",
             "exponential")


def make_schedule(config, step_offset: int = 0) -> optax.Schedule:
  """The learning-rate schedule of `config` as a function of the step.

  constant: lr. cosine: lr * 0.5 (1 + cos(pi t / T)). step: lr times
  `lr_decay_factor` at each step in `lr_decay_steps`. warmup_cosine: linear
  warm-up over `warmup_steps`, then cosine. warmup_step: linear warm-up from
  0 over `warmup_steps`, then the step schedule (VGG-19 in Frankle & Carbin
  2019). exponential: lr times `lr_decay_factor` once every `lr_decay_every`
  steps (staircase; Lasagne's per-epoch `LR *= LR_decay` in BinaryConnect
  and BNN). With `step_offset = k` the
  schedule is read at `t + k` (lottery LR rewinding replays it from k while
  the optimizer's own count starts at 0).
  """
  lr, total = config.learning_rate, config.num_steps
  name = config.lr_schedule
  if name == "constant":
    sched = optax.constant_schedule(lr)
  elif name == "cosine":
    sched = optax.cosine_decay_schedule(lr, decay_steps=total)
  elif name == "step":
    sched = optax.piecewise_constant_schedule(
        lr, {int(s): config.lr_decay_factor for s in config.lr_decay_steps})
  elif name == "warmup_cosine":
    sched = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=config.warmup_steps, decay_steps=total)
  elif name == "exponential":
    sched = optax.exponential_decay(
        lr, transition_steps=int(config.get("lr_decay_every", 1)),
        decay_rate=config.lr_decay_factor, staircase=True)
  elif name == "warmup_step":
    warm = optax.linear_schedule(0.0, lr, config.warmup_steps)
    step = optax.piecewise_constant_schedule(
        lr, {int(s): config.lr_decay_factor for s in config.lr_decay_steps})
    sched = lambda t: jnp.where(t < config.warmup_steps, warm(t), step(t))
  else:
    raise ValueError(f"unknown lr_schedule {name!r}; choose one of: "
                     + ", ".join(SCHEDULES))
  if step_offset:
    return lambda count: sched(count + step_offset)
  return sched


def make_optimizer(config, *, step_offset: int = 0,
                   constant_lr: float | None = None,
                   binary_include: Callable | None = None
                   ) -> optax.GradientTransformation:
  """The optax optimizer named by `config.optimizer` (see OPTIMIZERS).

  Weight decay (`config.weight_decay`) is coupled L2 (added to the gradient)
  for the SGD family and decoupled for adamw, as in the papers' code.
  `constant_lr` replaces the schedule (lottery fine-tuning);
  `binary_include(path, leaf)` picks the kernels that `glorot_lr_scale`
  and `clip_weights` act on (default: every Dense/Conv kernel).
  """
  lr = (optax.constant_schedule(constant_lr) if constant_lr is not None
        else make_schedule(config, step_offset))
  name, wd = config.optimizer, config.weight_decay
  if name == "adamw":
    opt = optax.adamw(lr, weight_decay=wd)
  else:
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
  parts = []
  if config.get("grad_clip_norm", 0.0):
    parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
  parts.append(opt)
  binarized = config.get("binarize", True) is not False
  if binarized and config.get("glorot_lr_scale", False):
    parts.append(binary.scale_by_glorot(include=binary_include))
  if binarized and config.get("clip_weights", 0.0):
    parts.append(binary.clip_params(float(config.clip_weights),
                                    include=binary_include))
  return parts[0] if len(parts) == 1 else optax.chain(*parts)
