r"""BinaryConnect on CIFAR-10 with the VGG-like CNN (official code's settings).

Run (GPU: 450,000 steps; prepare CIFAR-10 once with
`python -m launch.prepare_data --dataset=cifar10`):

  python -m launch.train \
      --config=experiments/configs/binaryconnect_cifar10.py \
      --workdir=/tmp/binaryconnect_cifar10

Float twin: `--config.binarize=False`. Deterministic BinaryConnect:
`--config.model_kwargs.kernel_quantizer=ste_sign`.

Hyper-parameters of `MatthieuCourbariaux/BinaryConnect` `cifar10.py` (see
shared/METHODS.md 4.3): 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-1024FC-1024FC-10,
every layer binary (weights only: `input_quantizer=None`), stochastic
binarization (`H = 1`), ReLU, BatchNorm after every layer (alpha .1 = Flax
momentum 0.9, epsilon 1e-4), squared hinge loss, batch 50, 500 epochs, Adam
with LR 3e-3 -> 2e-6 decayed exponentially per epoch (one epoch = 900
steps), Glorot per-layer LR scale, latent weights clipped to [-1, 1],
45K/5K train/validation split, no augmentation.

Departures: per-channel standardization instead of the code's GCN + ZCA
whitening (pylearn2); final test accuracy, not at the best validation
epoch.

Expected (the paper's numbers, test error on CIFAR-10, not reproduced
here): BinaryConnect stochastic 8.27 % (README of this code), deterministic
9.90 %, float baseline 10.64 %.
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 900  # 45,000 training images / batch 50
EPOCHS = 500
LR_START, LR_FIN = 3e-3, 2e-6


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.dataset_kwargs = ml_collections.ConfigDict(
      {"num_validation": 5000, "standardize": True})
  config.model = "bnn_cnn"
  config.model_kwargs = _base.binary_model_kwargs(
      {"width": 1.0}, kernel_quantizer="stochastic_sign")

  config.num_steps = STEPS_PER_EPOCH * EPOCHS
  config.batch_size = 50
  config.eval_batch_size = 500
  config.optimizer = "adam"
  config.learning_rate = LR_START
  # Lasagne's `LR *= LR_decay` after every epoch (exponential staircase).
  config.lr_schedule = "exponential"
  config.lr_decay_every = STEPS_PER_EPOCH
  config.lr_decay_factor = (LR_FIN / LR_START) ** (1.0 / EPOCHS)

  config.log_every = 900
  config.eval_every = STEPS_PER_EPOCH
  config.checkpoint_every = 10 * STEPS_PER_EPOCH

  config.binarize = True
  config.loss = "squared_hinge"
  config.clip_weights = 1.0
  config.glorot_lr_scale = True
  config.grad_clip_norm = 0.0

  config.pruning = _base.pruning_section(method="none")  # a dense run
  return config
