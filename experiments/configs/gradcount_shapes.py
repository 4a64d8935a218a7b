r"""Gradient-count sparsity on UNet-tiny, synthetic shapes (CPU, minutes).

The method is the project's reading of Khan et al. 2022 (arXiv
2210.07451; only the abstract is available): see sparsity/_gradcount.py
and METHODS.md 3.1. Composite schedule: 300 dense warm-up steps, 900
joint steps (counting windows of 50 steps: count-weighted shrinkage and
pruning of inactive weights, redundant filters removed every 150 steps),
300 masked fine-tune steps; Adam 3e-3, batch 32, 32x32 images with 4
classes (background, square, disc, triangle).

Run (about 2 minutes each on 2 idle CPU cores), then the two controls at
the gradcount run's final sparsity:

  python -m launch.train --config=experiments/configs/gradcount_shapes.py \
      --workdir=/tmp/gc_shapes
  python -m launch.train --config=experiments/configs/gradcount_shapes.py \
      --config.gradcount.method=l1 \
      --config.gradcount.match_workdir=/tmp/gc_shapes --workdir=/tmp/gc_l1
  python -m launch.train --config=experiments/configs/gradcount_shapes.py \
      --config.gradcount.method=magnitude \
      --config.gradcount.match_workdir=/tmp/gc_shapes --workdir=/tmp/gc_mag

Dense reference: `--config.gradcount.joint_steps=1 --config.gradcount.lam=0
--config.gradcount.rho=0 --config.gradcount.s_max=1` (nothing is removed).

Expected (measured, seeds 0, 1, 2, Dice, mean over the seeds; `rho` sets
how much is pruned; results/gradcount_shapes.md, with the intervals,
written by `python -m launch.results --table=gradcount_shapes`, which
runs all thirty):

  rho    kept weights  filters  gradient count  L1     magnitude
  dense     100 %      100 %        0.941
  0.2      64.8 %       97.0 %      0.938       0.960   0.931
  0.35     18.0 %       78.9 %      0.871       0.945   0.929
  0.5       5.5 %       76.4 %      0.707       0.839   0.894

Gradient counting removes filters (the controls prune weights only) but
is behind the L1 control on the mean at each of these sparsities;
paired over the seeds every difference is indistinguishable at n = 3
(gradient counting's Dice varies by up to 23 pp between seeds).
summary.json["final"] holds dice, mean_iou, remaining_fraction (kernel weights),
filters_remaining_fraction (conv filters) and memory_bytes; `layer_report`
has them per layer.
"""
import ml_collections

from experiments.configs import _base


def get_config() -> ml_collections.ConfigDict:
  config = _base.get_config()
  config.dataset = "shapes"
  config.dataset_kwargs = ml_collections.ConfigDict()  # size=32, ...
  config.model = "unet_tiny"
  config.model_kwargs = ml_collections.ConfigDict()

  config.num_steps = 1500
  config.batch_size = 32
  config.eval_batch_size = 128
  config.optimizer = "adam"
  config.learning_rate = 3e-3

  config.log_every = 50
  config.eval_every = 300
  config.checkpoint_every = 300
  config.keep_checkpoints = 2

  config.gradcount = _base.gradcount_section()  # its events prune
  return config
