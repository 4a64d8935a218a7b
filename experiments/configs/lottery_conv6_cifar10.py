r"""Lottery tickets: Conv6 on CIFAR-10 (Frankle & Carbin, ICLR 2019, Fig. 2).

Prepare CIFAR-10 once, then run:

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/lottery_conv6_cifar10.py \
      --workdir=/tmp/lottery_conv6 --config.data_dir=~/tensorflow_datasets

Settings (paper, Fig. 2 [P]): Adam 0.0003, batch 60, 30K iterations
per level, layer-wise rates: conv 15%, fc 20%, output 10%
(connections to outputs at half the fc rate), reset to init, 5,000
training images held out for validation, evaluated every 100 iterations.

Expected (paper): all tickets stay above the dense mean accuracy for
P_m > 2%; max early-stop speed-up 2.5x at P_m 15.1%; max test-accuracy gain +3.3 pp at P_m 26.4%; dense about 78-80% [M, read off the figures]. Random re-initialization falls behind the tickets as
sparsity grows.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.model = "conv6"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = 30000
  config.batch_size = 60
  config.optimizer = "adam"
  config.learning_rate = 0.0003
  config.log_every = 1000
  config.eval_every = 100
  config.checkpoint_every = 2500
  config.keep_checkpoints = 1
  config.eval_batch_size = 1000
  # Layer-wise rates: conv 0.15, fc 0.2, output (Dense_2) 0.1.
  rates = {"default": 0.2, "Dense_2": 0.1}
  rates.update({f"Conv_{i}": 0.15 for i in range(6)})
  config.lottery = _base.lottery_section(
      levels=20, control_seeds=3, rates=ml_collections.ConfigDict(rates))
  return config
