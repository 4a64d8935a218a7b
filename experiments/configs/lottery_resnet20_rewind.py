r"""Lottery tickets: ResNet-20 on CIFAR-10 with weight rewinding to step 500.

Prepare CIFAR-10 once, then run:

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/lottery_resnet20_rewind.py \
      --workdir=/tmp/lottery_resnet20 --config.data_dir=~/tensorflow_datasets

Settings: the CIFAR ResNet-20 ("Resnet-18" in Frankle & Carbin 2019, 271K
params) trained 30K iterations at batch 128, SGD momentum 0.9, LR 0.1
dropped x0.1 at 20K and 25K, weight decay 1e-4 [P Fig. 2 / 3P]; global
pruning of 20% of the conv weights per level, the output layer unpruned
[P]; rewinding to iteration 500 (weights, schedule position and the
optimizer state saved there), as in Frankle et al., "Linear Mode
Connectivity and the Lottery Ticket Hypothesis" (ICML 2020) and
"Stabilizing the Lottery Ticket Hypothesis" [3P].

Expected: dense ResNet-20 error 8.3% (91.7% test accuracy) [3P]; with
rewinding to 500 iterations IMP subnetworks are stable and match the dense
accuracy from 51.2% down to 13.4% weights remaining [3P], while reset to
init at LR 0.1 finds no tickets [P]. Random pruning matches only above
about 80% remaining [3P].
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.model = "resnet20"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = 30_000
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.1
  config.weight_decay = 1e-4
  config.lr_schedule = "step"
  config.lr_decay_steps = (20_000, 25_000)
  config.lr_decay_factor = 0.1
  config.log_every = 500
  config.eval_every = 500
  config.checkpoint_every = 2500
  config.keep_checkpoints = 1
  config.lottery = _base.lottery_section(
      levels=10, reset="rewind", rewind_step=500, scope="global",
      global_rate=0.2, global_include=("*Conv_*",), control_seeds=2)
  return config
