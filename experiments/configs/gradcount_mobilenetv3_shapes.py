r"""Gradient-count sparsity on MobileNetV3-small (LR-ASPP head), shapes.

MobileNetV3-small with hard-swish, squeeze-excite and depthwise convs
(experiments/models/_segmentation.py), width 0.5, stem and first block at
stride 1 so 32x32 images keep 4x4 features (`mobilenet_v3_small_seg32`),
on the synthetic shapes set. Same composite schedule and hyper-parameters
as gradcount_shapes.py (the method is the project's reading of Khan et
al. 2022, whose body is not available: METHODS.md 3.1). Depthwise convs and
the logits convs are never filter-pruned; the other 1x1 / KxK convs are.

Run (slow on a CPU: depthwise convolutions are; about 2-3 steps/s on 2
cores, so 30-60 minutes; minutes on a GPU), then the controls:

  python -m launch.train \
      --config=experiments/configs/gradcount_mobilenetv3_shapes.py \
      --workdir=/tmp/gc_mnv3_shapes
  python -m launch.train \
      --config=experiments/configs/gradcount_mobilenetv3_shapes.py \
      --config.gradcount.method=magnitude \
      --config.gradcount.match_workdir=/tmp/gc_mnv3_shapes \
      --workdir=/tmp/gc_mnv3_shapes_mag

Expected: the full schedule was not run here. A shortened smoke run
(--config.num_steps=400 --config.gradcount.warmup_steps=100
--config.gradcount.joint_steps=240 --config.gradcount.window=40
--config.gradcount.redundancy_every=80, seed 0) ended at 37.3 % of the
247,760 kernel weights, 2,738/2,920 conv filters, Dice 0.679 / mIoU 0.539
(621,468 bytes), and its magnitude control at the same sparsity at Dice
0.688 / mIoU 0.547 (all filters, 622,434 bytes): both undertrained.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "shapes"
  config.model = "mobilenet_v3_small_seg32"
  config.model_kwargs = ml_collections.ConfigDict({"width": 0.5})
  config.num_steps = 1500
  config.batch_size = 32
  config.eval_batch_size = 128
  config.optimizer = "adam"
  config.learning_rate = 2e-3
  config.log_every = 50
  config.eval_every = 300
  config.checkpoint_every = 300
  config.keep_checkpoints = 2
  config.gradcount = _base.gradcount_section(min_keep=8)  # its events prune
  return config
