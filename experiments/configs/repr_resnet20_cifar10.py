r"""RePr on CIFAR-10 with ResNet-20 (the paper's Table 3 setting).

Prepare CIFAR-10 once, then run (CPU: hours; an accelerator is advised):

  python -m launch.prepare_data --dataset=cifar10 --data_dir=~/tensorflow_datasets
  python -m launch.train --config=experiments/configs/repr_resnet20_cifar10.py \
      --workdir=/tmp/repr_resnet20 --config.data_dir=~/tensorflow_datasets

Standard-training twin (same steps): add `--config.repr.cycles=0`;
the magnitude-ranking row of Table 3: `--config.repr.ranking=magnitude`.

Settings: 150 epochs, N = 3 cycles [3P Table 3 text: "trained for three
iterations", 150 epochs, "similar learning rate schedule and
initialization"]; S1 = 20 and S2 = 10 epochs, p = 30% (the
re-implementation's defaults [R]; the paper's ResNet values are not known
[M]), ranked over every 3x3 conv but the stem: the 1x1 projection
shortcuts (`BasicBlock_3/Conv_2`, `BasicBlock_6/Conv_2`) are excluded,
our choice: their filters have only d = 16 or 32 weights, fewer than their
32 or 64 filters, so they cannot be mutually orthogonal, score far above
the 3x3 layers (d = 144..576) and would lose all but one filter to the
global ranking (seen in a smoke run); a dropped filter takes its
BatchNorm scale/shift along (held at 0, reset to 1/0 at re-init: our
choice, METHODS.md 2.1 [D]). SGD momentum 0.9, LR 0.1 divided by 10 at
epochs 100 and 125, weight decay 1e-4, batch 128 (the usual CIFAR
ResNet-20 recipe; the paper's schedule is not given). One epoch = 352
steps.

Expected [3P quoting the paper's Table 3]: test error 8.4% standard,
7.7% RePr with the weight-magnitude ranking, 6.9% RePr (orthogonality);
"it still marginally improves the performance of modern architectures".
Not measured here (no CIFAR-10 on this machine).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 352  # ceil(45,000 / 128)


def get_config() -> ml_collections.ConfigDict:
  config = _base.cifar10_sgd(
      "resnet20", num_steps=150 * STEPS_PER_EPOCH, batch_size=128,
      decay_steps=(100 * STEPS_PER_EPOCH, 125 * STEPS_PER_EPOCH))
  config.log_every = STEPS_PER_EPOCH
  config.eval_every = 2 * STEPS_PER_EPOCH
  config.checkpoint_every = 2 * STEPS_PER_EPOCH
  config.keep_checkpoints = 1
  config.repr = _base.repr_section(
      s1_steps=20 * STEPS_PER_EPOCH, s2_steps=10 * STEPS_PER_EPOCH, cycles=3,
      drop_fraction=0.3, exclude=("*/Conv_2",))
  return config
