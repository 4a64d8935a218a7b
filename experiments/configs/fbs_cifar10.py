r"""FBS on CIFAR-10: M-CifarNet (8 conv layers), density d = 0.5.

Gao et al., "Dynamic Channel Pruning: Feature Boosting and Suppression",
ICLR 2019 (METHODS.md section 8).  Model ``fbs_cnn`` with its default
widths, our reading of the paper's M-CifarNet (not checked against released
code): 64, 64, pool, 128, 128, 128, pool, 192, 192, 192, global average
pool, dense 10; every conv but the first FBS-gated (keeps ceil(d * C)
output channels per example), lambda = 1e-8 on the saliencies (METHODS.md,
from memory).

Prepare CIFAR-10 once, then run (a GPU/TPU job; hours on a CPU):

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/fbs_cifar10.py \
      --workdir=/tmp/fbs_cifar10_d05 --config.data_dir=~/tensorflow_datasets

Other densities: ``--config.model_kwargs.density=1.0`` (train this first:
the reference) or ``0.75``; the paper's path of fine-tuning the trained
network: ``--config.fbs.init_from=/tmp/fbs_cifar10_d1``.  The three
densities from scratch: ``python -m launch.sweep
--config=experiments/configs/fbs_cifar10.py --workdir=/tmp/fbs_cifar10``.

Settings (our choice; the paper's CIFAR schedule is not in METHODS.md): SGD
with momentum 0.9 ("plain SGD" in the paper), weight decay 5e-4, batch 128,
lr 0.05 with a cosine decay over 150 epochs (352 steps per epoch: 45,000
training images after the 5,000-image validation split), no augmentation
(this pipeline does none, so expect a few points below augmented
figures).

Writes summary.json: ``"final"`` with test_accuracy, ``macs_fraction``
(MACs executed incl. the saliency predictors over the dense network's
MACs, averaged over the test set), ``macs_overhead_fraction``;
``"fbs_layers"`` the per-layer table (see experiments/fbs.py).

Expected: the paper's headline is on ImageNet (5x fewer MACs on VGG-16, 2x
on ResNet-18, < 0.6% top-5 loss [METHODS.md, A]); its M-CifarNet figures
are not verified here.  With d = 0.5 a gated layer whose input is also
gated runs about d^2 = 0.25 of its MACs, so the network about 0.3 of the
dense MACs.  NOT RUN here (no CIFAR-10 and no accelerator on this machine).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 352  # ceil(45,000 / 128)


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.model = "fbs_cnn"
  config.model_kwargs = ml_collections.ConfigDict(
      {"density": 0.5, "saliency_l1": 1e-8})
  config.num_steps = 150 * STEPS_PER_EPOCH
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.05
  config.weight_decay = 5e-4
  config.lr_schedule = "cosine"
  config.log_every = STEPS_PER_EPOCH
  config.eval_every = 5 * STEPS_PER_EPOCH
  config.checkpoint_every = 5 * STEPS_PER_EPOCH
  config.keep_checkpoints = 2
  config.fbs = _base.fbs_section()
  return config


def get_sweep() -> dict:
  """d in {1, 0.75, 0.5}, each from scratch (see experiments/sweep.py)."""
  return {"seeds": [0],
          "grids": [{"model_kwargs.density": [1.0, 0.75, 0.5]}]}
