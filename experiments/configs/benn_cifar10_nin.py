r"""BENN on CIFAR-10: semi-binary XNOR NIN members, the official settings.

Run (needs CIFAR-10 prepared once: `python -m launch.prepare_data
--dataset=cifar10`; a GPU/TPU job: 32 members x 100 epochs):

  python -m launch.train --config=experiments/configs/benn_cifar10_nin.py \
      --workdir=/tmp/benn_cifar10_bagging_sb

Variants of the official README table (XinDongol/BENN-PyTorch, `cifar/`):
all-binary (AB) `--config.model_kwargs.binary_first=True
--config.model_kwargs.binary_last=True`; boosting
`--config.benn.ensemble=boost_a|boost_b|boost_c|boost_d` with the README's
learning rate (`--config.learning_rate=...`); independent members
`--config.benn.mode=independent` (bagging then trains the members together
with vmap, or one per device with shard_map on >= 32 devices).

Settings (official code): NIN of `cifar/models/nin.py` (SB: first and last
convs real), Adam with weight decay 1e-5 (coupled, as PyTorch's Adam),
batch 128, cross-entropy, BN eps 1e-4 and PyTorch momentum 0.1, conv init
N(0, 0.05), dropout 0.5; every member retrains 100 epochs with the LR reset
(here: the schedule restarts per member); 32 members; SB bagging,
sequential, LR 1e-3.  Not reproduced: XNOR-Net's weight mean-centring and
the official pre-processed data files (here: per-channel standardisation,
no augmentation); 45,000 training images (5,000 held out for validation).

Expected (official README, accuracy %, single BNN -> 32-member BENN, soft
vote): SB bagging seq LR 1e-3: 77.87 -> 89.12 (overfits after 25 members);
SB boost D seq 84.50 -> 88.83; AB bagging seq LR 1e-4: 67.35 -> 81.32; AB
boost B seq LR 1e-2: 62.87 -> 82.58.  README notice: single BNN ~69-73 %
(AB) / 83-84 % (SB), 32 members ~79-82 % (AB) / 87-89 % (SB).  Not run
here (no data, CPU only).
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 45000 // 128  # 351
EPOCHS_PER_MEMBER = 100


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "cifar10"
  config.dataset_kwargs = ml_collections.ConfigDict({"standardize": True})
  config.model = "nin"
  config.model_kwargs = ml_collections.ConfigDict({
      "variant": "benn",
      "binary_first": False,   # SB: first and last layers real
      "binary_last": False,
      "width": 1.0,
      "dropout": 0.5,
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-4,
      "use_bias": True,
  })
  config.binarize = True
  config.loss = "cross_entropy"
  config.clip_weights = 0.0
  config.num_steps = STEPS_PER_EPOCH * EPOCHS_PER_MEMBER
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer = "adam"          # + coupled L2 1e-5, as PyTorch Adam
  config.learning_rate = 1e-3
  config.weight_decay = 1e-5
  config.lr_schedule = "constant"
  config.log_every = 100
  config.eval_every = STEPS_PER_EPOCH * 5
  config.checkpoint_every = STEPS_PER_EPOCH * 5
  config.benn = _base.benn_section(
      members=32, ensemble="bagging", mode="sequential",
      c_scale=5000.0)   # c_scale: the code's constant for N = 50000
  return config
