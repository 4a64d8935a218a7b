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
  return _base.lottery_conv_cifar10("conv6", num_convs=6, num_steps=30000,
                                    learning_rate=0.0003, conv_rate=0.15)
