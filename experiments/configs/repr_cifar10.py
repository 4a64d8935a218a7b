r"""RePr on CIFAR-10: the vanilla CNN of Fig. 1 (3 x 32 conv + FC 512 -> 10).

Prepare CIFAR-10 once, then run (CPU: tens of minutes to hours):

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/repr_cifar10.py \
      --workdir=/tmp/repr_cifar10 --config.data_dir=~/tensorflow_datasets

Standard-training twin (same steps): add `--config.repr.cycles=0`.
Ablations (METHODS.md 2.4): `--config.repr.ranking=random
--config.repr.reinit=random`, `--config.repr.reinit=random`,
`--config.repr.ranking=magnitude`.

Settings (METHODS.md 2.2, the siahuat0727/RePr re-implementation's
defaults [R]): S1 = 20 epochs, S2 = 10 epochs, p = 30% of the filters of
Conv_1 and Conv_2 (global ranking, first conv excluded), N = 3 cycles,
110 epochs in all (drops at epochs 20/50/80, re-inits at 30/60/90, the last
20 epochs plain); plain SGD without momentum or weight decay, batch 128,
LR 0.003 (the re-implementation's no-augmentation setting; this pipeline
does no augmentation). One epoch = 352 steps (45,000 training images after
the 5,000-image validation split).

Expected: the paper's Fig. 1 shows 72.1% (standard) -> 76.4% (RePr) [R
README quoting the paper]; the re-implementation measured 64.86% -> 69.05%
without augmentation (+4.2 points) but 77.84% -> 74.48% with crop+flip
(-3.4 points) [R]. Not measured here (no CIFAR-10 on this machine).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 352  # ceil(45,000 / 128)


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.model = "vanilla_cnn"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = 110 * STEPS_PER_EPOCH
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer = "sgd"
  config.learning_rate = 0.003
  config.momentum = 0.0
  config.weight_decay = 0.0
  config.lr_schedule = "constant"
  config.log_every = STEPS_PER_EPOCH
  config.eval_every = 2 * STEPS_PER_EPOCH
  config.checkpoint_every = 2 * STEPS_PER_EPOCH
  config.keep_checkpoints = 1
  config.repr = _base.repr_section(
      s1_steps=20 * STEPS_PER_EPOCH, s2_steps=10 * STEPS_PER_EPOCH, cycles=3,
      drop_fraction=0.3)
  return config
