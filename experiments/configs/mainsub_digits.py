r"""Main/subsidiary filter pruning of a binary NIN on scikit-learn's digits.

Run (CPU; about 9 min on 2 shared cores with `--config.mainsub.scratch=
False`, which skips the Scratch-E/B baselines):

  python -m launch.train --config=experiments/configs/mainsub_digits.py \
      --workdir=/tmp/mainsub_digits

Trains the main binary network (XNOR NIN of MainSubsidaryBNN, 7 binary
convs, semi-binary, width 1/4, no conv biases; 600 steps), then bottom-up
for every binary conv: a subsidiary stage (only that layer's filter gate
M trains, keep = (sign(M) + 1) / 2 with the STE; 100 steps) and a main
stage (weights fine-tune with the gate baked in; Adam 1e-4, 100 steps).
Controls at the learned per-layer counts, applied to the main network's
weights at once and fine-tuned for the same 700 steps: greedy (remove the
smallest mean |w|), random, and `learned` (the learned keep vectors
themselves: the selection without the layer-wise schedule).  `mainsub.md`
in the workdir has the per-layer table.

Recipes (`get_config(recipe)`; `--config=.../mainsub_digits.py:<recipe>`):

* `budget` (the default): each binary layer removes `mainsub.budget` =
  25 % of its filters (round(0.25 C)), the count annealed linearly from 0
  over the first half of the subsidiary stage and then held
  (`binary.mask_budget`: after every update the gates are shifted so that
  exactly the top C - r_t stay >= 0).  The gates start well inside the kept
  side (`gate_init` = 0.5, plus the released U(-1e-4, 1e-4) jitter) and
  train with Adam 1e-3 and no penalty (alpha = 0; refused with a budget).
  Why: with the released init the first Adam step decides each filter by
  the sign of one noisy gradient, and a penalty weight does not set a
  count (the released recipe removes 83-89 %); a budget sets the count
  directly (the paper's headline keeps 78.6 % of filters), and the gates
  only rank the filters, measured while the earlier removals are in
  effect, so a removed filter comes back if it ranks higher later.
  25 % is a target chosen a priori (>= 20 % removed), not tuned.  The
  optimizer was chosen on validation: Adam (each gate moves ~lr per step
  in the direction of its gradient's running mean, so the filters rank
  by how consistently the STE gradient says keep) against plain SGD
  (lr 0.1, ranking by the summed STE gradient, the accumulated
  first-order removal cost); validation accuracy of the pruned net over
  seeds 0-2 was 0.933 with Adam and 0.909 with SGD (both rows are below).
* `released`: justimyhxu/MainSubsidaryBNN's settings: gates
  U(-1e-4, 1e-4) (`gate_init` = 0), Adam 1e-3 on the gates, alpha = 1e-8
  times the STE kept-filter count (`--config.mainsub.penalty=l0` for the
  code's own L0 norm, whose gradient is 0), no budget.

Settings of `config.mainsub` that the recipes set (each checked by
`config_check`; a bad value is a one-line ConfigError naming the field):
`budget` in [0, 1) (0 = off; with a budget `alpha` must be 0),
`sub_optimizer` adam | sgd, `sub_lr` > 0, `gate_init` in [0, 1) (the
centre of the gates' uniform init; >= 1 would start outside the STE
window), `alpha` >= 0, `penalty` count | l0.

Measured (seeds S = 0, 1, 2; 360 test images, one image = 0.28 pp; test
accuracy; "before FT" = a control's mask applied to the main network,
no training; about 9 min per run on 2 shared CPU cores):

  python -m launch.train --config=experiments/configs/mainsub_digits.py \
      --config.seed=S --config.mainsub.scratch=False \
      --workdir=/tmp/mainsub_budget_S
  python -m launch.train \
      --config=experiments/configs/mainsub_digits.py:released \
      --config.seed=S --config.mainsub.scratch=False \
      --workdir=/tmp/mainsub_released_S

| recipe | seed | % removed | unpruned main | pruned (layer-wise) | learned control | greedy | random | learned before FT | greedy before FT | random before FT |
|---|---|---|---|---|---|---|---|---|---|---|
| budget (default; Adam 1e-3) | 0 | 25.0 | 0.906 | 0.922 | 0.919 | 0.897 | 0.922 | 0.425 | 0.153 | 0.172 |
| budget (default; Adam 1e-3) | 1 | 25.0 | 0.925 | 0.953 | 0.939 | 0.922 | 0.906 | 0.178 | 0.633 | 0.308 |
| budget (default; Adam 1e-3) | 2 | 25.0 | 0.936 | 0.911 | 0.906 | 0.931 | 0.914 | 0.356 | 0.108 | 0.125 |
| budget (default; Adam 1e-3) | mean ± std | 25.0 ± 0.0 | 0.922 ± 0.015 | 0.929 ± 0.022 | 0.921 ± 0.017 | 0.917 ± 0.017 | 0.914 ± 0.008 | 0.319 ± 0.128 | 0.298 ± 0.291 | 0.202 ± 0.095 |
| budget, SGD 0.1 on the gates | 0 | 25.0 | 0.906 | 0.889 | 0.928 | 0.897 | 0.922 | 0.461 | 0.153 | 0.172 |
| budget, SGD 0.1 on the gates | 1 | 25.0 | 0.925 | 0.919 | 0.836 | 0.922 | 0.906 | 0.478 | 0.633 | 0.308 |
| budget, SGD 0.1 on the gates | 2 | 25.0 | 0.936 | 0.883 | 0.844 | 0.931 | 0.914 | 0.156 | 0.108 | 0.125 |
| budget, SGD 0.1 on the gates | mean ± std | 25.0 ± 0.0 | 0.922 ± 0.015 | 0.897 ± 0.019 | 0.869 ± 0.051 | 0.917 ± 0.017 | 0.914 ± 0.008 | 0.365 ± 0.181 | 0.298 ± 0.291 | 0.202 ± 0.095 |
| released | 0 | 83.2 | 0.906 | 0.242 | 0.172 | 0.178 | 0.125 | 0.097 | 0.097 | 0.097 |
| released | 1 | 88.8 | 0.925 | 0.114 | 0.192 | 0.131 | 0.189 | 0.100 | 0.097 | 0.097 |
| released | 2 | 83.9 | 0.936 | 0.161 | 0.100 | 0.097 | 0.142 | 0.100 | 0.100 | 0.100 |
| released | mean ± std | 85.3 ± 3.1 | 0.922 ± 0.015 | 0.172 ± 0.065 | 0.155 ± 0.048 | 0.135 ± 0.040 | 0.152 ± 0.033 | 0.099 ± 0.002 | 0.098 ± 0.002 | 0.098 ± 0.002 |
| SGD + count penalty* | 0 | 42.1 | 0.906 | 0.825 | 0.783 | 0.828 | 0.825 | 0.097 | 0.097 | 0.111 |
| Adam, gates at 0.05* | 0 | 7.2 | 0.906 | 0.958 | 0.942 | 0.950 | 0.950 | 0.619 | 0.692 | 0.722 |

* seed 0 only: `:released` with `--config.mainsub.sub_optimizer=sgd
  --config.mainsub.sub_lr=0.1 --config.mainsub.gate_init=0.5
  --config.mainsub.alpha=0.1` (alpha set so that a gate at 0.5 goes when
  its summed STE gradient says removal costs nothing, to first order);
  `:released` with `--config.mainsub.gate_init=0.05` (half of Adam's
  reach lr x steps = 0.1).  The SGD rows: the default with
  `--config.mainsub.sub_optimizer=sgd --config.mainsub.sub_lr=0.1`.

The default removes 25.0 % of the binary filters. The pruned net scores
0.929 ± 0.022, against 0.922 ± 0.015 for the unpruned main network: +0.7 pp
on the mean, and +1.6, +2.8 and -2.5 pp for seeds 0, 1 and 2. The
fine-tuning stages add 700 training steps. The target (>= 20 % removed,
within 1 pp) is met on the mean, but not by seed 2. On the mean the
learned selection is at least as good as the greedy control: 0.929
layer-wise, and 0.921 for the learned keep vectors fine-tuned like the
controls, against greedy 0.917 ± 0.017 and random 0.914 ± 0.008. Seed 2
is again the exception. Every difference is within about one standard
deviation, because with 25 % removed, 700 steps of fine-tuning bring even
random filters back to the unpruned accuracy on digits; this task
separates selections poorly. Before fine-tuning the learned masks lead on
the mean (0.319 against 0.298 and 0.202), with a large spread.

With SGD on the gates, the same budget ends at 0.897 ± 0.019 (-2.5 pp). The
released recipe removes 85.3 ± 3.1 % of the filters and leaves the network
near chance (0.172 ± 0.065). On seed 0 only: gates at 0.05 under Adam
remove just 7.2 % (0.958), and SGD with the count penalty removes 42.1 %
at 0.825, no better than greedy or random. Hard-concrete L0 gates (Louizos
et al. 2018) were not tried.

Diagnosis of the released recipe (measured on an earlier version's
seed-0 main network, test accuracy 0.947; 512 training digits, eval
mode): the gate's STE gradient d loss / d keep at keep = 1 versus the
measured loss increase of removing each filter correlates
0.25 (sign agreement 40 %) in BinaryConv_1 and 0.76 (75 %) in
BinaryConv_4; BN -> sign hides a channel's scale from the forward pass,
and Adam moves every gate ~lr per step along its gradient's sign from
+-1e-4: the masks drift to removal.  METHODS.md section 7.4 expected
learned masks >= greedy at equal kept fraction and <= 0.5 pp loss at
~20 % of filters removed.  The paper's headline (ImageNet ResNet-18):
78.6 % of filters kept, top-1 error 49.87 % vs 50.02 % unpruned.
"""
import ml_collections

from experiments.configs import _base


RECIPES = _base.MAINSUB_RECIPES  # ("budget", "released")


def get_config(recipe: str = "budget") -> ml_collections.ConfigDict:
  """`recipe`: "budget" (the default) or "released" (`--config=...:released`).
  """
  config = _base.mainsub_nin(recipe, name="mainsub_digits", width=0.25,
                             dropout=0.2)
  config.num_steps = 600            # the main network
  config.batch_size = 64
  config.lr_schedule = "constant"
  config.log_every = 100
  config.eval_every = 300
  config.checkpoint_every = 300
  # 100 subsidiary and 100 fine-tuning steps per layer (the section's
  # defaults).
  return config
