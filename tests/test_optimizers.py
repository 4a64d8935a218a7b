"""The trainer's masked optimizer form (experiments/optimizers.py
`mask_moments`, used by experiments/engine.py `make_tx`): ``"on_entry"``
exactly for allow-listed chains, and the invariant through a trainer run."""
import jax
import numpy as np
import pytest

from experiments import engine as engine_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import pruning
from helpers import leaves_close
from helpers import small_config
import sparsity


def _config(name, **overrides):
  """small_config with `name`, coupled/decoupled decay and clipping on (so
  every zero-preserving chain part is in the chain), pruned at 4 (none
  yet), 14, 24 and 34 (a mask change each) over 40 steps."""
  return small_config(**{
      "optimizer": name, "weight_decay": 1e-3, "grad_clip_norm": 1.0,
      "learning_rate": 0.05 if name in ("sgd", "momentum", "nesterov")
      else 1e-3,
      "num_steps": 40, "pruning.begin_step": 4, "pruning.end_step": 34,
      "pruning.frequency": 10, **overrides})


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_trainer_keeps_pruned_weights_and_moments_zero(name):
  """A trainer run (the engine's jitted step, its pruning events) with each
  optimizer: `make_tx` picks ``"on_entry"``; after every update past the
  first mask change, pruned weights and every parameter-shaped moment are
  exactly 0 (the stale moments of newly pruned weights included); and the
  run follows the ``"per_step"`` form (same values up to XLA's FMA
  contractions)."""
  config = _config(name)
  assert optimizers.mask_moments(config) == "on_entry"
  engine = engine_lib.Engine(config)
  per_step = sparsity.masked(
      optimizers.make_optimizer(config,
                                binary_include=models_lib.is_binary_kernel),
      mask_moments="per_step")
  events = {s: engine_lib.mask_event(
      lambda st, t=t: pruning.apply_pruning(st.params, st.mask,
                                            config.pruning, t))
            for s, t in pruning.prune_events(config.pruning).items()}
  states = {}
  for form, tx in (("on_entry", None), ("per_step", per_step)):
    step_fn = engine.train_step(tx)
    state = engine.init(jax.random.PRNGKey(config.seed))
    changes = 0
    for step in range(config.num_steps):
      if step in events:
        before = sparsity.remaining_fraction(state.mask)
        state = engine.place(events[step](state))
        if sparsity.remaining_fraction(state.mask) < before:
          # a mask change: the stale moments of newly pruned weights stay
          changes += 1
          assert name == "sgd" or not _zero_where_pruned(state.opt_state,
                                                         state.mask)
      state, _ = step_fn(state, engine.train_batch(step, config.seed))
      if step >= min(events):
        assert _zero_where_pruned(state.params, state.mask), (form, step)
        assert _zero_where_pruned(state.opt_state, state.mask), (form, step)
    assert changes >= 3
    states[form] = jax.device_get(state)
  assert sparsity.remaining_fraction(states["on_entry"].mask) < 0.5
  assert leaves_close(states["on_entry"].params, states["per_step"].params,
                      rtol=1e-4, atol=1e-6)


def _zero_where_pruned(tree, mask) -> bool:
  """Whether every parameter-shaped leaf of `tree` (params, moments) is 0
  at every pruned position (`sparsity.mask_opt_state` leaves it as it is)."""
  masked = sparsity.mask_opt_state(tree, mask)
  return all(np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(masked)))


def test_mask_moments_is_an_allow_list(monkeypatch):
  """A chain with one part off the allow-list keeps the exact default;
  BinaryConnect's transforms and every schedule are on it."""
  bc = _config("adam", glorot_lr_scale=True, clip_weights=1.0,
               lr_schedule="exponential", lr_decay_factor=0.9)
  assert optimizers.mask_moments(bc) == "on_entry"
  for part in ("adam", "clip_weights", "grad_clip_norm", "schedule"):
    allowed = {k: v for k, v in optimizers.ZERO_PRESERVING.items()
               if k != part}
    monkeypatch.setattr(optimizers, "ZERO_PRESERVING", allowed)
    assert optimizers.mask_moments(bc) == "per_step", part
  monkeypatch.undo()
  momentum_l2 = _config("momentum")
  allowed = {k: v for k, v in optimizers.ZERO_PRESERVING.items()
             if k != "weight_decay"}
  monkeypatch.setattr(optimizers, "ZERO_PRESERVING", allowed)
  assert optimizers.mask_moments(momentum_l2) == "per_step"
  assert optimizers.mask_moments(_config("momentum", weight_decay=0.0)) == \
      "on_entry"
