"""Validation of run configs: one clear error naming the culprit field.

`validate(config)` raises `ConfigError("config.<field>: <problem>")` for the
first problem it finds; `launch.train` prints that one line and exits 2.
"""
from __future__ import annotations

import math

from experiments import data as data_lib
from experiments import drivers
from experiments import errors
from experiments import models as models_lib
from experiments import optimizers
from experiments import pruning

ConfigError = errors.ConfigError  # re-exported: every caller catches this


def _require(cond: bool, field: str, problem: str) -> None:
  if not cond:
    raise ConfigError(f"config.{field}: {problem}")


def _positive_int(config, field: str) -> None:
  value = config[field]
  _require(isinstance(value, int) and not isinstance(value, bool)
           and value > 0, field, f"must be a positive integer, got {value!r}")


def _choice(value, choices, field: str) -> None:
  _require(value in choices, field,
           f"unknown value {value!r}; choose one of: {', '.join(choices)}")


def validate(config, *, device_count: int | None = None) -> None:
  """Raises ConfigError for the first bad field of a training config.

  First the one-method-section rule (``drivers.section_of``), then every
  field.
  """
  drivers.section_of(config)
  _choice(config.dataset, tuple(data_lib.DATASETS), "dataset")
  _choice(config.model, tuple(models_lib.MODELS), "model")
  _choice(config.optimizer, optimizers.OPTIMIZERS, "optimizer")
  _choice(config.lr_schedule, optimizers.SCHEDULES, "lr_schedule")
  for field in ("num_steps", "batch_size", "eval_batch_size", "log_every",
                "eval_every", "checkpoint_every"):
    _positive_int(config, field)
  _require(isinstance(config.learning_rate, (int, float))
           and math.isfinite(config.learning_rate)
           and config.learning_rate > 0, "learning_rate",
           f"must be > 0 and finite, got {config.learning_rate!r}")
  _require(isinstance(config.seed, int) and not isinstance(config.seed, bool)
           and 0 <= config.seed < 2**31, "seed",
           f"must be an integer in [0, 2**31), got {config.seed!r}")
  keep = config.get("keep_checkpoints", 1)
  _require(isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1,
           "keep_checkpoints", f"must be an integer >= 1, got {keep!r}")
  warmup = config.get("warmup_steps", 0)
  _require(isinstance(warmup, int) and not isinstance(warmup, bool)
           and warmup >= 0, "warmup_steps",
           f"must be an integer >= 0, got {warmup!r}")
  _require(config.weight_decay >= 0, "weight_decay",
           f"must be >= 0, got {config.weight_decay!r}")
  if device_count is not None:
    _require(config.batch_size % device_count == 0, "batch_size",
             f"{config.batch_size} is not divisible by the device count "
             f"{device_count}")
  _validate_training_extras(config)
  if "lottery" in config:
    validate_lottery(config)
  if "benn" in config:
    validate_benn(config)
  if "mainsub" in config:
    validate_mainsub(config)
  if "gradcount" in config:
    validate_gradcount(config)
  if "repr" in config:
    validate_repr(config)
  if "filterprune" in config:
    validate_filterprune(config)
  if "fbs" in config or issubclass(models_lib.MODELS[config.model],
                                   models_lib.FBSCNN):
    validate_fbs(config)
  if "pruning" not in config:  # a dense plain run, or a driver's config
    return
  p = config.pruning
  _choice(p.method, pruning.METHODS, "pruning.method")
  if p.method == "none":
    return
  _choice(p.schedule, pruning.SCHEDULES, "pruning.schedule")
  _choice(p.scope, pruning.SCOPES, "pruning.scope")
  _require(0.0 <= p.target_sparsity < 1.0, "pruning.target_sparsity",
           f"must be in [0, 1), got {p.target_sparsity!r}")
  for name, s in dict(p.layer_sparsity or {}).items():
    _require(0.0 <= s < 1.0, f"pruning.layer_sparsity.{name}",
             f"must be in [0, 1), got {s!r}")
    _require(p.scope != "global", f"pruning.layer_sparsity.{name}",
             "per-layer sparsities need pruning.scope='layerwise'; global "
             "pruning sets one threshold over all layers and would ignore "
             "them")
  _require(0 <= p.begin_step < config.num_steps, "pruning.begin_step",
           f"must be in [0, num_steps={config.num_steps}), got "
           f"{p.begin_step!r}")
  if p.schedule == "gradual":
    _require(p.begin_step <= p.end_step < config.num_steps,
             "pruning.end_step", f"must be in [begin_step, num_steps), got "
             f"{p.end_step!r}")
    _require(isinstance(p.frequency, int) and p.frequency > 0,
             "pruning.frequency", f"must be a positive integer, got "
             f"{p.frequency!r}")


def validate_fbs(config) -> None:
  """FBS runs (`experiments.fbs`): an FBS model and an `fbs` section."""
  is_fbs = issubclass(models_lib.MODELS[config.model], models_lib.FBSCNN)
  _require(is_fbs, "model", f"must be an FBS model (fbs_cnn, fbs_digits_cnn) "
           f"with an fbs section, got {config.model!r}")
  _require("fbs" in config, "fbs", f"model {config.model!r} needs an fbs "
           "section (fbs.init_from = '' for a random start)")
  _require(pruning.method_of(config) == "none", "pruning.method",
           "must be 'none' in an FBS run (the gating is the pruning)")
  kw = config.model_kwargs
  d = kw.get("density", 1.0)
  _require(isinstance(d, (int, float)) and not isinstance(d, bool)
           and 0.0 < d <= 1.0, "model_kwargs.density",
           f"must be in (0, 1], got {d!r}")
  lam = kw.get("saliency_l1", 0.0)
  _require(isinstance(lam, (int, float)) and not isinstance(lam, bool)
           and lam >= 0, "model_kwargs.saliency_l1",
           f"must be >= 0, got {lam!r}")
  init_from = config.fbs.get("init_from", "")
  _require(isinstance(init_from, str), "fbs.init_from",
           f"must be a workdir path or '', got {init_from!r}")


RESET_MODES = ("init", "rewind", "lr_rewind", "finetune")
LOTTERY_CONTROLS = ("random_reinit", "random_prune")


def _validate_training_extras(config) -> None:
  """Optional fields of binary runs and ablations (absent = default)."""
  if "loss" in config:
    _choice(config.loss, ("cross_entropy", "squared_hinge"), "loss")
  if "lr_decay_every" in config:
    _positive_int(config, "lr_decay_every")
  for field in ("clip_weights", "grad_clip_norm"):
    if field in config:
      _require(config[field] >= 0, field,
               f"must be >= 0 (0 = off), got {config[field]!r}")


def validate_lottery(config) -> None:
  """The `lottery` section (called by `validate` when it is present)."""
  lc = config.lottery
  _require(pruning.method_of(config) == "none", "pruning.method",
           "must be 'none' in a lottery run (the levels prune)")
  _require(isinstance(lc.levels, int) and not isinstance(lc.levels, bool)
           and lc.levels >= 1, "lottery.levels",
           f"must be an integer >= 1, got {lc.levels!r}")
  _choice(lc.reset, RESET_MODES, "lottery.reset")
  _require(isinstance(lc.rewind_step, int) and
           0 <= lc.rewind_step < config.num_steps, "lottery.rewind_step",
           f"must be in [0, num_steps={config.num_steps}), got "
           f"{lc.rewind_step!r}")
  _choice(lc.scope, ("layerwise", "global"), "lottery.scope")
  if lc.scope == "layerwise":
    for name, r in dict(lc.rates).items():
      _require(0.0 <= r < 1.0, f"lottery.rates.{name}",
               f"must be in [0, 1), got {r!r}")
  else:
    _require(0.0 < lc.global_rate < 1.0, "lottery.global_rate",
             f"must be in (0, 1), got {lc.global_rate!r}")
  _require(lc.finetune_lr > 0, "lottery.finetune_lr",
           f"must be > 0, got {lc.finetune_lr!r}")
  _choice(lc.data_order, ("fixed", "per_level"), "lottery.data_order")
  for c in lc.controls:
    _choice(c, LOTTERY_CONTROLS, "lottery.controls")
  _require(isinstance(lc.control_seeds, int) and lc.control_seeds >= 1,
           "lottery.control_seeds",
           f"must be an integer >= 1, got {lc.control_seeds!r}")
  for lv in lc.control_levels:
    _require(1 <= int(lv) <= lc.levels, "lottery.control_levels",
             f"level {lv} is not in 1..{lc.levels}")
  for lv in lc.instability_levels:
    _require(0 <= int(lv) <= lc.levels, "lottery.instability_levels",
             f"level {lv} is not in 0..{lc.levels}")
  _require(lc.instability_points >= 2, "lottery.instability_points",
           f"must be >= 2, got {lc.instability_points!r}")
  _choice(lc.trunk, ("train", "existing"), "lottery.trunk")


GRADCOUNT_METHODS = ("gradcount", "l1", "magnitude")
GRADCOUNT_REDUNDANCY = ("max_cosine", "orthogonality")


def validate_gradcount(config) -> None:
  """The `gradcount` section (experiments.gradcount_run)."""
  gc = config.gradcount
  _require("lottery" not in config, "gradcount",
           "a run has either a lottery or a gradcount section, not both")
  _require(pruning.method_of(config) == "none", "pruning.method",
           "must be 'none' in a gradcount run (its events prune)")
  _choice(gc.method, GRADCOUNT_METHODS, "gradcount.method")
  _choice(gc.redundancy, GRADCOUNT_REDUNDANCY, "gradcount.redundancy")
  for field in ("joint_steps", "window", "redundancy_every", "min_keep"):
    v = gc[field]
    _require(isinstance(v, int) and not isinstance(v, bool) and v > 0,
             f"gradcount.{field}", f"must be a positive integer, got {v!r}")
  w = gc.warmup_steps
  _require(isinstance(w, int) and not isinstance(w, bool) and w >= 0,
           "gradcount.warmup_steps", f"must be an integer >= 0, got {w!r}")
  _require(w + gc.joint_steps <= config.num_steps, "gradcount.joint_steps",
           f"warmup_steps + joint_steps = {w + gc.joint_steps} exceeds "
           f"num_steps={config.num_steps}")
  _require(gc.redundancy_every % gc.window == 0, "gradcount.redundancy_every",
           f"must be a multiple of window={gc.window}, got "
           f"{gc.redundancy_every!r}")
  _require(gc.eps > 0, "gradcount.eps", f"must be > 0, got {gc.eps!r}")
  _require(gc.lam >= 0, "gradcount.lam", f"must be >= 0, got {gc.lam!r}")
  for field in ("rho", "prune_budget", "filter_budget"):
    _require(0.0 <= gc[field] <= 1.0, f"gradcount.{field}",
             f"must be in [0, 1], got {gc[field]!r}")
  _require(0.0 < gc.s_max <= 1.0, "gradcount.s_max",
           f"must be in (0, 1], got {gc.s_max!r}")
  _require(0.0 <= gc.target_sparsity < 1.0, "gradcount.target_sparsity",
           f"must be in [0, 1), got {gc.target_sparsity!r}")
  if gc.method != "gradcount":
    _require(gc.target_sparsity > 0 or bool(gc.get("match_workdir", "")),
             "gradcount.target_sparsity",
             f"the {gc.method} control needs target_sparsity > 0 or "
             "gradcount.match_workdir (a finished gradcount run)")


REPR_RANKINGS = ("orthogonality", "magnitude", "random")
REPR_REINITS = ("orthogonal", "random")


def validate_repr(config) -> None:
  """The `repr` section (called by `validate` when it is present)."""
  rc = config.repr
  _require(pruning.method_of(config) == "none", "pruning.method",
           "must be 'none' in a RePr run (the cycles drop filters)")
  for field in ("s1_steps", "s2_steps"):
    v = rc[field]
    _require(isinstance(v, int) and not isinstance(v, bool) and v > 0,
             f"repr.{field}", f"must be a positive integer, got {v!r}")
  _require(isinstance(rc.cycles, int) and not isinstance(rc.cycles, bool)
           and rc.cycles >= 0, "repr.cycles",
           f"must be an integer >= 0, got {rc.cycles!r}")
  _require(rc.cycles * (rc.s1_steps + rc.s2_steps) <= config.num_steps,
           "repr.cycles", f"{rc.cycles} cycles of s1_steps + s2_steps = "
           f"{rc.s1_steps + rc.s2_steps} steps exceed num_steps="
           f"{config.num_steps}")
  _require(0.0 < rc.drop_fraction < 1.0, "repr.drop_fraction",
           f"must be in (0, 1), got {rc.drop_fraction!r}")
  _choice(rc.ranking, REPR_RANKINGS, "repr.ranking")
  _choice(rc.reinit, REPR_REINITS, "repr.reinit")
  _require(isinstance(rc.exclude_first, bool), "repr.exclude_first",
           f"must be True or False, got {rc.exclude_first!r}")
  exclude = rc.get("exclude", ())
  _require(isinstance(exclude, (tuple, list)) and all(
      isinstance(p, str) and p for p in exclude), "repr.exclude",
           f"must be a tuple of layer names, prefixes or globs, got "
           f"{exclude!r}")


FILTERPRUNE_METHODS = ("fpgm", "slimming")
FPGM_CRITERIA = ("geometric_median", "l2", "l1")
FPGM_SOFT_VARIANTS = ("paper", "released_cifar")


def validate_filterprune(config) -> None:
  """The `filterprune` section (FPGM, Network Slimming, scratch baselines)."""
  fp = config.filterprune
  _require(pruning.method_of(config) == "none", "pruning.method",
           "must be 'none' in a filterprune run (the section prunes)")
  _choice(fp.method, FILTERPRUNE_METHODS, "filterprune.method")
  for field in ("layers", "exclude"):
    v = fp[field]
    _require(isinstance(v, (tuple, list)) and all(isinstance(p, str)
                                                  for p in v),
             f"filterprune.{field}", f"must be a tuple of layer names or "
             f"globs, got {v!r}")
  if fp.method == "fpgm":
    _require(0.0 <= fp.rate < 1.0, "filterprune.rate",
             f"must be in [0, 1), got {fp.rate!r}")
    for name, r in dict(fp.layer_rates or {}).items():
      _require(0.0 <= r < 1.0, f"filterprune.layer_rates.{name}",
               f"must be in [0, 1), got {r!r}")
    _require(0.0 < fp.rate_norm <= 1.0, "filterprune.rate_norm",
             f"must be in (0, 1], got {fp.rate_norm!r}")
    _choice(fp.criterion, FPGM_CRITERIA, "filterprune.criterion")
    _require(isinstance(fp.prune_every, int) and fp.prune_every >= 0,
             "filterprune.prune_every",
             f"must be an integer >= 0 (0 = one epoch), got "
             f"{fp.prune_every!r}")
    _choice(fp.get("soft_variant", "paper"), FPGM_SOFT_VARIANTS,
            "filterprune.soft_variant")
  else:
    _require(fp.get("soft_variant", "paper") == "paper",
             "filterprune.soft_variant",
             "applies to FPGM's soft pruning only; slimming would ignore it")
    _require(fp.l1 >= 0, "filterprune.l1", f"must be >= 0, got {fp.l1!r}")
    _require(0.0 <= fp.prune_fraction < 1.0, "filterprune.prune_fraction",
             f"must be in [0, 1), got {fp.prune_fraction!r}")
    _require(isinstance(fp.finetune_steps, int)
             and fp.finetune_steps > 0, "filterprune.finetune_steps",
             f"must be a positive integer, got {fp.finetune_steps!r}")
    _require(fp.finetune_lr >= 0, "filterprune.finetune_lr",
             f"must be >= 0 (0 = the run's schedule), got "
             f"{fp.finetune_lr!r}")
  _require(fp.scratch_b_max_factor >= 0, "filterprune.scratch_b_max_factor",
           f"must be >= 0 (0 = no cap), got {fp.scratch_b_max_factor!r}")


def layer_matches(pattern: str, name: str) -> bool:
  """A layer selector: an exact leaf name, a path prefix ("BasicBlock_3")
  or a glob over the leaf name ("*Conv_*")."""
  import fnmatch  # pylint: disable=g-import-not-at-top
  key = pattern.rstrip("/")
  return (name == key or name.startswith(key + "/")
          or fnmatch.fnmatchcase(name, pattern))


def validate_lottery_layers(config, mask) -> None:
  """Every rate (and global include) names a layer that exists."""
  import sparsity  # pylint: disable=g-import-not-at-top
  names = [n for n, *_ in sparsity.masked_leaves(mask)]

  def matches(key: str) -> bool:
    key = key.rstrip("/")
    return any(n == key or n.startswith(key + "/") for n in names)

  lc = config.lottery
  if lc.scope == "layerwise":
    for key in dict(lc.rates):
      if key != "default":
        _require(matches(key), f"lottery.rates.{key}",
                 f"no prunable layer is named {key!r} (layers: "
                 f"{', '.join(names)})")
    if "default" not in dict(lc.rates):
      unmatched = [n for n in names if not any(
          n == k or n.startswith(k.rstrip("/") + "/") for k in dict(lc.rates))]
      _require(not unmatched, "lottery.rates",
               f"no rate for {', '.join(unmatched)}; add a 'default'")
  for key in lc.global_include:
    _require(any(layer_matches(key, n) for n in names),
             "lottery.global_include",
             f"no prunable layer is named {key!r} (layers: "
             f"{', '.join(names)})")


BENN_ENSEMBLES = ("bagging", "boost_a", "boost_b", "boost_c", "boost_d")


def validate_benn(config) -> None:
  """The `benn` section (BENN ensembles, `experiments.benn_run`)."""
  b = config.benn
  _require(pruning.method_of(config) == "none", "pruning.method",
           "must be 'none' in a BENN run")
  _require(isinstance(b.members, int) and not isinstance(b.members, bool)
           and b.members >= 1, "benn.members",
           f"must be an integer >= 1, got {b.members!r}")
  _choice(b.ensemble, BENN_ENSEMBLES, "benn.ensemble")
  _choice(b.mode, ("independent", "sequential"), "benn.mode")
  _choice(b.parallel, ("vmap", "loop"), "benn.parallel")
  _choice(b.soft_vote, ("scores", "probabilities"), "benn.soft_vote")
  _require(b.shrinkage > 0, "benn.shrinkage",
           f"must be > 0, got {b.shrinkage!r}")
  _require(b.c_scale >= 0, "benn.c_scale",
           f"must be >= 0 (0 = N / 10), got {b.c_scale!r}")


def validate_mainsub(config) -> None:
  """The `mainsub` section (main/subsidiary pruning,
  `experiments.mainsub_run`)."""
  ms = config.mainsub
  _require(config.model == "nin", "model",
           f"must be 'nin' in a main/subsidiary run, got {config.model!r}")
  _require(config.get("binarize", True) is not False, "binarize",
           "must be True in a main/subsidiary run (it prunes binary layers)")
  _require(config.model_kwargs.get("use_bias", True) is False,
           "model_kwargs.use_bias",
           "must be False in a main/subsidiary run (a removed filter must "
           "output exactly 0)")
  _require(pruning.method_of(config) == "none", "pruning.method",
           "must be 'none' in a main/subsidiary run")
  for field in ("sub_steps", "finetune_steps"):
    v = ms[field]
    _require(isinstance(v, int) and not isinstance(v, bool) and v > 0,
             f"mainsub.{field}", f"must be a positive integer, got {v!r}")
  _require(ms.alpha >= 0, "mainsub.alpha", f"must be >= 0, got {ms.alpha!r}")
  _choice(ms.penalty, ("count", "l0"), "mainsub.penalty")
  for field in ("sub_lr", "finetune_lr"):
    _require(ms[field] > 0, f"mainsub.{field}",
             f"must be > 0, got {ms[field]!r}")
  for c in ms.controls:
    _choice(c, ("greedy", "random", "learned"), "mainsub.controls")
  _choice(ms.get("sub_optimizer", "adam"), ("adam", "sgd"),
          "mainsub.sub_optimizer")
  for field in ("gate_init", "budget"):
    v = ms.get(field, 0.0)
    _require(isinstance(v, (int, float)) and not isinstance(v, bool)
             and 0 <= v < 1, f"mainsub.{field}",
             f"must be a number in [0, 1), got {v!r}")
  _require(not (ms.get("budget", 0.0) > 0 and ms.alpha > 0), "mainsub.alpha",
           f"must be 0 with a budget (mainsub.budget = {ms.get('budget')}: "
           "the budget, not a penalty, sets how many filters go), got "
           f"{ms.alpha!r}")


def validate_data(config, dataset) -> None:
  """The check that needs the loaded dataset (``ConfigError``): the
  training batch fits the train split. (A huge ``eval_batch_size`` needs
  no error: the engine caps the evaluation batch at the largest split.)"""
  train = len(dataset.splits["train"])
  _require(config.batch_size <= train, "batch_size",
           f"{config.batch_size} is larger than the train split "
           f"({train} examples)")


def model_error(config, error: BaseException) -> ConfigError:
  """The one-line error for a model that its settings cannot build (a
  negative width, a wrong type in ``config.model_kwargs``)."""
  text = (str(error).splitlines() or [""])[0][:200]
  return ConfigError(
      f"config.model_kwargs: model {config.model!r} cannot be built with "
      f"{dict(config.model_kwargs)}: {type(error).__name__}: {text}")

