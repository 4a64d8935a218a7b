r"""BNN (BinaryNet): binary weights and activations, MLP on MNIST.

Run (GPU: 500,000 steps of a 3 x 4096 MLP; prepare MNIST once with
`python -m launch.prepare_data --dataset=mnist`):

  python -m launch.train --config=experiments/configs/bnn_mnist.py \
      --workdir=/tmp/bnn_mnist

Float twin (hard_tanh activations, real weights): `--config.binarize=False`.

Hyper-parameters of `MatthieuCourbariaux/BinaryNet` `Train-time/mnist.py`
(see shared/METHODS.md 4.2-4.3): MLP 3 x 4096, every layer with binary
deterministic weights (sign, `H = 1`), activations sign(x) with the
saturated STE 1{|x| <= 1} (here hard_tanh, then the next layer's
`ste_sign` input quantizer; the first layer sees the real image),
BatchNorm after every layer (alpha .1 = Flax momentum 0.9, epsilon 1e-4),
dropout 0.2 on the input and 0.5 on hidden layers, squared hinge loss,
batch 100, 1000 epochs, Adam with LR 3e-3 -> 3e-7 decayed exponentially per
epoch (one epoch = 500 steps), Glorot per-layer LR scale, latent weights
clipped to [-1, 1], 50K/10K train/validation split.

Departures: inputs are in [0, 1] (the code uses 2x - 1, which input dropout
sees differently); final test accuracy, not at the best validation epoch.

Expected (the paper's numbers, test error on MNIST, not reproduced here):
BNN (Theano) 0.96 % (README of this code), BNN (Torch7) 1.40 %.
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 500  # 50,000 training images / batch 100
EPOCHS = 1000
LR_START, LR_FIN = 3e-3, 3e-7


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "mnist"
  config.dataset_kwargs = ml_collections.ConfigDict({"num_validation": 10000})
  config.model = "binary_mlp"
  config.model_kwargs = _base.binary_model_kwargs(
      {"hidden": (4096, 4096, 4096)}, input_quantizer="ste_sign",
      activation="hard_tanh", dropout_input=0.2, dropout_hidden=0.5)

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
