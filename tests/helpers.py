"""Shared test helpers: a small digits config and pytree comparisons."""
import jax
import numpy as np

from experiments.configs import digits_magnitude


def small_config(**overrides):
  """digits_magnitude shrunk to 300 steps of a 64-32 MLP (seconds on CPU)."""
  config = digits_magnitude.get_config()
  config.num_steps = 300
  config.log_every = 50
  config.eval_every = 100
  config.checkpoint_every = 100
  config.pruning.begin_step = 100
  config.pruning.end_step = 200
  config.pruning.frequency = 25
  config.model_kwargs.hidden = (64, 32)
  apply_overrides(config, overrides)
  return config


def small_lottery_config(**overrides):
  """lottery_digits shrunk to 2 levels of 40 steps of a 16-unit MLP, with one
  seed of each control (seconds on CPU)."""
  from experiments.configs import lottery_digits  # pylint: disable=g-import-not-at-top
  config = lottery_digits.get_config()
  config.model_kwargs.hidden = (16,)
  config.num_steps = 40
  config.log_every = 20
  config.eval_every = 10
  config.checkpoint_every = 20
  config.keep_checkpoints = 10
  config.lottery.levels = 2
  config.lottery.control_seeds = 1
  config.lottery.rates = {"default": 0.2, "Dense_1": 0.1}
  apply_overrides(config, overrides)
  return config


def apply_overrides(config, overrides):
  """Sets each dotted field `key` of `config` to its value, in place."""
  for key, value in overrides.items():
    node = config
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value


def leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def leaves_close(a, b, rtol=1e-5, atol=1e-6) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
      for x, y in zip(la, lb))
