"""Shared settings of the Conv-2/4/6 CIFAR-10 lottery configs (Fig. 2)."""
import ml_collections

from experiments.configs import lottery_digits


def conv_config(model: str, steps: int, lr: float,
                conv_rate: float) -> ml_collections.ConfigDict:
  config = lottery_digits.get_config()
  config.dataset = "cifar10"
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = steps
  config.batch_size = 60
  config.optimizer = "adam"
  config.learning_rate = lr
  config.log_every = 1000
  config.eval_every = 100
  config.checkpoint_every = 2500
  config.eval_batch_size = 1000
  rates = {"default": 0.2, "Dense_2": 0.1}
  rates.update({f"Conv_{i}": conv_rate for i in range(int(model[-1]))})
  config.lottery = lottery_digits.lottery_section(
      levels=20, control_seeds=3, rates=ml_collections.ConfigDict(rates))
  return config
