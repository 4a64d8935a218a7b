"""Optimizers and learning-rate schedules named in configs.

`make_optimizer(config)` returns the *inner* optax transform; the trainer
wraps it with `sparsity.masked` so pruned weights and their moments stay 0,
in the form `mask_moments(config)` names: the fast ``"on_entry"`` where
every part of the chain is on the allow-list `ZERO_PRESERVING`, else
``"per_step"`` (exact for any inner).
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


ZERO_PRESERVING = {
    "sgd": "u = -lr g: stateless, 0 for g = 0",
    "momentum": "trace t' = g + beta t = 0 for g = t = 0; u = -lr t'",
    "nesterov": "t' = g + beta t = 0 and u = -lr (g + beta t') = 0 for "
                "g = t = 0",
    "adam": "mu' = b1 mu + (1 - b1) g = 0, nu' = b2 nu + (1 - b2) g^2 = 0 "
            "for g = mu = nu = 0; u = -lr mu_hat / (sqrt(nu_hat) + eps) = 0",
    "adamw": "adam's moments, plus the decoupled decay wd w = 0 for a "
             "pruned weight (the trainer re-masks params at a mask change)",
    "weight_decay": "coupled L2 before the SGD family: g + wd w = 0 for "
                    "w = 0, so the trace it feeds stays 0",
    "grad_clip_norm": "stateless g * min(1, c / ||g||): 0 stays 0; the "
                      "norm is of the masked gradient in both forms",
    "schedule": "a step count, not parameter-shaped; scales u",
    "glorot_lr_scale": "stateless per-layer scale of u",
    "clip_weights": "stateless clip(w + u, -H, H) - w = 0 for w = u = 0",
}
"""The chain parts after which a zero gradient on a pruned (zero) weight
with zero moments leaves its moments and update 0, each with the reason:
`mask_moments` picks ``"on_entry"`` only when every part of a config's
chain is here. A new optimizer or chain part is ``"per_step"`` until it
is added (LAMB, for one, is not zero-preserving in the update: its trust
ratio is a norm over the whole layer)."""


def _chain(config, lr, binary_include) -> tuple[list, list]:
  """(names, parts): the chain `make_optimizer` builds (its parts, in order)
  and the `ZERO_PRESERVING` names of everything in it."""
  name, wd = config.optimizer, config.weight_decay
  names = [name]
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
      names.append("weight_decay")
      opt = optax.chain(optax.add_decayed_weights(wd), opt)
  parts = []
  if config.get("grad_clip_norm", 0.0):
    names.append("grad_clip_norm")
    parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
  parts.append(opt)
  binarized = config.get("binarize", True) is not False
  if binarized and config.get("glorot_lr_scale", False):
    names.append("glorot_lr_scale")
    parts.append(binary.scale_by_glorot(include=binary_include))
  if binarized and config.get("clip_weights", 0.0):
    names.append("clip_weights")
    parts.append(binary.clip_params(float(config.clip_weights),
                                    include=binary_include))
  return names, parts


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
  _, parts = _chain(config, lr, binary_include)
  return parts[0] if len(parts) == 1 else optax.chain(*parts)


def mask_moments(config) -> str:
  """The `sparsity.masked` form for the chain `make_optimizer(config)`
  builds: ``"on_entry"`` (the state masked on its way into the update;
  each moment computed once, see `bench.masked_step`) when every part of
  it is in `ZERO_PRESERVING`, else ``"per_step"``.

  With masked gradients, a pruned weight kept at 0 and zero moments on
  entry, a zero-preserving chain leaves the pruned moments and updates 0,
  so masking the state on entry equals masking it on exit (the stale
  moments of newly pruned weights are cleared at the first update after a
  mask change; kept values are the same, an XLA FMA contraction aside).
  The schedule and `step_offset` / `constant_lr` only scale updates.
  """
  names, _ = _chain(config, optax.constant_schedule(0.0), None)
  names.append("schedule")
  return ("on_entry" if all(n in ZERO_PRESERVING for n in names)
          else "per_step")
