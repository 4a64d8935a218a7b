r"""Network Slimming on digits: the small BatchNorm VGG, 50% of channels.

Run (CPU, a few minutes on 2 cores; training with the L1 penalty, pruning,
fine-tuning, then Scratch-E and Scratch-B):

  python -m launch.train --config=experiments/configs/slimming_digits.py \
      --workdir=/tmp/slimming_digits

Ablations: `--config.filterprune.prune_fraction=0.7`,
`--config.filterprune.l1=0` (no sparsity regularisation: pruning by the
plain BN scales).

Model and recipe: as `fpgm_digits.py` (VGG (32, 32, M, 64, 64) with BN,
SGD momentum 0.9, lr 0.05 x 0.2 at 50/75/90%, wd 5e-4, 100 epochs). L1
strength s = 1e-4 on every BatchNorm scale (the VGG value [C README]),
then the globally smallest 50% of the 192 channels pruned with their
filters, then fine-tuning for 50 epochs (1,000 steps) with the same
schedule stretched to that length (the paper fine-tunes 160 epochs with
the training schedule). Scratch-E: the pruned architecture from a fresh
init for 2,000 steps; Scratch-B: for 2,000 x dense/pruned MACs, at most
twice as long (`scratch_b_max_factor`).

Expected [C README, CIFAR-10 VGG-19, 70% pruned]: 93.77% -> 93.78% after
fine-tuning (32.5% before); "Rethinking": scratch training comparable.
Measured on digits (seeds 0-2, results/slimming_digits.md,
`python -m launch.results --table=slimming_digits`): MACs 0.138, pruned
0.993, Scratch-E 0.992, Scratch-B 0.991 (indistinguishable at n = 3).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = _base.DIGITS_STEPS_PER_EPOCH


def get_config() -> ml_collections.ConfigDict:
  config = _base.digits_vgg()  # as fpgm_digits.py
  config.filterprune = _base.filterprune_section(
      method="slimming", l1=1e-4, prune_fraction=0.5, finetune_steps=1000)
  return config
