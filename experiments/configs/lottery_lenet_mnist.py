r"""Lottery tickets: LeNet-300-100 on MNIST (Frankle & Carbin, ICLR 2019, Fig. 2).

Prepare MNIST once (needs TensorFlow and a network), then run:

  python -m launch.prepare_data --dataset=mnist --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/lottery_lenet_mnist.py \
      --workdir=/tmp/lottery_lenet --config.data_dir=~/tensorflow_datasets

Settings (paper, Fig. 2 [P]): Adam 1.2e-3, batch 60, 50K iterations per
level, layer-wise rates 20% (fc1, fc2) and 10% (output), reset to init,
validation = 5,000 training images held out, evaluated every 100
iterations; 3 random re-initializations per ticket. The released TF code
differs (plain SGD 0.1, batch 64): this config follows the figure.

Expected (paper): dense about 98% test accuracy; tickets stay at or above
the dense accuracy down to P_m = 3.6% (level 15); at P_m = 21% (level 7)
tickets reach minimum validation loss about 38% earlier and are +0.3 pp
(up to +0.5 pp vs random re-init, which falls below dense from P_m = 21.1%);
test accuracy +0.35 pp at 50K iterations. Remaining fractions of the
ladder: 51.3% (3), 21.1% (7), 13.5% (9), 8.7% (11), 3.6% (15), 1.9% (18).
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  return _base.lottery_lenet(
      "mnist", num_steps=50_000, levels=20, control_seeds=3,
      log_every=1000, eval_every=100, checkpoint_every=5000)
