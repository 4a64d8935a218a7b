r"""BinaryConnect on permutation-invariant MNIST (official code's settings).

Run (GPU recommended: 125,000 steps of a 3 x 2048 MLP; prepare MNIST once
with `python -m launch.prepare_data --dataset=mnist`):

  python -m launch.train --config=experiments/configs/binaryconnect_mnist.py \
      --workdir=/tmp/binaryconnect_mnist

Float twin: `--config.binarize=False`. Deterministic BinaryConnect:
`--config.model_kwargs.kernel_quantizer=ste_sign`.

Hyper-parameters of `MatthieuCourbariaux/BinaryConnect` `mnist.py` (branch
`lasagne`, see shared/METHODS.md 4.3): MLP 3 x 2048 ReLU, every layer
binary, stochastic binarization (`H = 1`; test time uses the real
weights), BatchNorm after every layer (Lasagne alpha .15 = Flax momentum
0.85, epsilon 1e-4), squared hinge loss, batch 100, 250 epochs, Adam with
LR 1e-3 -> 3e-6 decayed exponentially per epoch (one epoch = 500 steps),
Glorot per-layer LR scale, latent weights clipped to [-1, 1], no dropout,
50K/10K train/validation split.

Departures: inputs are in [0, 1] (the code uses 2x - 1; the first layer's
BatchNorm absorbs the affine map); the trainer reports the final test
accuracy, not the one at the best validation epoch (the validation curve
is in metrics.jsonl).

Expected (the paper's numbers, test error on MNIST, not reproduced here):
BinaryConnect stochastic 1.18 % (README of this code: about 1.15 %),
deterministic 1.29 +- 0.08 %, float baseline 1.30 %.
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 500  # 50,000 training images / batch 100
EPOCHS = 250
LR_START, LR_FIN = 1e-3, 3e-6


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "mnist"
  config.dataset_kwargs = ml_collections.ConfigDict({"num_validation": 10000})
  config.model = "binary_mlp"
  config.model_kwargs = _base.binary_model_kwargs(
      {"hidden": (2048, 2048, 2048)}, kernel_quantizer="stochastic_sign",
      bn_momentum=0.85)

  config.num_steps = STEPS_PER_EPOCH * EPOCHS
  config.batch_size = 100
  config.eval_batch_size = 1000
  config.optimizer = "adam"
  config.learning_rate = LR_START
  # Lasagne's `LR *= LR_decay` after every epoch (exponential staircase).
  config.lr_schedule = "exponential"
  config.lr_decay_every = STEPS_PER_EPOCH
  config.lr_decay_factor = (LR_FIN / LR_START) ** (1.0 / EPOCHS)

  config.log_every = 500
  config.eval_every = STEPS_PER_EPOCH
  config.checkpoint_every = 10 * STEPS_PER_EPOCH

  config.binarize = True
  config.loss = "squared_hinge"
  config.clip_weights = 1.0
  config.glorot_lr_scale = True
  config.grad_clip_norm = 0.0

  config.pruning = _base.pruning_section(method="none")  # a dense run
  return config
