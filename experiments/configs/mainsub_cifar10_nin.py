r"""Main/subsidiary pruning of the binary XNOR NIN on CIFAR-10.

Run (needs CIFAR-10 prepared once: `python -m launch.prepare_data
--dataset=cifar10`; a GPU/TPU job: 15 stages of 200 epochs):

  python -m launch.train --config=experiments/configs/mainsub_cifar10_nin.py \
      --workdir=/tmp/mainsub_cifar10_nin

The released code's settings (gates U(-1e-4, 1e-4), Adam 1e-3 on the
gates, alpha 1e-8, no budget): `--config=experiments/configs/
mainsub_cifar10_nin.py:released`; add `--config.mainsub.penalty=l0` for
its inert L0 penalty instead of the kept-filter count.  The default is
mainsub_digits.py's budget recipe (25 % of each binary layer's filters
removed, annealed over the first half of the subsidiary stage; gates
start at 0.5 and rank the filters by their summed STE gradient under
plain SGD, lr 0.1).

Settings (justimyhxu/MainSubsidaryBNN, `train.py`, README): NIN with 7
binary convs (192-160-96, 192-192-192, 192-192; first and last convs real,
no conv biases), Adam (weight decay 1e-5), batch 128, LR decay
lr * 1000^(-epoch/epochs) (an exponential staircase per epoch here), 200
epochs per stage; main network LR 1e-3, subsidiary 1e-3, fine-tuning 1e-4;
alpha 1e-8 (range 1e-7..1e-9); mask init U(-1e-4, 1e-4) (`:released`).
In `:released` the penalty is alpha x the number of kept filters through
the STE; with the released code's alpha = 1e-8 it is negligible next to
the task gradient (the code's L0 term has no gradient at all).  Not reproduced: random crop + flip augmentation, XNOR-Net's
weight mean-centring; the subsidiary stage uses frozen BN statistics.

Expected: the paper's CIFAR-10 NIN figures were not retrieved
(METHODS.md section 7.3); its headline is ImageNet binary ResNet-18 with
78.6 % of filters kept at top-1 error 49.87 % vs 50.02 % unpruned.  Not
run here (no data, CPU only); the budget recipe's SGD lr 0.1 on the gates
was set on digits' 100-step stages and is untested over 200 epochs.
"""
import ml_collections

from experiments.configs import _base

STEPS_PER_EPOCH = 45000 // 128  # 351
EPOCHS = 200
RECIPES = _base.MAINSUB_RECIPES  # ("budget", "released")


def get_config(recipe: str = "budget") -> ml_collections.ConfigDict:
  """`recipe`: "budget" (the default) or "released" (`--config=...:released`).
  """
  config = _base.mainsub_nin(recipe, name="mainsub_cifar10_nin", width=1.0,
                             dropout=0.5)
  config.dataset = "cifar10"
  config.dataset_kwargs = ml_collections.ConfigDict({"standardize": True})
  config.num_steps = STEPS_PER_EPOCH * EPOCHS
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.lr_schedule = "exponential"
  config.lr_decay_every = STEPS_PER_EPOCH
  config.lr_decay_factor = 1000.0 ** (-1.0 / EPOCHS)
  config.log_every = 100
  config.eval_every = STEPS_PER_EPOCH * 10
  config.checkpoint_every = STEPS_PER_EPOCH * 5
  config.mainsub = _base.mainsub_section(  # alpha, sub_lr: the recipe's
      recipe, sub_steps=STEPS_PER_EPOCH * EPOCHS,
      finetune_steps=STEPS_PER_EPOCH * EPOCHS, finetune_lr=1e-4)
  return config
