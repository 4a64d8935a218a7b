r"""Lottery tickets: ResNet-20 on CIFAR-10 with learning-rate rewinding.

  python -m launch.train --config=experiments/configs/lottery_resnet20_lr_rewind.py \
      --workdir=/tmp/lottery_resnet20_lrr --config.data_dir=~/tensorflow_datasets

Renda, Frankle & Carbin (ICLR 2020): after each level keep the FINAL
weights and replay the learning-rate schedule from step k (here 500, the
rewinding point of the weight-rewinding twin
`lottery_resnet20_rewind.py`, everything else equal). The fine-tuning
baseline is `--config.lottery.reset=finetune` (final weights, constant LR
`lottery.finetune_lr` = 0.001, the final LR of the schedule, for T - k
steps).

Expected [A, C]: both rewinding techniques outperform fine-tuning; the
paper's own runs use ResNet-20 with a 71,108-iteration schedule, global
20% per level ("prune_all_to_global_80.0"). An independent reproduction
found LR rewinding can lose accuracy at low sparsity on large WRNs [A].
Exact per-network numbers of the paper: not retrieved.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  # Renda et al.: the final weights, the schedule replayed from rewind_step.
  return _base.lottery_resnet20_cifar10(reset="lr_rewind")
