"""A tiny sweep file for tests/test_results.py's sweep table
(`tiny_sweep_test`): a 20-step dense MLP on digits at two learning rates,
seed 0."""
import ml_collections

from experiments import drivers
from experiments.configs import digits_magnitude


def get_config() -> ml_collections.ConfigDict:
  config = digits_magnitude.get_config()
  config.model_kwargs.hidden = (16,)
  config.num_steps = 20
  config.log_every = 10
  config.eval_every = 10
  config.checkpoint_every = 20
  config.keep_checkpoints = 1
  config.pruning = drivers.defaults("pruning", method="none")
  return config


def get_sweep() -> dict:
  return {"seeds": [0], "grids": [{"learning_rate": [1e-3, 3e-3]}]}
