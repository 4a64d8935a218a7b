"""The plain run (`run(config, workdir)`) and the summaries drivers share.

Sections, top to bottom: the engine's names re-exported, the summary
(`base_summary`, `format_result`, `latent_window_stats`,
`segmentation_summary`, `model_summary`), the plain run's result
(`deployable`), its `pruning` section (`defaults`, `validate`: a driver's
section protocol, ``experiments.drivers``) and the plain run. The engine (train state, steps, `Engine`,
`train_phase` with its events and metric plug-ins) is
``experiments.engine``; the drivers (``experiments.drivers``) build on it;
the workdir protocol is ``experiments.runs``. A run is addressed by its
workdir: calling `run` again with the same config resumes from the newest
checkpoint, and after a finished run returns the stored summary at once.
"""
from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np

from experiments import config_check
from experiments import engine as engine_lib
from experiments import models as models_lib
from experiments import pruning
from experiments import runs
from experiments import segmentation
import binary
import sparsity

# Re-exported: the engine owns them (tests, launch.train, the export and the
# sweep name them here; drivers import experiments.engine).
Engine = engine_lib.Engine
LOSSES = engine_lib.LOSSES
NonFiniteLossError = engine_lib.NonFiniteLossError
Run = engine_lib.Run
TrainState = engine_lib.TrainState
build = engine_lib.build
evaluate_test = engine_lib.evaluate_test
load_state = engine_lib.load_state
loss_fn = engine_lib.loss_fn
make_eval_step = engine_lib.make_eval_step
make_train_step = engine_lib.make_train_step
make_tx = engine_lib.make_tx
to_global = engine_lib.to_global
train_phase = engine_lib.train_phase
WorkdirError = runs.WorkdirError  # re-exported: the workdir protocol owns it


# --------------------------------------------------------------- summary --
def layer_rows(mask) -> list:
  return sparsity.summarize(mask)


def base_summary(config, ds, state, test: dict) -> dict:
  return {
      "dataset": config.dataset,
      "model": config.model,
      "final": {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
                "remaining_fraction": float(
                    sparsity.remaining_fraction(state.mask)),
                "step": int(state.step)},
      "layers": layer_rows(state.mask),
      "num_classes": ds.num_classes,
      "devices": jax.device_count(),
      "processes": jax.process_count(),
  }


def format_result(summary: dict) -> str:
  """The end-of-run table: test metrics, then remaining weights per layer."""
  f = summary["final"]
  lines = [f"test accuracy {f['test_accuracy']:.4f}   test loss "
           f"{f['test_loss']:.4f}   step {f['step']}",
           *([f"dice {f['dice']:.4f}   mean IoU {f['mean_iou']:.4f}   "
              f"filters remaining {f['filters_remaining_fraction']:.4f}   "
              f"memory {f['memory_bytes']} bytes"] if "dice" in f else []),
           sparsity.format_summary_table(summary["layers"])]
  for name, row in summary.get("baselines", {}).items():  # Scratch-E / B
    extra = f"   dice {row['dice']:.4f}" if "dice" in row else ""
    lines.append(f"{name}: test accuracy {row['test_accuracy']:.4f}{extra}"
                 f"   ({row['steps']} steps from a fresh init)")
  return "\n".join(lines)


STE_WINDOW = 1.0
"""Half-width of the clipped STE's pass-through window (`ste_sign`'s
default `clip`, also `approx_sign`'s): the gradient reaches a latent weight
only where |w| <= 1. `ste_identity_sign` differs from `ste_sign` exactly
at the weights outside it."""


def latent_window_stats(params, window: float = STE_WINDOW) -> dict:
  """How far the latent binary weights left the STE window, at the end.

  Over the live (nonzero; a pruned weight is an exact 0) entries of every
  binary kernel (`models.is_binary_kernel`): `latent_outside_window`, the
  fraction with |w| > `window`, and `latent_abs_max`, the largest |w|.
  {} for a model without binary kernels. With weight clipping at H <= 1
  (`clip_weights`) the fraction is 0 by construction.
  """
  leaves = [np.abs(np.asarray(jax.device_get(leaf), np.float64)).ravel()
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
            if models_lib.is_binary_kernel(
                tuple(sparsity.leaf_name(path).split("/")), leaf)]
  if not leaves:
    return {}
  w = np.concatenate(leaves)
  w = w[w != 0]
  if not w.size:
    return {"latent_outside_window": 0.0, "latent_abs_max": 0.0}
  return {"latent_outside_window": float(np.mean(w > window)),
          "latent_abs_max": float(w.max())}


def segmentation_summary(engine: engine_lib.Engine, state, test: dict) -> dict:
  """{"final": {..., dice, mean_iou, remaining_fraction (kernels),
  filters_remaining_fraction, memory_bytes}, "layer_report": rows}."""
  layers = models_lib.layer_list(engine.model, engine.dataset.input_shape)
  variables = jax.device_get({"params": state.params,
                              "batch_stats": state.batch_stats})
  rows = segmentation.layer_report(layers, variables,
                                   jax.device_get(state.mask))
  t = segmentation.totals(rows)
  final = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
           "step": int(state.step), "dice": test["dice"],
           "mean_iou": test["mean_iou"],
           "remaining_fraction": t["remaining_fraction"],
           "filters_remaining_fraction": t["filters_remaining_fraction"],
           "memory_bytes": t["memory_bytes"]}
  return {"final": final, "layer_report": rows}


def model_summary(engine: engine_lib.Engine, state,
                  with_mask: bool = True) -> list:
  """Per layer: params by bit width, memory (32-bit, packed), MACs by
  precision, remaining weights (`binary.model_summary`)."""
  layers = models_lib.layer_list(engine.model, engine.dataset.input_shape)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  mask = jax.device_get(state.mask) if with_mask else None
  return binary.model_summary(layers, variables, mask)


# ------------------------------------------------------------- result --
DEPLOY_OPTIONS = ()


def deployable(config, workdir: str):
  """The plain run's result: its newest checkpoint (``drivers.Deployable``;
  the protocol is in ``experiments/drivers.py``)."""
  from experiments import drivers  # pylint: disable=g-import-not-at-top
  summary = drivers.finished_summary(workdir)
  return drivers.Deployable(config, engine_lib.load_state(config, workdir), {
      "result": "the newest checkpoint",
      "test_accuracy": summary["final"]["test_accuracy"]})


# ------------------------------------------------------------- section --
def defaults() -> ml_collections.ConfigDict:
  """The plain run's `pruning` section (``experiments.pruning``): gradual
  layer-wise magnitude pruning to 80 % (Zhu & Gupta 2017's cubic schedule
  from `begin_step` to `end_step`, every `frequency` steps)."""
  pc = ml_collections.ConfigDict()
  pc.method = "magnitude"   # pruning.METHODS: none | magnitude
  pc.schedule = "gradual"   # pruning.SCHEDULES: gradual | oneshot
  pc.scope = "layerwise"    # pruning.SCOPES: layerwise | global
  pc.target_sparsity = 0.8
  pc.layer_sparsity = ml_collections.ConfigDict()  # name -> final
  pc.begin_step = 1000
  pc.end_step = 2500
  pc.frequency = 100
  return pc


def validate(config) -> None:
  """The `pruning` section (absent: a dense run), and a model that needs
  another driver; ``ConfigError`` naming the first bad field."""
  require, choice = config_check.require, config_check.choice
  require(not issubclass(models_lib.MODELS[config.model], models_lib.FBSCNN),
          "fbs", f"model {config.model!r} needs an fbs section "
          "(fbs.init_from = '' for a random start)")
  if "pruning" not in config:
    return
  p = config.pruning
  choice(p.method, pruning.METHODS, "pruning.method")
  if p.method == "none":
    return
  choice(p.schedule, pruning.SCHEDULES, "pruning.schedule")
  choice(p.scope, pruning.SCOPES, "pruning.scope")
  require(0.0 <= p.target_sparsity < 1.0, "pruning.target_sparsity",
          f"must be in [0, 1), got {p.target_sparsity!r}")
  for name, s in dict(p.layer_sparsity or {}).items():
    require(0.0 <= s < 1.0, f"pruning.layer_sparsity.{name}",
            f"must be in [0, 1), got {s!r}")
    require(p.scope != "global", f"pruning.layer_sparsity.{name}",
            "per-layer sparsities need pruning.scope='layerwise'; global "
            "pruning sets one threshold over all layers and would ignore "
            "them")
  require(0 <= p.begin_step < config.num_steps, "pruning.begin_step",
          f"must be in [0, num_steps={config.num_steps}), got "
          f"{p.begin_step!r}")
  if p.schedule == "gradual":
    require(p.begin_step <= p.end_step < config.num_steps,
            "pruning.end_step", f"must be in [begin_step, num_steps), got "
            f"{p.end_step!r}")
    require(isinstance(p.frequency, int) and p.frequency > 0,
            "pruning.frequency", f"must be a positive integer, got "
            f"{p.frequency!r}")


# ------------------------------------------------------------------- main --
def _prune(pcfg, target: float, state):
  """The plain run's pruning event at overall sparsity `target`: the new
  mask (``pruning.apply_pruning``)."""
  return pruning.apply_pruning(state.params, state.mask, pcfg, target)


def run(config, workdir: str) -> dict:
  """The plain run: trains, prunes (``config.pruning``) and evaluates.

  The driver of a config without a method section (``experiments.drivers``
  dispatches the others). Writes `<workdir>/config.json`, `metrics.jsonl`,
  `checkpoints/` and `summary.json` through ``experiments.runs``. Raises
  `config_check.ConfigError` (bad config or a workdir of another run;
  nothing is written) and `NonFiniteLossError` (the newest good checkpoint
  is kept).
  """
  summary = runs.open_run(config, workdir, format_fn=format_result)
  if summary is not None:  # summary.json is written last: the run is done
    return summary
  engine = engine_lib.Engine(config)
  first_summary = model_summary(engine, engine.abstract, with_mask=False)
  if runs.is_main():
    print(binary.format_model_summary(first_summary), flush=True)
  prune_at = pruning.prune_events(config.get("pruning"))
  state = engine_lib.train_phase(
      engine, workdir,
      lambda: engine.init(jax.random.PRNGKey(config.seed)),
      end_step=config.num_steps, data_seed=config.seed,
      events={step: engine_lib.mask_event(functools.partial(
          _prune, config.pruning, target))
              for step, target in prune_at.items()},
      checkpoint_start=False)
  test = evaluate_test(engine, workdir, state)
  summary = base_summary(config, engine.dataset, state, test)
  if engine.task == "segmentation":
    summary.update(segmentation_summary(engine, state, test))
  summary["final"].update(latent_window_stats(state.params))  # binary only
  summary["model_summary"] = model_summary(engine, state)
  runs.write_summary(workdir, summary)
  if runs.is_main():
    print(format_result(summary), flush=True)
  return summary
