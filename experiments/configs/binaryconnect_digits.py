r"""BinaryConnect MLP on scikit-learn's digits, and its float twin.

Run (CPU, well under a minute on 2 cores: about 10 s measured):

  python -m launch.train --config=experiments/configs/binaryconnect_digits.py \
      --workdir=/tmp/binaryconnect_digits

Float twin (same architecture, init of real layers, loss, optimizer and
schedule; no quantizer, no weight clipping, no Glorot LR scale):
`--config.binarize=False`. Stochastic BinaryConnect:
`--config.model_kwargs.kernel_quantizer=stochastic_sign`. BNN (binary
activations too): `--config.model_kwargs.input_quantizer=ste_sign
--config.model_kwargs.activation=hard_tanh`.

The recipe of BinaryConnect's official code (Courbariaux, Bengio & David,
NeurIPS 2015; `MatthieuCourbariaux/BinaryConnect`, `mnist.py`) shrunk to
digits: every layer binary (deterministic sign, `H = 1`), BatchNorm after
every layer including the output one, squared hinge loss, Adam with an
exponential LR decay per epoch (1e-3 -> 3e-6; one epoch = 20 steps here),
Glorot per-layer LR scale and latent weights clipped to [-1, 1].

Expected (measured here, seeds 0-4, 3000 steps;
``results/binaryconnect_digits.md``, written by
``python -m launch.results --table=binaryconnect_digits``): test accuracy
0.985 (deterministic BinaryConnect), 0.992 (float twin), 0.972
(stochastic), 0.978 (BNN variant); each binary variant behind the float
twin, paired over the seeds (deterministic by 0.7 pp, its 95 % interval
just excluding 0). Digits is small, so read these as a smoke test, not
a replication. The paper's numbers (MNIST test error, for orientation only):
BinaryConnect deterministic 1.29 +- 0.08 %, stochastic 1.18 %, float
baseline 1.30 %.
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 20  # 1257 training digits / batch 64
EPOCHS = 150


def get_config() -> ml_collections.ConfigDict:
  config = _base.binaryconnect_mlp(
      "digits", hidden=(256, 256), batch_size=64,
      steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 1000
  return config
