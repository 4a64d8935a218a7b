r"""BENN on ImageNet: 3 semi-binary ResNet-18 members (documented config).

For users with ImageNet and accelerators; not run here.  Needs a TFDS
`imagenet2012` entry in the data registry (experiments/data/_tfds.py,
with 224x224 resize/crop), which the pipeline does not have yet: until
then this config documents the recipe and builds the model.

  python -m launch.train \
      --config=experiments/configs/benn_imagenet_resnet18.py \
      --workdir=/tmp/benn_imagenet_resnet18_bagging
  # boosting: --config.benn.ensemble=boost_d

Settings (official README, XinDongol/BENN-PyTorch `imagenet/`): ResNet-18,
SB (first conv and last dense real), independent training, 3 members;
with >= 3 devices, independent bagging places one member per device
(`jax.shard_map`).  Adam 1e-3 with weight decay 1e-5, batch 256, LR x0.1
every 30 epochs, 90 epochs per member (the README gives no per-member
schedule; these are the usual XNOR-Net ResNet-18 values: adjust).
boost_d's ln(K - 1) uses K = 1000.

Expected (README, top-1 %): single BNN 48.87 -> BENN-3 bagging 54.34,
boosting 55.83.
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 1_281_167 // 256   # 5004
EPOCHS = 90


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "imagenet2012"
  config.dataset_kwargs = ml_collections.ConfigDict()
  config.model = "binary_resnet18"
  config.model_kwargs = ml_collections.ConfigDict({"width": 1.0})
  config.binarize = True
  config.loss = "cross_entropy"
  config.clip_weights = 0.0
  config.num_steps = STEPS_PER_EPOCH * EPOCHS
  config.batch_size = 256
  config.eval_batch_size = 1000
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.weight_decay = 1e-5
  config.lr_schedule = "step"
  config.lr_decay_steps = tuple(STEPS_PER_EPOCH * e for e in (30, 60))
  config.lr_decay_factor = 0.1
  config.log_every = 100
  config.eval_every = STEPS_PER_EPOCH
  config.checkpoint_every = STEPS_PER_EPOCH // 4
  config.benn = _base.benn_section(
      members=3, ensemble="bagging", mode="independent", parallel="vmap")
  return config
