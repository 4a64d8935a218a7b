r"""Ablation of a binary MLP's optimisation on digits (Alizadeh et al. 2019).

Run the sweep (CPU, 2 cores; see the README for the measured wall time):

  python -m launch.sweep --config=experiments/configs/ablation_digits.py \
      --workdir=/tmp/ablation_digits --parallel=1

(the README's table, results/ablation_digits.md, is this sweep run and
tabulated by `python -m launch.results --table=ablation_digits`: 130
runs, 27 min on a 2-core CPU),

or one run of the base config (the reference point of every variation):

  python -m launch.train --config=experiments/configs/ablation_digits.py \
      --workdir=/tmp/ablation_digits_base

Base: a BinaryConnect MLP (Courbariaux et al. 2015) on scikit-learn's
digits: 3 x 256 dense layers, every layer (first and last included)
binary, weights binarized with the clipped STE (`ste_sign`), real ReLU
activations, BatchNorm after every layer (Flax momentum 0.85 = Lasagne's
alpha .15, as in Alizadeh et al.'s MNIST MLP), squared hinge loss, latent
weights clipped to [-1, 1] after each Adam step, constant learning rate,
1,000 steps of batch 64 (about 50 epochs of digits' 1,257 training
images); no pruning.

The grid (`get_sweep`, 5 seeds each) is a union of sub-grids around the
base:
  * optimizer {sgd, momentum, adam} x kernel STE {ste_identity_sign (the
    identity STE: sign forward, gradient passed everywhere), ste_sign
    (clipped STE, |x| <= 1), approx_sign (Bi-Real's piecewise-quadratic),
    swish_sign (BNN+'s SignSwish), identity (no binarization: the
    real-valued reference)}, at the base's clip_weights=1;
  * optimizer {sgd, momentum, adam} x kernel STE {ste_identity_sign,
    ste_sign} x weight clipping off/on (`clip_weights` 0 / 1): Alizadeh et
    al.'s "gradient clipping" (the STE window |w| <= 1) x "weight
    clipping" (disable_weight_constraint), the two things their code
    varies. With the latent weights clipped to [-1, 1] the window never
    acts and the two STEs are the same function, so only the
    `clip_weights=0` half can tell them apart; each binary run's
    summary.json["final"] (and the sweep's results.csv/md) records
    `latent_outside_window`, the fraction of latent binary weights with
    |w| > 1 at the end (where the two STEs' gradients differ), and
    `latent_abs_max`;
  * weight clipping off/on (`clip_weights` 0 / 1; its points are also in
    the sub-grid above, so it costs no run);
  * gradient clipping off/on (`grad_clip_norm` 0 / 1: global-norm);
  * BatchNorm momentum {0.5, 0.85, 0.99};
  * learning-rate schedule {constant, cosine, step (x0.1 at 50% and 75%)}.
26 distinct configurations, 130 runs. One learning rate (3e-3) serves all
optimizers, as a study of "which optimizer works at the base settings".

Expected (Alizadeh et al., §5 of docs/METHODS): Adam clearly above plain
SGD and momentum for the binary kernels (the STE needs second-moment
normalisation), while the gap is small for the real-valued `identity`
kernels; weight clipping changes the final accuracy little at this length.
Digits is a much smaller problem than MNIST: see results.md of the sweep.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.model = "binary_mlp"
  config.model_kwargs = ml_collections.ConfigDict({
      "hidden": (256, 256, 256),
      "kernel_quantizer": "ste_sign",   # a name of binary.QUANTIZERS
      "input_quantizer": None,          # BNN: "ste_sign" (+ hard_tanh)
      "binary_first": True,
      "binary_last": True,
      "bn_momentum": 0.85,              # Flax's (1 - Lasagne's alpha)
  })
  config.binarize = True                # False: the float twin
  config.loss = "squared_hinge"
  config.clip_weights = 1.0             # BinaryConnect's H; 0.0 = off
  config.glorot_lr_scale = False
  config.grad_clip_norm = 0.0           # 0.0 = off

  config.num_steps = 1000
  config.batch_size = 64
  config.optimizer = "adam"
  config.learning_rate = 3e-3
  config.lr_schedule = "constant"
  config.lr_decay_steps = (500, 750)    # for lr_schedule=step
  config.lr_decay_factor = 0.1
  config.warmup_steps = 100             # for lr_schedule=warmup_cosine

  config.log_every = 250
  config.eval_every = 500
  config.checkpoint_every = 500
  config.keep_checkpoints = 1
  config.pruning = _base.pruning_section(method="none")  # a dense run
  return config


def get_sweep() -> dict:
  """Sub-grids (`{"config.field.path": [values]}`, product within, union
  across) and the seeds every point runs with; see experiments/sweep.py."""
  return {
      "seeds": [0, 1, 2, 3, 4],
      "grids": [
          {"optimizer": ["sgd", "momentum", "adam"],
           "model_kwargs.kernel_quantizer": [
               "ste_identity_sign", "ste_sign", "approx_sign", "swish_sign",
               "identity"]},
          {"optimizer": ["sgd", "momentum", "adam"],
           "model_kwargs.kernel_quantizer": ["ste_identity_sign",
                                             "ste_sign"],
           "clip_weights": [0.0, 1.0]},
          {"clip_weights": [0.0, 1.0]},
          {"grad_clip_norm": [0.0, 1.0]},
          {"model_kwargs.bn_momentum": [0.5, 0.85, 0.99]},
          {"lr_schedule": ["constant", "cosine", "step"]},
      ],
  }
