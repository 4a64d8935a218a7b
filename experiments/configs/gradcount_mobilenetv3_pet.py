r"""Gradient-count sparsity on MobileNetV3-small (LR-ASPP head), Oxford Pet.

Oxford-IIIT Pet from TFDS (trimap - 1: pet, background, border; 3,312
train / 368 validation / 3,669 test images resized to 128x128 by nearest
neighbour), MobileNetV3-small width 1.0 with the paper's strides (output
stride 32, the head's low-level branch at 16), the composite schedule of
gradcount_shapes.py scaled to about 30 epochs. The method is the project's
reading of Khan et al. 2022 (only the abstract is available: METHODS.md
3.1), which reports MobileNetV3 and UNet segmentation with fewer neurons
and less memory at test time "without loss".

Prepare the data once (needs TensorFlow and a network), then run on an
accelerator (hours on a CPU):

  python -m launch.prepare_data --dataset=oxford_iiit_pet --data_dir=~/tfds
  python -m launch.train \
      --config=experiments/configs/gradcount_mobilenetv3_pet.py \
      --config.data_dir=~/tfds --workdir=/tmp/gc_mnv3_pet

and the controls with `--config.gradcount.method=l1|magnitude
--config.gradcount.match_workdir=/tmp/gc_mnv3_pet`.

Expected: not run here (no prepared Pet data and no accelerator); the
comparison to make is Dice / mean IoU vs the controls at the same
sparsity, and filters and bytes removed.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "oxford_iiit_pet"
  config.dataset_kwargs = ml_collections.ConfigDict({"size": 128})
  config.model = "mobilenet_v3_small_seg"
  config.model_kwargs = ml_collections.ConfigDict({"width": 1.0})
  config.num_steps = 3000
  config.batch_size = 32
  config.eval_batch_size = 64
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  config.keep_checkpoints = 2
  config.gradcount = _base.gradcount_section(  # its events prune
      warmup_steps=1000, joint_steps=1500, window=100, redundancy_every=300,
      min_keep=8)
  return config
