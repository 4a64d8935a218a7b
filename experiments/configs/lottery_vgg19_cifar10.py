r"""Lottery tickets: VGG-19 on CIFAR-10 with learning-rate warmup.

  python -m launch.train --config=experiments/configs/lottery_vgg19_cifar10.py \
      --workdir=/tmp/lottery_vgg19 --config.data_dir=~/tensorflow_datasets

Settings (Frankle & Carbin 2019, Sec. 4 and Fig. 2 [P]): VGG-19 (the
CIFAR variant of Liu et al. 2019, 20.0M params), 112K iterations at batch
64 (160 epochs), SGD momentum 0.9, LR 0.1 with linear warmup from 0 over
10,000 iterations, dropped x0.1 at epochs 80 and 120 (56K, 84K
iterations); global pruning of 20% of the conv weights per level, the
output layer unpruned; reset to init.

Expected (paper): at LR 0.1 without warmup no tickets (like random
re-init); with warmup k=10,000 the dense net gains about 1 pp and tickets
exceed it down to P_m = 1.5%.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.model = "vgg19"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = 112_000
  config.batch_size = 64
  config.eval_batch_size = 1000
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.1
  config.weight_decay = 1e-4
  config.lr_schedule = "warmup_step"
  config.warmup_steps = 10_000
  config.lr_decay_steps = (56_000, 84_000)
  config.lr_decay_factor = 0.1
  config.log_every = 1000
  config.eval_every = 1000
  config.checkpoint_every = 5000
  config.keep_checkpoints = 1
  config.lottery = _base.lottery_section(
      levels=20, scope="global", global_rate=0.2,
      global_include=("Conv_*",), control_seeds=2)
  return config
