r"""FPGM on CIFAR-10 with ResNet-20 (the paper's CIFAR setting).

Prepare CIFAR-10 once, then run (CPU: many hours; an accelerator is
advised):

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/fpgm_resnet20_cifar10.py \
      --workdir=/tmp/fpgm_resnet20 --config.data_dir=~/tensorflow_datasets

Settings [C scripts/pruning_cifar10.sh, METHODS.md 8]: 200 epochs from
scratch, SGD momentum 0.9, lr 0.1 x 0.2 at epochs 60/120/160, weight decay
5e-4, batch 128; rate_dist 0.4 on every conv (the 1x1 projection
shortcuts included, as the released code prunes every conv weight),
rate_norm 1, soft pruning as in the paper's Algorithm 1: the selection
zeroes the kernels after every epoch (352 steps), BatchNorm never masked,
zeroed filters train on and may regrow; the released script's variant
(a selection before training, gradients of selected kernels held at 0):
`--config.filterprune.soft_variant=released_cifar`. Norm-based control
at the same rates: `--config.filterprune.criterion=l2`. Scratch-E/B follow
(200 epochs / the same MACs).

Expected [A]: ResNet-20 at ~40% fewer FLOPs loses about a point or less
(the paper's Table: 92.20 -> 91.09/90.44 for rate 0.3 / 0.4 pruned from
scratch, our reading, not verified). Not measured here (no CIFAR-10).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 352  # ceil(45,000 / 128)


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.model = "resnet20"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = 200 * STEPS_PER_EPOCH
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.1
  config.weight_decay = 5e-4
  config.lr_schedule = "step"
  config.lr_decay_steps = tuple(e * STEPS_PER_EPOCH for e in (60, 120, 160))
  config.lr_decay_factor = 0.2
  config.log_every = STEPS_PER_EPOCH
  config.eval_every = 2 * STEPS_PER_EPOCH
  config.checkpoint_every = 2 * STEPS_PER_EPOCH
  config.keep_checkpoints = 1
  config.filterprune = _base.filterprune_section(
      method="fpgm", rate=0.4, prune_every=STEPS_PER_EPOCH)
  return config
