"""The main/subsidiary driver: bottom-up filter pruning of a binary NIN.

`run(config, workdir)` is what `launch.train` calls for a config with a
`mainsub` section (`sub_steps`, `finetune_steps`, `alpha`, `penalty` count
| l0, `sub_optimizer` adam | sgd, `sub_lr`, `gate_init`, `budget`,
`finetune_lr`, `layers` (empty: every binary conv), `controls`). Every
stage is a phase (`engine.train_phase`) in its own directory, done when its
`result.json` exists:

    WORKDIR/main/               the main binary network, trained dense for
                                `num_steps` with the run's optimizer
    WORKDIR/layer_NN_sub/       subsidiary stage of binary layer N: only its
                                filter gate M trains (CE + alpha * penalty,
                                `sub_lr`, `sub_steps`); weights, biases and
                                earlier gates and BN statistics frozen
    WORKDIR/layer_NN_main/      main stage: the gate is binarized, baked
                                into the kernel (removed filters = 0, kept
                                at 0 by the masked optimizer) and all
                                weights fine-tune (`finetune_lr`,
                                `finetune_steps`)
    WORKDIR/controls/<name>/    greedy (smallest mean |w| removed) and
                                random filter masks with the learned
                                per-layer counts, and `learned` (the learned
                                keep vectors themselves), applied to main/'s
                                weights at once and fine-tuned for N x
                                `finetune_steps` (the learned run's total
                                main-stage budget); `learned` separates the
                                selection from the layer-wise schedule
    WORKDIR/scratch_e/, scratch_b/  with `mainsub.scratch`: the final
                                mask trained from a fresh init for
                                `num_steps` and for the same MACs
                                (`experiments.scratch`, Liu et al. 2019)
    WORKDIR/summary.json, mainsub.md

The gate is `keep = (sign(M) + 1) / 2` with the STE (`binary.
subsidiary_keep`), multiplying the layer's output channels; the penalty
(`binary.add_mask_penalty`) is alpha x the number of kept filters through
the same STE (`count`, ours), or the released code's L0 norm of M (`l0`,
zero gradient). The gates start at U(-1e-4, 1e-4) + `gate_init` and
train with Adam or plain SGD (`sub_optimizer`); with `budget` > 0 the
gates' update is followed by `binary.mask_budget`, which keeps exactly the
top C - round(budget x C x min(1, t / (sub_steps / 2))) gates of each layer
after update t, at least one (the budget recipe; `alpha` must then be 0;
the update count is optimizer state, so a resumed stage continues the
anneal). Layers are pruned bottom-up, one subsidiary and one main stage
each; a stage's start is a pure function of the previous stage's
checkpoint, so a killed run resumes in the stage it was in.

Departure from the released code (documented): the main stage fine-tunes
every weight (the code enables the weights of layers >= l), with a fresh
Adam state per stage.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import binary
from experiments import config_check
from experiments import engine as engine_lib
from experiments import models as models_lib
from experiments import optimizers
from experiments import runs
from experiments import scratch
from experiments import shrink
from experiments import structured
import sparsity


def _main_tx(config):
  """The main network's masked optimizer (also the scratch baselines')."""
  return sparsity.masked(optimizers.make_optimizer(
      config, binary_include=models_lib.is_binary_kernel))


def gate_optimizer(ms) -> optax.GradientTransformation:
  """The subsidiary gates' optimizer: penalty, then Adam or SGD at
  `sub_lr`, then (with `budget` > 0) the projection onto the annealed
  per-layer budget (over the first half of `sub_steps`)."""
  opt = (optax.adam if ms.get("sub_optimizer", "adam") == "adam"
         else optax.sgd)(float(ms.sub_lr))
  parts = [binary.add_mask_penalty(float(ms.alpha), ms.penalty), opt]
  budget = float(ms.get("budget", 0.0))
  if budget > 0:
    parts.append(binary.mask_budget(budget, max(1, int(ms.sub_steps) // 2)))
  return optax.chain(*parts)


class Driver:
  """One main/subsidiary run: engines, stage starts and the layer loop."""

  def __init__(self, config, workdir: str):
    self.config, self.workdir = config, workdir
    self.ms = config.mainsub
    run0 = engine_lib.build(config)
    self.model = run0.model
    self.tx_main = _main_tx(config)
    self.tx_ft = sparsity.masked(optimizers.make_optimizer(
        config, constant_lr=float(self.ms.finetune_lr),
        binary_include=models_lib.is_binary_kernel))

    def init_state(rng):
      s = run0.init_state(rng)
      return s.replace(opt_state=self.tx_main.init(s.params))

    self.engine = engine_lib.Engine(
        config, run=engine_lib.Run(run0.dataset, run0.model, self.tx_main,
                              init_state))
    names = models_lib.binary_conv_names(self.model)
    chosen = list(self.ms.layers) or names
    for name in chosen:
      if name not in names:
        raise config_check.ConfigError(
            f"config.mainsub.layers: {name!r} is not a binary conv of the "
            f"model (binary convs: {', '.join(names)})")
    self.layers = [n for n in names if n in chosen]  # bottom-up

  # -- directories and finished states ---------------------------------------
  def d(self, *parts) -> str:
    return os.path.join(self.workdir, *parts)

  def sub_dir(self, i: int) -> str:
    return self.d(f"layer_{i:02d}_sub")

  def main_dir(self, i: int) -> str:
    return self.d(f"layer_{i:02d}_main")

  def final_state(self, d: str, engine=None):
    _, restored = (engine or self.engine).restore(d)
    if restored is None:
      raise FileNotFoundError(f"no checkpoint in {d}")
    return restored[0]

  def test(self, engine, state) -> dict:
    with jax.set_mesh(engine.mesh):
      return engine.evaluate(state.params, state.batch_stats, "test")

  # -- the subsidiary stage ---------------------------------------------------
  def sub_engine(self, name: str):
    model = self.model.clone(subsidiary=(name,), frozen_bn=True)
    labels = lambda p: jax.tree_util.tree_map_with_path(  # pylint: disable=g-long-lambda
        lambda path, _: "mask" if binary.is_subsidiary(path) else "frozen", p)
    tx = optax.with_extra_args_support(optax.multi_transform(
        {"mask": gate_optimizer(self.ms), "frozen": optax.set_to_zero()},
        labels))
    ds = self.engine.dataset

    def init_state(rng):
      k_init, k_state = jax.random.split(rng)
      v = model.init(k_init, jnp.zeros((1, *ds.input_shape)), train=False)
      params = v["params"]
      return engine_lib.TrainState(
          step=jnp.zeros((), jnp.int32), params=params,
          batch_stats=v.get("batch_stats", {}), opt_state=tx.init(params),
          mask=sparsity.create_mask(params), rng=k_state)

    return engine_lib.Engine(self.config, run=engine_lib.Run(ds, model, tx,
                                                   init_state))

  def prev_state(self, i: int):
    return self.final_state(self.d("main") if i == 0 else self.main_dir(i - 1))

  def run_sub(self, i: int, name: str) -> dict:
    d = self.sub_dir(i)
    done = runs.read_result(d)
    if done is not None:
      return done
    eng = self.sub_engine(name)

    def start():
      prev = self.prev_state(i)
      fresh = eng.run.init_state(jax.random.fold_in(
          jax.random.PRNGKey(self.config.seed), 1000 + i))
      key = f"{name}{binary.SUBSIDIARY_SUFFIX}"
      # U(-1e-4, 1e-4) (the released init) shifted by `gate_init`.
      gate = fresh.params[key] + float(self.ms.get("gate_init", 0.0))
      params = {**prev.params, key: gate}
      mask = {**prev.mask, key: None}
      return fresh.replace(params=params, batch_stats=prev.batch_stats,
                           opt_state=eng.run.tx.init(params), mask=mask,
                           rng=prev.rng)

    state = engine_lib.train_phase(
        eng, d, start, end_step=int(self.ms.sub_steps),
        data_seed=self.config.seed, tx=eng.run.tx,
        eval_splits=("validation",),
        label=f"Subsidiary stage {i + 1}/{len(self.layers)} ({name})")
    m = np.asarray(state.params[f"{name}_subsidiary"])
    keep = m >= 0
    out = {"layer": name, "index": i, "filters": int(keep.size),
           "kept": int(keep.sum()), "kept_fraction": float(keep.mean()),
           "keep": keep.astype(int).tolist(),
           "sub_test_accuracy": self.test(eng, state)["accuracy"]}
    runs.write_result(d, out)
    return out

  # -- the main stage ---------------------------------------------------------
  def apply_keeps(self, state, keeps: dict):
    """`state` with filter keep vectors baked into kernels and masks, the
    subsidiary gates dropped and a fresh fine-tuning optimizer state."""
    params = {k: v for k, v in state.params.items()
              if not k.endswith(binary.SUBSIDIARY_SUFFIX)}
    mask = {k: v for k, v in state.mask.items() if k in params}
    for name, keep in keeps.items():
      kernel = params[name]["kernel"]
      fm = jnp.asarray(binary.filter_mask(kernel, keep))
      old = mask[name]["kernel"]
      mask = {**mask, name: {**mask[name], "kernel": fm if old is None
                             else jnp.logical_and(old, fm)}}
      params = {**params, name: {**params[name], "kernel":
                                 binary.bake_filter_keep(kernel, keep)}}
    return state.replace(step=jnp.zeros((), jnp.int32), params=params,
                         mask=mask, opt_state=self.tx_ft.init(params))

  def run_main(self, i: int, name: str, sub: dict) -> dict:
    d = self.main_dir(i)
    done = runs.read_result(d)
    if done is not None:
      return done

    def start():
      s = self.final_state(self.sub_dir(i), self.sub_engine(name))
      return self.apply_keeps(s, {name: np.asarray(sub["keep"], bool)})

    state = engine_lib.train_phase(
        self.engine, d, start, end_step=int(self.ms.finetune_steps),
        data_seed=self.config.seed, tx=self.tx_ft,
        eval_splits=("validation",),
        label=f"Main stage {i + 1}/{len(self.layers)} ({name})")
    test = self.test(self.engine, state)
    out = {"layer": name, "index": i, "test_accuracy": test["accuracy"],
           "test_loss": test["loss"], "end_step": int(state.step)}
    runs.write_result(d, out)
    return out

  # -- controls ---------------------------------------------------------------
  def control_keeps(self, name: str, subs: list) -> dict:
    main = jax.device_get(self.final_state(self.d("main")).params)
    keeps = {}
    for j, s in enumerate(subs):
      kernel = main[s["layer"]]["kernel"]
      if name == "learned":
        keeps[s["layer"]] = np.asarray(s["keep"], bool)
      elif name == "greedy":
        keeps[s["layer"]] = binary.greedy_filter_keep(kernel, s["kept"])
      else:
        seed = int(np.random.default_rng([self.config.seed, 77, j]).integers(
            0, 2**31 - 1))
        keeps[s["layer"]] = binary.random_filter_keep(seed, s["filters"],
                                                      s["kept"])
    return keeps

  def run_control(self, name: str, subs: list) -> dict:
    d = self.d("controls", name)
    done = runs.read_result(d)
    if done is not None:
      return done
    keeps = self.control_keeps(name, subs)
    start = lambda: self.apply_keeps(self.final_state(self.d("main")), keeps)
    before = self.test(self.engine, self.engine.place(start()))
    state = engine_lib.train_phase(
        self.engine, d, start,
        end_step=int(self.ms.finetune_steps) * len(subs),
        data_seed=self.config.seed, tx=self.tx_ft,
        eval_splits=("validation",), label=f"Control {name}")
    test = self.test(self.engine, state)
    kept = sum(int(k.sum()) for k in keeps.values())
    total = sum(int(k.size) for k in keeps.values())
    out = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
           "test_accuracy_before_finetune": before["accuracy"],
           "filters_remaining_fraction": kept / max(total, 1),
           "kept": {k: int(v.sum()) for k, v in keeps.items()},
           "end_step": int(state.step)}
    runs.write_result(d, out)
    return out

  # -- the loop ---------------------------------------------------------------
  def run(self) -> dict:
    d = self.d("main")
    main = runs.read_result(d)
    if main is None:
      state = engine_lib.train_phase(
          self.engine, d,
          lambda: self.engine.init(jax.random.PRNGKey(self.config.seed)),
          end_step=self.config.num_steps, data_seed=self.config.seed,
          eval_splits=("validation",), label="Main network (dense)")
      test = self.test(self.engine, state)
      main = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
              "end_step": int(state.step)}
      runs.write_result(d, main)
    subs, mains = [], []
    for i, name in enumerate(self.layers):
      subs.append(self.run_sub(i, name))
      mains.append(self.run_main(i, name, subs[-1]))
    controls = {c: self.run_control(c, subs) for c in self.ms.controls}
    final = self.final_state(self.main_dir(len(self.layers) - 1))
    macs = self.pruned_macs(final)
    baselines = None
    if self.ms.get("scratch", False):
      baselines = scratch.run_baselines(
          self.engine, self.workdir, mask=final.mask,
          steps=int(self.config.num_steps),
          macs_fraction=macs["macs_fraction"],
          make_tx=_main_tx,
          max_factor=float(self.ms.get("scratch_b_max_factor", 0.0)),
          tx_e=self.tx_main)
    kept = sum(s["kept"] for s in subs)
    total = sum(s["filters"] for s in subs)
    last = mains[-1]
    out = {
        "dataset": self.config.dataset,
        "model": self.config.model,
        "mainsub": {"alpha": float(self.ms.alpha), "penalty": self.ms.penalty,
                    "gate_init": float(self.ms.get("gate_init", 0.0)),
                    "sub_optimizer": self.ms.get("sub_optimizer", "adam"),
                    "sub_lr": float(self.ms.sub_lr),
                    "budget": float(self.ms.get("budget", 0.0)),
                    "layers": self.layers},
        "main": main,
        "final": {"test_accuracy": last["test_accuracy"],
                  "test_loss": last["test_loss"],
                  "filters_remaining_fraction": kept / total,
                  "macs_fraction": macs["macs_fraction"],
                  "step": last["end_step"]},
        "filters_remaining_fraction": kept / total,
        "layers": [{"name": s["layer"], "filters": s["filters"],
                    "kept": s["kept"], "kept_fraction": s["kept_fraction"],
                    "sub_test_accuracy": s["sub_test_accuracy"],
                    "test_accuracy": m["test_accuracy"]}
                   for s, m in zip(subs, mains)],
        "controls": controls,
        "num_classes": self.engine.dataset.num_classes,
        "devices": jax.device_count(),
    }
    if baselines is not None:
      out["baselines"] = baselines
    input_shape = self.engine.dataset.input_shape
    out["shrunk"] = shrink.state_shrunk_size(
        models_lib.layer_list(self.model, input_shape), final,
        input_shape=input_shape)
    return out

  def pruned_macs(self, state) -> dict:
    """MACs of the final network (removed filters; the BatchNorm after a
    removed filter is not masked here, so the next layer reads every
    channel)."""
    layers = models_lib.layer_list(self.model,
                                   self.engine.dataset.input_shape)
    alive = sparsity.filters_of(jax.device_get(state.mask),
                                jax.device_get(state.params))
    return structured.structured_macs(
        layers, {n: np.asarray(alive[n]) for n in self.layers},
        input_shape=self.engine.dataset.input_shape, masked_bn=False)


# ------------------------------------------------------------- section --
RECIPES = ("budget", "released")
CONTROLS = ("greedy", "random", "learned")
SUB_OPTIMIZERS = ("adam", "sgd")


def defaults(recipe: str = "budget") -> ml_collections.ConfigDict:
  """The `mainsub` fields of a recipe: "budget" (a per-layer removal
  budget, annealed) or "released" (justimyhxu/MainSubsidaryBNN's settings);
  see ``experiments/configs/mainsub_digits.py``."""
  if recipe not in RECIPES:
    raise ValueError(f"unknown mainsub recipe {recipe!r}; choose one of: "
                     f"{', '.join(RECIPES)}")
  ms = ml_collections.ConfigDict()
  ms.sub_steps = 100          # per layer
  ms.finetune_steps = 100     # per layer
  ms.finetune_lr = 1e-4
  ms.penalty = "count"        # binary.MAINSUB_PENALTIES: count (ours) | l0
                              # (released code)
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
  ms.controls = CONTROLS
  ms.scratch = True           # Scratch-E / Scratch-B baselines
  ms.scratch_b_max_factor = 2.0  # cap on Scratch-B (0: none)
  return ms


def validate(config) -> None:
  """The `mainsub` section and what it needs of the model; ``ConfigError``
  naming the first bad field."""
  require, choice = config_check.require, config_check.choice
  ms = config.mainsub
  require(config.model == "nin", "model",
          f"must be 'nin' in a main/subsidiary run, got {config.model!r}")
  require(config.get("binarize", True) is not False, "binarize",
          "must be True in a main/subsidiary run (it prunes binary layers)")
  require(config.model_kwargs.get("use_bias", True) is False,
          "model_kwargs.use_bias",
          "must be False in a main/subsidiary run (a removed filter must "
          "output exactly 0)")
  for field in ("sub_steps", "finetune_steps"):
    config_check.positive_int(config, f"mainsub.{field}")
  require(ms.alpha >= 0, "mainsub.alpha", f"must be >= 0, got {ms.alpha!r}")
  choice(ms.penalty, binary.MAINSUB_PENALTIES, "mainsub.penalty")
  for field in ("sub_lr", "finetune_lr"):
    require(ms[field] > 0, f"mainsub.{field}",
            f"must be > 0, got {ms[field]!r}")
  for c in ms.controls:
    choice(c, CONTROLS, "mainsub.controls")
  choice(ms.get("sub_optimizer", "adam"), SUB_OPTIMIZERS,
         "mainsub.sub_optimizer")
  for field in ("gate_init", "budget"):
    v = ms.get(field, 0.0)
    require(isinstance(v, (int, float)) and not isinstance(v, bool)
            and 0 <= v < 1, f"mainsub.{field}",
            f"must be a number in [0, 1), got {v!r}")
  require(not (ms.get("budget", 0.0) > 0 and ms.alpha > 0), "mainsub.alpha",
          f"must be 0 with a budget (mainsub.budget = {ms.get('budget')}: "
          "the budget, not a penalty, sets how many filters go), got "
          f"{ms.alpha!r}")


DEPLOY_OPTIONS = ()


def deployable(config, workdir: str):
  """The network the summary reports: the last main stage
  (``RUN/layer_NN_main``), every pruned layer's keep vector baked into
  its kernel (removed filters exactly 0, held by the mask); the gates
  are gone, so it is the run's own model."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  summary = drivers.finished_summary(workdir)
  driver = Driver(config, workdir)
  last = len(driver.layers) - 1
  state = driver.final_state(driver.main_dir(last))
  return drivers.Deployable(config, state, {
      "result": f"the last main stage (RUN/layer_{last:02d}_main)",
      "test_accuracy": summary["final"]["test_accuracy"]})


def format_table(summary: dict, markdown: bool = False) -> str:
  """Per-layer kept filters and accuracy, then the controls."""
  rows = [("layer", "kept", "kept %", "acc after sub", "acc after main")]
  for r in summary["layers"]:
    rows.append((r["name"], f"{r['kept']}/{r['filters']}",
                 f"{100 * r['kept_fraction']:.1f}",
                 f"{r['sub_test_accuracy']:.4f}", f"{r['test_accuracy']:.4f}"))
  head = (f"main/subsidiary: unpruned {summary['main']['test_accuracy']:.4f}"
          f" -> {summary['final']['test_accuracy']:.4f} with "
          f"{100 * summary['filters_remaining_fraction']:.1f} % of binary "
          "filters")
  ctrl = [f"control {k}: {v['test_accuracy']:.4f} (before fine-tuning "
          f"{v['test_accuracy_before_finetune']:.4f})"
          for k, v in summary["controls"].items()]
  ctrl += [f"{k}: {v['test_accuracy']:.4f} ({v['steps']} steps from a "
           "fresh init)" for k, v in summary.get("baselines", {}).items()]
  if markdown:
    lines = [f"**{head}**", "", "| " + " | ".join(rows[0]) + " |",
             "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines + [""] + [f"* {c}" for c in ctrl]) + "\n"
  return "\n".join([head] + ["  ".join(f"{x:>14}" for x in r)
                             for r in rows] + ctrl)


def run(config, workdir: str) -> dict:
  """Runs (or resumes) the main/subsidiary run in `workdir`.

  Raises `config_check.ConfigError` for a bad config or a workdir of
  another config (nothing is written then).
  """
  summary = runs.open_run(config, workdir, create_now=False)
  if summary is None:
    driver = Driver(config, workdir)  # may refuse mainsub.layers
    runs.create(config, workdir)
    summary = driver.run()
    runs.write_text(os.path.join(workdir, "mainsub.md"),
                    format_table(summary, markdown=True))
    runs.write_summary(workdir, summary)  # last: marks the run finished
  if runs.is_main():
    print(format_table(summary), flush=True)
  return summary
