r"""Main/subsidiary filter pruning of a binary NIN on scikit-learn's digits.

Run (CPU; a few minutes on 2 cores):

  python -m launch.train --config=experiments/configs/mainsub_digits.py \
      --workdir=/tmp/mainsub_digits

The released code's inert L0 penalty instead of the kept-filter count:
`--config.mainsub.penalty=l0`.

Trains the main binary network (XNOR NIN of MainSubsidaryBNN, 7 binary
convs, semi-binary, width 1/4, no conv biases), then bottom-up for every
binary conv: a subsidiary stage (only that layer's filter gate M trains,
CE + alpha * number of kept filters through the STE) and a main stage
(weights fine-tune with the gate baked in).  Controls: greedy (remove the
smallest mean |w|) and random filters at the learned per-layer counts,
fine-tuned for the same total number of steps.  `mainsub.md` in the
workdir has the per-layer table.

Expected (measured here, seed 0; about 3.5 min CPU): the main network
reaches 0.947 test accuracy; the subsidiary stages then remove most
filters of every layer (kept 1/40, 2/24, 7/48, 7/48, 6/48, 7/48, 6/48:
11.8 % of binary filters) and the network falls to chance (0.100 after
the last main stage); greedy and random controls at the same per-layer
counts reach 0.203 and 0.100 after fine-tuning.  With alpha = 1e-3: 5.9 %
kept, 0.100.  Diagnosis (this main network, 512 training digits, eval
mode): the gate's STE gradient d loss / d keep at keep = 1
versus the measured loss increase of removing each filter correlates
0.25 (sign agreement 40 %) in BinaryConv_1 and 0.76 (75 %) in
BinaryConv_4; BN -> sign hides a channel's scale from the forward pass,
and the STE gradient hardly depends on keep, so nothing pulls a removed
filter back while Adam moves every gate ~lr per step along its gradient's
sign: the masks drift to removal.  METHODS.md section 7.4 expected
learned masks >= greedy at equal kept fraction and <= 0.5 pp loss at
~20 % of filters removed: not reproduced here.  The paper's headline
(ImageNet ResNet-18): 78.6 % of filters kept, top-1 error 49.87 % vs 50.02 % unpruned.
"""
import ml_collections

from experiments.configs import digits_magnitude


def get_config() -> ml_collections.ConfigDict:
  config = digits_magnitude.get_config()
  config.model = "nin"
  config.model_kwargs = ml_collections.ConfigDict({
      "variant": "xnor",
      "binary_first": False,
      "binary_last": False,
      "width": 0.25,
      "dropout": 0.2,
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-4,
      "use_bias": False,       # a removed filter outputs exactly 0
  })
  config.binarize = True
  config.loss = "cross_entropy"
  config.clip_weights = 0.0
  config.num_steps = 600            # the main network
  config.batch_size = 64
  config.optimizer = "adam"          # + coupled L2 1e-5, as PyTorch Adam
  config.learning_rate = 1e-3
  config.weight_decay = 1e-5
  config.lr_schedule = "constant"
  config.log_every = 100
  config.eval_every = 300
  config.checkpoint_every = 300
  config.pruning.method = "none"

  config.mainsub = ml_collections.ConfigDict()
  config.mainsub.sub_steps = 100          # per layer
  config.mainsub.finetune_steps = 100     # per layer
  config.mainsub.alpha = 1e-8            # the released default
  config.mainsub.penalty = "count"        # count (ours) | l0 (released code)
  config.mainsub.sub_lr = 1e-3
  config.mainsub.finetune_lr = 1e-4
  config.mainsub.layers = ()              # () = every binary conv
  config.mainsub.controls = ("greedy", "random")
  config.mainsub.scratch = True           # Scratch-E / Scratch-B baselines
  config.mainsub.scratch_b_max_factor = 2.0  # cap on Scratch-B (0: none)
  return config
