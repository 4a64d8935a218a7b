r"""Network Slimming on CIFAR-10 with VGG-11 (BN), 50% of the channels.

Prepare CIFAR-10 once, then run (CPU: many hours; an accelerator is
advised):

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/slimming_vgg11_cifar10.py \
      --workdir=/tmp/slimming_vgg11 --config.data_dir=~/tensorflow_datasets

Settings [C Eric-mingjie/network-slimming README, METHODS.md 8]: 160
epochs with s = 1e-4 on every BN scale, SGD momentum 0.9, lr 0.1 / 10 at
50% and 75%, weight decay 1e-4, batch 64; then the globally smallest 50%
of the BN channels pruned (METHODS.md's CPU check: 50-70%) and 160 epochs
of fine-tuning with the same schedule; Scratch-E (160 epochs) and Scratch-B
(the same MACs) on the pruned architecture. The paper's VGG is VGG-19 with
70% pruned (93.77 -> 93.78%); VGG-11 is the issue's CPU-sized choice.
Not measured here (no CIFAR-10).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 704  # ceil(45,000 / 64)


def get_config() -> ml_collections.ConfigDict:
  config = _base.cifar10_sgd(
      "vgg11", num_steps=160 * STEPS_PER_EPOCH, batch_size=64,
      decay_steps=(80 * STEPS_PER_EPOCH, 120 * STEPS_PER_EPOCH))
  config.log_every = STEPS_PER_EPOCH
  config.eval_every = 4 * STEPS_PER_EPOCH
  config.checkpoint_every = 4 * STEPS_PER_EPOCH
  config.keep_checkpoints = 1
  config.filterprune = _base.filterprune_section(
      method="slimming", l1=1e-4, prune_fraction=0.5,
      finetune_steps=160 * STEPS_PER_EPOCH)
  return config
