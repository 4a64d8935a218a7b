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
  return _base.lottery_resnet20_cifar10(reset="rewind")
