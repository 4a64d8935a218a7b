r"""Lottery tickets: Conv4 on CIFAR-10 (Frankle & Carbin, ICLR 2019, Fig. 2).

Prepare CIFAR-10 once, then run:

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/lottery_conv4_cifar10.py \
      --workdir=/tmp/lottery_conv4 --config.data_dir=~/tensorflow_datasets

Settings (paper, Fig. 2 [P]): Adam 0.0003, batch 60, 25K iterations
per level, layer-wise rates: conv 10%, fc 20%, output 10%
(connections to outputs at half the fc rate), reset to init, 5,000
training images held out for validation, evaluated every 100 iterations.

Expected (paper): all tickets stay above the dense mean accuracy for
P_m > 2%; max early-stop speed-up 3.5x at P_m 9.2%; max test-accuracy gain +3.5 pp at P_m 11.1%; dense about 75-80% [M, read off the figures]. Random re-initialization falls behind the tickets as
sparsity grows.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  return _base.lottery_conv_cifar10("conv4", num_convs=4, num_steps=25000,
                                    learning_rate=0.0003, conv_rate=0.1)
