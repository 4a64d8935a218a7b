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
  # Renda et al.: the final weights, the schedule replayed from rewind_step.
  config.lottery = _base.lottery_section(
      levels=10, reset="lr_rewind", rewind_step=500, scope="global",
      global_rate=0.2, global_include=("*Conv_*",), control_seeds=2)
  return config
