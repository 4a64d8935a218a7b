r"""LeNet-style MLP on scikit-learn's digits, magnitude-pruned to 80%.

Run (CPU, about a minute on 2 cores):

  python -m launch.train --config=experiments/configs/digits_magnitude.py \
      --workdir=/tmp/digits_magnitude

Dense twin: add `--config.pruning.method=none`. One-shot pruning:
`--config.pruning.schedule=oneshot`.

Expected (seed 0, see README for the measured figures): dense test accuracy
>= 0.95; with 80% of the weights pruned (gradual, layer-wise) >= 0.93;
remaining fraction 0.200.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.pruning = _base.pruning_section()  # to 80 %, gradual, layer-wise
  return config
