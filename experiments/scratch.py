"""Scratch-E and Scratch-B baselines of a pruning result (any driver).

Liu, Sun, Zhou, Huang, Darrell, "Rethinking the Value of Network Pruning",
ICLR 2019: the pruned architecture trained from a fresh initialization

* Scratch-E: for as many steps as the original training (T);
* Scratch-B: for the same compute, T * dense MACs / pruned MACs steps,
  the learning-rate schedule stretched to the length (`scaled_config`).
  The paper doubles the epochs at most when the pruned model saves more
  than 2x FLOPs (our reading of its training-budget paragraph, not
  verified against the code); the configs set that cap
  (`scratch_b_max_factor = 2`, 0 = no cap).

Here the "pruned architecture" is the run's final mask, held fixed by the
masked optimizer on a fresh init (the key is derived from `seed`, so it
differs from the original init). A removed filter's kernel column, bias and
BatchNorm scale/shift are masked, so its channel is exactly 0: the masked
network computes what the physically smaller one does. Each baseline is a
checkpointed phase (`WORKDIR/scratch_e/`, `WORKDIR/scratch_b/`) on the
driver's Engine, so a killed run resumes inside it.
"""
from __future__ import annotations

import copy
import os
from typing import Callable

import jax

from experiments import engine as engine_lib
from experiments import structured
import sparsity

SCRATCH_SEED_TAG = 0x5C


def scaled_config(config, factor: float, num_steps: int):
  """A copy of `config` whose schedule is stretched to `num_steps`.

  Step-valued schedule fields (`lr_decay_steps`, `warmup_steps`,
  `lr_decay_every`) are multiplied by `factor`.
  """
  c = copy.deepcopy(config)
  with c.unlocked():
    c.num_steps = int(num_steps)
    if "lr_decay_steps" in c:
      c.lr_decay_steps = tuple(int(round(s * factor))
                               for s in c.lr_decay_steps)
    if "warmup_steps" in c:
      c.warmup_steps = int(round(c.warmup_steps * factor))
    if "lr_decay_every" in c:
      c.lr_decay_every = max(1, int(round(c.lr_decay_every * factor)))
  return c


def _start(engine: engine_lib.Engine, seed: int, mask, tx):
  key = jax.random.fold_in(jax.random.PRNGKey(seed), SCRATCH_SEED_TAG)
  s = jax.device_get(engine.run.init_state(key))
  mask = jax.device_get(mask)
  params = sparsity.apply_mask(s.params, mask)
  opt = sparsity.mask_opt_state(tx.init(params), mask)
  return engine.place(s.replace(params=params, mask=mask, opt_state=opt))


def run_baselines(engine: engine_lib.Engine, workdir: str, *, mask, steps: int,
                  macs_fraction: float, make_tx: Callable,
                  max_factor: float = 0.0, tx_e=None) -> dict:
  """Trains Scratch-E and Scratch-B; returns their summary rows.

  Args:
    engine: the driver's Engine (its optimizer-state structure must be the
      one ``make_tx(config).init`` gives).
    workdir: the run's directory; phases go to ``scratch_e/``,
      ``scratch_b/``.
    mask: the pruning result's final mask (fixed during the baselines).
    steps: T, the original training's steps.
    macs_fraction: pruned / dense MACs (Scratch-B's budget).
    make_tx: config -> the (masked) optimizer for a stretched config.
    max_factor: caps Scratch-B's step factor (0 = no cap).
    tx_e: the optimizer of Scratch-E when the run already has one for its
      unchanged config (saves a compilation); default ``make_tx(config)``.

  Returns:
    ``{"scratch_e": row, "scratch_b": row}``, a row being ``{"test_accuracy",
    "test_loss", "steps", "factor"}`` plus ``dice``/``mean_iou`` for
    segmentation.
  """
  config = engine.config
  b_steps, factor = structured.scratch_b_steps(steps, macs_fraction,
                                               max_factor)
  out = {}
  for name, n, f, what in (
      ("scratch_e", int(steps), 1.0, "the same steps"),
      ("scratch_b", b_steps, factor, f"x{factor:.2f}, the same MACs")):
    cfg = scaled_config(config, f, n)
    # A constant schedule does not depend on the length: Scratch-B can
    # reuse Scratch-E's optimizer (and its compiled step).
    reuse = tx_e is not None and (name == "scratch_e"
                                  or config.lr_schedule == "constant")
    tx = tx_e if reuse else make_tx(cfg)
    state = engine_lib.train_phase(
        engine, os.path.join(workdir, name),
        lambda tx=tx: _start(engine, config.seed, mask, tx), end_step=n,
        data_seed=config.seed, tx=tx,
        label=f"{'Scratch-E' if name == 'scratch_e' else 'Scratch-B'}: "
              f"pruned architecture from a fresh init, {n} steps ({what})")
    with jax.set_mesh(engine.mesh):
      test = engine.evaluate(state.params, state.batch_stats, "test")
    row = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
           "steps": int(n), "factor": float(f)}
    for k in ("dice", "mean_iou"):
      if k in test:
        row[k] = test[k]
    out[name] = row
  return out
