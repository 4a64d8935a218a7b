"""The neutral base of every shipped config, and the method sections' fields.

`get_config()` holds every field the trainer reads as ``config.<field>``
(``experiments.train``, ``experiments.optimizers``,
``experiments.config_check``), each at a neutral default: a dense MLP on
scikit-learn's digits, Adam at a constant learning rate, no method section
(so no pruning: a plain dense run). Optional fields, read with
``config.get`` and absent here, keep the trainer's defaults: ``loss``
("cross_entropy"), ``binarize`` (True: a binary model's quantizers are on),
``clip_weights`` (0.0, off), ``glorot_lr_scale`` (False),
``grad_clip_norm`` (0.0, off), ``lr_decay_every`` (exponential schedule).

A config is this base, its own values, and exactly one *method section*
(``experiments.drivers.method_sections``): ``pruning`` (the plain run:
magnitude pruning, or ``method="none"``) or a driver's section
(``lottery``, ``repr``, ``filterprune``, ``fbs``, ``benn``, ``mainsub``,
``gradcount``). The ``*_section`` functions below build a section with its
documented defaults, overridden by keyword; every config imports this module
and no other config (``tests/test_configs.py`` checks both rules).
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The neutral config: no method section, every required field."""
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
  return config


def _section(section: ml_collections.ConfigDict,
             overrides: dict) -> ml_collections.ConfigDict:
  """`section` with the `overrides` (field -> value) set."""
  for k, v in overrides.items():
    section[k] = v
  return section


def pruning_section(**overrides) -> ml_collections.ConfigDict:
  """The plain run's `pruning` section (``experiments.pruning``): gradual
  layer-wise magnitude pruning to 80 % (Zhu & Gupta 2017's cubic schedule
  from `begin_step` to `end_step`, every `frequency` steps)."""
  pc = ml_collections.ConfigDict()
  pc.method = "magnitude"   # none | magnitude
  pc.schedule = "gradual"   # gradual | oneshot
  pc.scope = "layerwise"    # layerwise | global
  pc.target_sparsity = 0.8
  pc.layer_sparsity = ml_collections.ConfigDict()  # name -> final
  pc.begin_step = 1000
  pc.end_step = 2500
  pc.frequency = 100
  return _section(pc, overrides)


def lottery_section(**overrides) -> ml_collections.ConfigDict:
  """The `lottery` fields with their defaults (``experiments.lottery_run``;
  every lottery config)."""
  lc = ml_collections.ConfigDict()
  lc.levels = 15                # pruning levels after the dense level 0
  lc.reset = "init"             # init | rewind | lr_rewind | finetune
  lc.rewind_step = 0            # k: rewind / lr_rewind / finetune length T-k
  lc.finetune_lr = 1e-3         # constant LR of `finetune` (Renda et al.)
  lc.scope = "layerwise"        # layerwise (rates) | global (global_rate)
  lc.rates = ml_collections.ConfigDict({"default": 0.2, "Dense_2": 0.1})
  lc.global_rate = 0.2
  lc.global_include = ()        # global: names, prefixes or globs; () = all
  lc.oneshot = False            # prune level 0's weights straight to level L
  lc.data_order = "fixed"       # fixed (open_lth) | per_level (seeded)
  lc.controls = ("random_reinit", "random_prune")
  lc.control_seeds = 2
  lc.control_levels = ()        # () = every level >= 1
  lc.trunk = "train"            # train | existing (controls on a done trunk)
  lc.instability_levels = ()    # levels with a linear-mode-connectivity test
  lc.instability_points = 30
  return _section(lc, overrides)


def repr_section(**overrides) -> ml_collections.ConfigDict:
  """The `repr` fields with their defaults (``experiments.repr_run``; every
  RePr config)."""
  rc = ml_collections.ConfigDict()
  rc.s1_steps = 20              # S1: full-network steps per cycle
  rc.s2_steps = 10              # S2: sub-network steps per cycle
  rc.cycles = 3                 # N (0 = standard training, same steps)
  rc.drop_fraction = 0.3        # p: global fraction of ranked filters
  rc.ranking = "orthogonality"  # orthogonality | magnitude | random
  rc.reinit = "orthogonal"      # orthogonal (QR null space) | random
  rc.exclude_first = True       # never rank the first conv layer
  rc.exclude = ()               # more layers never ranked (names, globs)
  return _section(rc, overrides)


def filterprune_section(**overrides) -> ml_collections.ConfigDict:
  """The `filterprune` fields with their defaults
  (``experiments.filterprune_run``: FPGM and Network Slimming)."""
  fp = ml_collections.ConfigDict()
  fp.method = "fpgm"            # fpgm | slimming
  fp.layers = ()                # conv layers pruned (names, globs); () = all
  fp.exclude = ()               # never pruned
  # FPGM
  fp.rate = 0.4                 # rate_dist: floor(C * rate) filters by GM
  fp.layer_rates = ml_collections.ConfigDict()  # name/glob -> rate
  fp.rate_norm = 1.0            # kept by the norm step (1 = no norm step)
  fp.criterion = "geometric_median"  # geometric_median | l2 | l1
  fp.prune_every = 0            # steps between re-selections; 0 = 1 epoch
  fp.soft_variant = "paper"     # paper: FPGM Algorithm 1 (train, then
                                # zero; zeroed filters train and may regrow)
                                # released_cifar: pruning_cifar10.py (also a
                                # selection at step 0; zeroed kernels get no
                                # gradient until the next selection)
  # Network Slimming
  fp.l1 = 1e-4                  # s: L1 strength on BatchNorm scales
  fp.prune_fraction = 0.5       # global fraction of BN channels pruned
  fp.finetune_steps = 1000
  fp.finetune_lr = 0.0          # 0: the run's schedule, stretched
  # Liu et al. 2019 baselines
  fp.scratch = True             # train Scratch-E and Scratch-B
  fp.scratch_b_max_factor = 2.0  # cap on Scratch-B's step factor (0: none)
  return _section(fp, overrides)


def fbs_section(**overrides) -> ml_collections.ConfigDict:
  """The `fbs` fields (``experiments.fbs_run``; every FBS config)."""
  fc = ml_collections.ConfigDict()
  fc.init_from = ""   # workdir of a finished run of the same model, or ""
  return _section(fc, overrides)


def benn_section(**overrides) -> ml_collections.ConfigDict:
  """The `benn` fields with their defaults (``experiments.benn_run``)."""
  bc = ml_collections.ConfigDict()
  bc.members = 5
  bc.ensemble = "bagging"    # bagging | boost_a .. boost_d
  bc.mode = "independent"    # independent | sequential (warm start)
  bc.parallel = "vmap"       # vmap (stacked members) | loop
  bc.shrinkage = 0.1         # boost_d's factor on alpha
  bc.c_scale = 0.0           # boost_c's constant; 0 = N / 10
  bc.soft_vote = "scores"    # scores (official) | probabilities
  return _section(bc, overrides)


MAINSUB_RECIPES = ("budget", "released")


def mainsub_section(recipe: str = "budget",
                    **overrides) -> ml_collections.ConfigDict:
  """The `mainsub` fields (``experiments.mainsub_run``) of a recipe:
  "budget" (a per-layer removal budget, annealed) or "released"
  (justimyhxu/MainSubsidaryBNN's settings); see mainsub_digits.py."""
  if recipe not in MAINSUB_RECIPES:
    raise ValueError(f"unknown mainsub recipe {recipe!r}; choose one of: "
                     f"{', '.join(MAINSUB_RECIPES)}")
  ms = ml_collections.ConfigDict()
  ms.sub_steps = 100          # per layer
  ms.finetune_steps = 100     # per layer
  ms.finetune_lr = 1e-4
  ms.penalty = "count"        # count (ours) | l0 (released code)
  if recipe == "budget":
    ms.budget = 0.25          # per layer, annealed over sub_steps/2
    ms.alpha = 0.0            # the budget sets the count
    ms.sub_optimizer = "adam"   # chosen on validation over sgd
    ms.sub_lr = 1e-3
    ms.gate_init = 0.5        # U(0.5 - 1e-4, 0.5 + 1e-4)
  else:  # released: justimyhxu/MainSubsidaryBNN's settings
    ms.budget = 0.0
    ms.alpha = 1e-8
    ms.sub_optimizer = "adam"
    ms.sub_lr = 1e-3
    ms.gate_init = 0.0        # U(-1e-4, 1e-4)
  ms.layers = ()              # () = every binary conv
  ms.controls = ("greedy", "random", "learned")
  ms.scratch = True           # Scratch-E / Scratch-B baselines
  ms.scratch_b_max_factor = 2.0  # cap on Scratch-B (0: none)
  return _section(ms, overrides)


def gradcount_section(**overrides) -> ml_collections.ConfigDict:
  """The `gradcount` fields with their defaults
  (``experiments.gradcount_run``)."""
  gc = ml_collections.ConfigDict()
  gc.method = "gradcount"     # gradcount | l1 | magnitude (the controls)
  gc.warmup_steps = 300       # dense warm-up
  gc.joint_steps = 900        # counting / shrink / prune / redundancy
  gc.window = 50              # steps per counting window (one event each)
  gc.redundancy_every = 150   # redundant-filter removal (multiple of window)
  gc.eps = 0.5                # significant: |g| > eps * RMS(g) of the layer
  gc.lam = 0.01               # shrinkage per event: lam * (1 - activity)
  gc.rho = 0.35               # inactive: activity < rho
  gc.prune_budget = 0.15      # at most this fraction of a layer per event
  gc.redundancy = "max_cosine"  # max_cosine | orthogonality
  gc.s_max = 0.6              # drop a filter whose score exceeds this
  gc.min_keep = 4             # filters kept per layer at least
  gc.filter_budget = 0.25     # at most this fraction of a layer per event
  gc.filter_exclude = ()      # globs of conv layers never filter-pruned
  gc.target_sparsity = 0.0    # l1 / magnitude: final kernel sparsity ...
  gc.match_workdir = ""       # ... or that of this finished gradcount run
  gc.scratch = True           # Scratch-E / Scratch-B of the final mask
  gc.scratch_b_max_factor = 2.0  # cap on Scratch-B's step factor (0: none)
  return _section(gc, overrides)


# ------------------------------------------------------------- families --
# A family's shared recipe, so that its configs (one file each, the paths
# the README and the tests name) import only this module and restate
# nothing.
def lottery_conv_cifar10(model: str, *, num_convs: int, num_steps: int,
                         learning_rate: float,
                         conv_rate: float) -> ml_collections.ConfigDict:
  """Frankle & Carbin's Conv-2/4/6 on CIFAR-10 (Fig. 2): Adam, batch 60,
  layer-wise rates conv `conv_rate`, fc 0.2, output (``Dense_2``) 0.1,
  20 levels, reset to init, 3 control seeds."""
  config = get_config()
  config.dataset = "cifar10"
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = num_steps
  config.batch_size = 60
  config.optimizer = "adam"
  config.learning_rate = learning_rate
  config.log_every = 1000
  config.eval_every = 100
  config.checkpoint_every = 2500
  config.keep_checkpoints = 1
  config.eval_batch_size = 1000
  rates = {"default": 0.2, "Dense_2": 0.1}
  rates.update({f"Conv_{i}": conv_rate for i in range(num_convs)})
  config.lottery = lottery_section(
      levels=20, control_seeds=3, rates=ml_collections.ConfigDict(rates))
  return config


def lottery_resnet20_cifar10(reset: str) -> ml_collections.ConfigDict:
  """ResNet-20 on CIFAR-10 with global pruning of the convs by 20 % a
  level, 10 levels, rewinding to step 500 (`reset`: ``"rewind"`` (Frankle
  et al. 2019) or ``"lr_rewind"`` (Renda et al. 2020: the final weights,
  the schedule replayed from the rewind step)); SGD momentum 0.1, step
  decay at 20K and 25K of 30K."""
  config = get_config()
  config.dataset = "cifar10"
  config.model = "resnet20"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = 30_000
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.1
  config.weight_decay = 1e-4
  config.lr_schedule = "step"
  config.lr_decay_steps = (20_000, 25_000)
  config.lr_decay_factor = 0.1
  config.log_every = 500
  config.eval_every = 500
  config.checkpoint_every = 2500
  config.keep_checkpoints = 1
  config.lottery = lottery_section(
      levels=10, reset=reset, rewind_step=500, scope="global",
      global_rate=0.2, global_include=("*Conv_*",), control_seeds=2)
  return config


DIGITS_STEPS_PER_EPOCH = 20  # about one epoch of digits' train split at 64


def digits_vgg() -> ml_collections.ConfigDict:
  """The digits BatchNorm VGG (conv 32-32-M-64-64) and its SGD recipe
  (100 epochs, momentum 0.9, lr 0.05 decayed by 0.2 at epochs 50, 75,
  90, weight decay 5e-4) that FPGM and Network Slimming start from; no
  method section."""
  epoch = DIGITS_STEPS_PER_EPOCH
  config = get_config()
  config.model = "vgg11"
  config.model_kwargs = ml_collections.ConfigDict(
      {"cfg": (32, 32, "M", 64, 64)})
  config.num_steps = 100 * epoch
  config.batch_size = 64
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.05
  config.weight_decay = 5e-4
  config.lr_schedule = "step"
  config.lr_decay_steps = (50 * epoch, 75 * epoch, 90 * epoch)
  config.lr_decay_factor = 0.2
  config.log_every = 200
  config.eval_every = 500
  config.checkpoint_every = 500
  config.keep_checkpoints = 1
  return config
