r"""FBS (Feature Boosting and Suppression) on digits: FBSDigitsCNN, d = 0.5.

Gao et al., "Dynamic Channel Pruning: Feature Boosting and Suppression",
ICLR 2019 (METHODS.md section 8).  Model ``fbs_digits_cnn``: conv 32
(ungated, its input is the image), FBS 32, 2x2 max pool, FBS 64, FBS 64,
global average pool, dense 10, on 8x8x1 digits.  Each FBS layer keeps the
top ceil(d * C) channels per example (``model_kwargs.density`` = d) and
adds lambda * ||g||_1 (``model_kwargs.saliency_l1``, 1e-8 as METHODS.md
recalls from memory) to the loss.

Run (CPU, a few minutes on 2 cores):

  python -m launch.train --config=experiments/configs/fbs_digits.py \
      --workdir=/tmp/fbs_digits_d05

Other densities: ``--config.model_kwargs.density=1.0`` (the dense-gated
baseline: every channel kept, BN scale from the predictor) or ``0.75``.
All three (seed 0):

  python -m launch.sweep --config=experiments/configs/fbs_digits.py \
      --workdir=/tmp/fbs_digits_sweep

Start from a trained network (fine-tune the finished d = 1 run at d = 0.5):

  python -m launch.train --config=experiments/configs/fbs_digits.py \
      --workdir=/tmp/fbs_digits_ft05 \
      --config.fbs.init_from=/tmp/fbs_digits_d1 --config.num_steps=400

Optimizer: the paper trains with "plain SGD"; we read that as SGD with
momentum 0.9 (no weight decay), lr 0.05 with a cosine decay over 1500
steps (~75 epochs of digits' 1257 training images at batch 64): our
choice, not the paper's schedule.

Writes summary.json: ``"final"`` with test_accuracy, ``macs_fraction``
(MACs executed, the saliency predictors included, over the dense network's
MACs, averaged over the test set) and ``macs_overhead_fraction`` (the
predictors alone); ``"fbs_layers"`` per conv/dense layer: dense MACs, mean
executed MACs, fraction.  Prints the per-layer MAC table.

Expected (measured, seeds 0-2, 360 test images; results/fbs_digits.md,
`python -m launch.results --table=fbs_digits`): test accuracy ~0.99-1.00
at every d (d = 1: 0.995, 0.75: 0.993, 0.5: 0.995, 0.25: 0.985; every
difference to d = 1 indistinguishable at n = 3, though d = 0.25 is below
it on every seed); macs_fraction ~0.86 at d = 1
(a saliency that its ReLU sets to 0 also skips its channel: 15-23% of
FBSConv_1's channels per example), 0.646 at d = 0.75, 0.363 at d = 0.5 and
0.153 at d = 0.25 (a gated layer whose input is gated too runs d^2 of
its MACs; the ungated first conv and the predictors, 0.5% overhead, are
the rest).  Digits is too easy to show the paper's trade-off: about one
point at d = 0.25, and d = 0.125 kept 0.989 (seed 0, an earlier run).
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.model = "fbs_digits_cnn"
  config.model_kwargs = ml_collections.ConfigDict(
      {"density": 0.5, "saliency_l1": 1e-8})
  config.num_steps = 1500
  config.batch_size = 64
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.05
  config.weight_decay = 0.0
  config.lr_schedule = "cosine"
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  config.keep_checkpoints = 1
  config.fbs = _base.fbs_section()
  return config


def get_sweep() -> dict:
  """d in {1, 0.75, 0.5, 0.25}, each trained from scratch (see experiments/sweep.py)."""
  return {"seeds": [0],
          "grids": [{"model_kwargs.density": [1.0, 0.75, 0.5, 0.25]}]}
