r"""Lottery tickets on digits: IMP of a LeNet-300-100-shaped MLP, with controls.

Run (CPU, a few minutes on 2 cores):

  python -m launch.train --config=experiments/configs/lottery_digits.py \
      --workdir=/tmp/lottery_digits

Writes, per level, the remaining fraction, early-stop step (minimum
validation loss, evaluated every `eval_every` steps), test accuracy at early
stop and at the end, train accuracy, and the same for the random
re-initialization and random pruning controls (2 seeds each):
`summary.json`, `lottery.md` and `lottery.png` (test accuracy against
weights remaining, log x) in the workdir.

Variants: `--config.lottery.reset=rewind --config.lottery.rewind_step=50`,
`--config.lottery.reset=lr_rewind ...`, `--config.lottery.oneshot=True`,
`--config.lottery.instability_levels=(0,4)`. Controls later on a finished
trunk: `--config.lottery.trunk=existing --config.lottery.control_seeds=4`.

Settings follow LeNet-300-100 in Frankle & Carbin (ICLR 2019, Fig. 2): Adam
1.2e-3, batch 60, layer-wise rates 20% (hidden) and 10% (output), reset to
init; the training length is shortened to digits' size (1257 training
images). Expected (the paper, on MNIST): tickets keep the dense accuracy
down to a few % of weights remaining and train faster (earlier early stop)
near 21%, while random re-initialization falls off from about 21%. Digits
is a much smaller problem: see the README for what this run measured.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.model = "mlp"
  config.model_kwargs = ml_collections.ConfigDict({"hidden": (300, 100)})
  config.num_steps = 800
  config.batch_size = 60
  config.optimizer = "adam"
  config.learning_rate = 1.2e-3
  config.log_every = 200
  config.eval_every = 50
  config.checkpoint_every = 400
  config.keep_checkpoints = 1
  config.lottery = _base.lottery_section(levels=15)
  return config
