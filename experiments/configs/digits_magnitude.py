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


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = ""  # only for TFDS datasets (see launch.prepare_data)
  config.dataset_kwargs = ml_collections.ConfigDict()  # e.g. synthetic shape
  config.model = "mlp"
  config.model_kwargs = ml_collections.ConfigDict({"hidden": (300, 100)})
  config.seed = 0

  config.num_steps = 4000
  config.batch_size = 64
  config.eval_batch_size = 512
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.momentum = 0.9
  config.weight_decay = 0.0
  config.lr_schedule = "constant"
  config.lr_decay_steps = ()
  config.lr_decay_factor = 0.1
  config.warmup_steps = 0

  config.log_every = 200
  config.eval_every = 1000
  config.checkpoint_every = 1000
  config.keep_checkpoints = 2

  config.pruning = ml_collections.ConfigDict()
  config.pruning.method = "magnitude"   # none | magnitude
  config.pruning.schedule = "gradual"   # gradual | oneshot
  config.pruning.scope = "layerwise"    # layerwise | global
  config.pruning.target_sparsity = 0.8
  config.pruning.layer_sparsity = ml_collections.ConfigDict()  # name -> final
  config.pruning.begin_step = 1000
  config.pruning.end_step = 2500
  config.pruning.frequency = 100
  return config
