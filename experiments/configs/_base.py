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
``gradcount``). The ``*_section`` functions below build a section with the
defaults its driver declares (``experiments.drivers.defaults``: each driver
module's ``defaults()``), overridden by keyword; every config imports this module
and no other config (``tests/test_configs.py`` checks both rules).
"""
import ml_collections
from ml_collections import config_dict

from experiments import drivers
from experiments import mainsub_run


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


def pruning_section(**overrides) -> ml_collections.ConfigDict:
  """The plain run's `pruning` section (``experiments.train.defaults``:
  gradual layer-wise magnitude pruning to 80 %), `overrides` replacing
  fields."""
  return drivers.defaults("pruning", **overrides)


def lottery_section(**overrides) -> ml_collections.ConfigDict:
  """The `lottery` section (``experiments.lottery_run.defaults``)."""
  return drivers.defaults("lottery", **overrides)


def repr_section(**overrides) -> ml_collections.ConfigDict:
  """The `repr` section (``experiments.repr_run.defaults``)."""
  return drivers.defaults("repr", **overrides)


def filterprune_section(**overrides) -> ml_collections.ConfigDict:
  """The `filterprune` section (``experiments.filterprune_run.defaults``:
  FPGM and Network Slimming)."""
  return drivers.defaults("filterprune", **overrides)


def fbs_section(**overrides) -> ml_collections.ConfigDict:
  """The `fbs` section (``experiments.fbs_run.defaults``)."""
  return drivers.defaults("fbs", **overrides)


def benn_section(**overrides) -> ml_collections.ConfigDict:
  """The `benn` section (``experiments.benn_run.defaults``)."""
  return drivers.defaults("benn", **overrides)


MAINSUB_RECIPES = mainsub_run.RECIPES  # ("budget", "released")


def mainsub_section(recipe: str = "budget",
                    **overrides) -> ml_collections.ConfigDict:
  """The `mainsub` section of a recipe, "budget" or "released"
  (``experiments.mainsub_run.defaults``; see mainsub_digits.py)."""
  return drivers.defaults("mainsub", recipe, **overrides)


def gradcount_section(**overrides) -> ml_collections.ConfigDict:
  """The `gradcount` section (``experiments.gradcount_run.defaults``)."""
  return drivers.defaults("gradcount", **overrides)


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


def cifar10_sgd(model: str, *, num_steps: int, batch_size: int,
                decay_steps: tuple) -> ml_collections.ConfigDict:
  """`model` (its default kwargs) on CIFAR-10 with the usual CIFAR recipe
  of He et al. 2016 ("Deep Residual Learning", Sec. 4.2): SGD momentum
  0.9, learning rate 0.1 divided by 10 at each of `decay_steps`, weight
  decay 1e-4, `num_steps` steps at batch `batch_size`; evaluation at batch
  1000. The caller sets the cadence (log, eval, checkpoints) and the
  method section."""
  config = get_config()
  config.dataset = "cifar10"
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = num_steps
  config.batch_size = batch_size
  config.eval_batch_size = 1000
  config.optimizer = "momentum"
  config.momentum = 0.9
  config.learning_rate = 0.1
  config.weight_decay = 1e-4
  config.lr_schedule = "step"
  config.lr_decay_steps = tuple(decay_steps)
  config.lr_decay_factor = 0.1
  return config


def lottery_resnet20_cifar10(reset: str) -> ml_collections.ConfigDict:
  """ResNet-20 on CIFAR-10 with global pruning of the convs by 20 % a
  level, 10 levels, rewinding to step 500 (`reset`: ``"rewind"`` (Frankle
  et al. 2019) or ``"lr_rewind"`` (Renda et al. 2020: the final weights,
  the schedule replayed from the rewind step)); :func:`cifar10_sgd` at
  batch 128 for 30K steps, decay at 20K and 25K."""
  config = cifar10_sgd("resnet20", num_steps=30_000, batch_size=128,
                       decay_steps=(20_000, 25_000))
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


def mainsub_nin(recipe: str, *, name: str, width: float,
                dropout: float) -> ml_collections.ConfigDict:
  """The XNOR NIN that main/subsidiary pruning prunes (binary inner
  layers, bias-free so that a removed filter outputs exactly 0), trained
  by Adam 1e-3 with coupled L2 1e-5 (as PyTorch's Adam), cross-entropy,
  no weight clip; with the `mainsub` section of `recipe` ("budget" or
  "released"; a ValueError naming config `name` otherwise). The caller
  sets the data, steps and schedule."""
  if recipe not in MAINSUB_RECIPES:
    raise ValueError(f"{name}: unknown recipe {recipe!r}; choose one of: "
                     f"{', '.join(MAINSUB_RECIPES)}")
  config = get_config()
  config.model = "nin"
  config.model_kwargs = ml_collections.ConfigDict({
      "variant": "xnor",
      "binary_first": False,
      "binary_last": False,
      "width": width,
      "dropout": dropout,
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-4,
      "use_bias": False,       # a removed filter outputs exactly 0
  })
  config.binarize = True
  config.loss = "cross_entropy"
  config.clip_weights = 0.0
  config.optimizer = "adam"          # + coupled L2 1e-5, as PyTorch Adam
  config.learning_rate = 1e-3
  config.weight_decay = 1e-5
  config.mainsub = mainsub_section(recipe)
  return config


def lottery_lenet(dataset: str, *, num_steps: int, levels: int,
                  control_seeds: int, log_every: int, eval_every: int,
                  checkpoint_every: int) -> ml_collections.ConfigDict:
  """LeNet-300-100 lottery tickets (Frankle & Carbin 2019, Fig. 2): Adam
  1.2e-3, batch 60, layer-wise rates 20 % (hidden) and 10 % (output) per
  level, reset to init; the caller's data, length and cadence."""
  config = get_config()
  config.dataset = dataset
  config.model = "lenet_300_100"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = num_steps
  config.batch_size = 60
  config.optimizer = "adam"
  config.learning_rate = 1.2e-3
  config.log_every = log_every
  config.eval_every = eval_every
  config.checkpoint_every = checkpoint_every
  config.keep_checkpoints = 1
  config.lottery = lottery_section(
      levels=levels, control_seeds=control_seeds,
      rates=ml_collections.ConfigDict({"default": 0.2, "Dense_2": 0.1}))
  return config


def binary_model_kwargs(shape: dict, **overrides
                        ) -> ml_collections.ConfigDict:
  """The `model_kwargs` of a BinaryConnect / BNN model (``binary_mlp``,
  ``bnn_cnn``) as the authors' released code builds it: `shape` (``hidden``
  or ``width``) first, then deterministic ``ste_sign`` kernels, real inputs
  (``input_quantizer`` None, a str placeholder so that the command line can
  set it), every layer binary, ReLU, BatchNorm momentum 0.9 and epsilon
  1e-4, biases; `overrides` replace fields or add them (e.g. dropout)."""
  kwargs = ml_collections.ConfigDict({
      **shape,
      "kernel_quantizer": "ste_sign",
      "input_quantizer": config_dict.placeholder(str),
      "binary_first": True,
      "binary_last": True,
      "activation": "relu",
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-4,
      "use_bias": True,
  })
  for field, value in overrides.items():
    kwargs[field] = value
  return kwargs


def repr_vanilla(dataset: str, *, num_steps: int, s1_steps: int,
                 s2_steps: int, cadence: int,
                 checkpoint_every: int) -> ml_collections.ConfigDict:
  """RePr on its 3-layer vanilla CNN (Prakash et al. 2019, Fig. 1): plain
  SGD (no momentum, no weight decay) at 0.05, batch 64, constant LR, 3
  cycles of S1 full / S2 sub-network steps; `cadence` is the log and
  eval interval."""
  config = get_config()
  config.dataset = dataset
  config.model = "vanilla_cnn"
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_steps = num_steps
  config.batch_size = 64
  config.optimizer = "sgd"
  config.learning_rate = 0.05
  config.momentum = 0.0
  config.lr_schedule = "constant"
  config.log_every = cadence
  config.eval_every = cadence
  config.checkpoint_every = checkpoint_every
  config.keep_checkpoints = 1
  config.repr = repr_section(s1_steps=s1_steps, s2_steps=s2_steps, cycles=3)
  return config


def binaryconnect_mlp(dataset: str, *, hidden: tuple, batch_size: int,
                      steps_per_epoch: int,
                      epochs: int) -> ml_collections.ConfigDict:
  """The BinaryConnect MLP recipe of the official code (Courbariaux et al.
  2015, `MatthieuCourbariaux/BinaryConnect` ``mnist.py``) at a size and
  length: every layer binary (deterministic sign, H = 1), BatchNorm after
  every layer including the output one, squared hinge loss, Adam with an
  exponential LR decay per epoch (1e-3 -> 3e-6 over `epochs`), Glorot
  per-layer LR scale, latent weights clipped to [-1, 1]; no pruning.
  ``binarize=False`` is the float twin, ``model_kwargs.kernel_quantizer=
  stochastic_sign`` stochastic BinaryConnect, ``input_quantizer=ste_sign``
  with ``activation=hard_tanh`` the BNN variant."""
  config = get_config()
  config.dataset = dataset
  config.model = "binary_mlp"
  config.model_kwargs = binary_model_kwargs({"hidden": tuple(hidden)})
  config.num_steps = steps_per_epoch * epochs
  config.batch_size = batch_size
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  # Lasagne's `LR *= LR_decay` after every epoch (exponential staircase).
  config.lr_schedule = "exponential"
  config.lr_decay_every = steps_per_epoch
  config.lr_decay_factor = (3e-6 / 1e-3) ** (1.0 / epochs)
  config.binarize = True          # False: the float twin
  config.loss = "squared_hinge"   # cross_entropy | squared_hinge
  config.clip_weights = 1.0       # H; 0.0 = off
  config.glorot_lr_scale = True
  config.grad_clip_norm = 0.0     # 0.0 = off
  config.pruning = pruning_section(method="none")  # a dense run
  return config
