r"""The FBS driver: one training phase of an FBS model, then the test set.

Gao et al., "Dynamic Channel Pruning: Feature Boosting and Suppression",
ICLR 2019; the MAC accounting is ``experiments.fbs``.

The run
-------
:func:`run` is what ``launch.train`` calls for a config with an ``fbs``
section: one ``engine.train_phase`` over [0, num_steps) (plain SGD with
momentum in the shipped configs), then the test set; ``summary.json``
``"final"`` adds ``macs_fraction`` and ``macs_overhead_fraction``, and
``"fbs_layers"`` holds the per-layer table (dense MACs, mean executed MACs,
fraction, mean kept output channels), printed at the end.
``fbs.init_from`` names the workdir of a finished run of the same model
(e.g. the d = 1 run): its params and batch_stats are the start instead of
a random init (step 0, fresh optimizer state).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from experiments import config_check
from experiments import engine as engine_lib
from experiments import fbs as fbs_lib
from experiments import models as models_lib
from experiments import runs
from experiments import train


# ---------------------------------------------------------------- start --
def _finished(workdir: str) -> str:
  """`workdir` expanded, or a ConfigError naming fbs.init_from."""
  path = os.path.expanduser(workdir)
  if not os.path.exists(os.path.join(path, "summary.json")) or not (
      os.path.exists(os.path.join(path, "config.json"))):
    raise config_check.ConfigError(
        f"config.fbs.init_from: no finished run in {workdir!r} (needs "
        "summary.json and config.json)")
  return path


def load_start(engine, init_from: str):
  """The params and batch_stats of the finished run in `init_from`, checked
  against `engine`'s model (ConfigError naming fbs.init_from otherwise)."""
  path = _finished(init_from)
  with open(os.path.join(path, "config.json")) as f:
    src_config = ml_collections.ConfigDict(json.load(f))
  try:
    src = engine_lib.load_state(src_config, path)
  except Exception as e:  # pylint: disable=broad-except
    raise config_check.ConfigError(
        f"config.fbs.init_from: cannot load {init_from!r}: "
        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    ) from e
  want = {"params": engine.abstract.params,
          "batch_stats": engine.abstract.batch_stats}
  got = {"params": src.params, "batch_stats": src.batch_stats}
  shapes = lambda t: jax.tree.map(lambda x: tuple(x.shape), t)
  if (jax.tree.structure(want) != jax.tree.structure(got)
      or shapes(want) != shapes(got)):
    raise config_check.ConfigError(
        f"config.fbs.init_from: the params/batch_stats of {init_from!r} "
        f"({src_config.get('model')}) do not match model "
        f"{engine.config.model!r}")
  return jax.device_get(got)


# ------------------------------------------------------------------ run --
def run(config, workdir: str) -> dict:
  """Trains and evaluates an FBS config; returns the summary dict."""
  summary = runs.open_run(config, workdir, format_fn=format_result,
                          create_now=False)
  if summary is not None:
    return summary
  init_from = config.fbs.get("init_from", "") or ""
  if init_from:
    _finished(init_from)
  engine = engine_lib.Engine(config)
  loaded = load_start(engine, init_from) if init_from else None
  runs.create(config, workdir)
  if runs.is_main():
    print(f"FBS: density {engine.model.density}, saliency L1 "
          f"{engine.model.saliency_l1}, start {init_from or 'random init'}",
          flush=True)

  def start():
    state = engine.init(jax.random.PRNGKey(config.seed))
    if loaded is None:
      return state
    params = jax.tree.map(jnp.asarray, loaded["params"])
    return state.replace(params=params,
                         batch_stats=jax.tree.map(jnp.asarray,
                                                  loaded["batch_stats"]),
                         opt_state=engine.run.tx.init(params))

  state = engine_lib.train_phase(engine, workdir, start,
                            end_step=config.num_steps, data_seed=config.seed,
                            checkpoint_start=loaded is not None)
  test = engine_lib.evaluate_test(engine, workdir, state)
  summary = train.base_summary(config, engine.dataset, state, test)
  summary["final"]["macs_fraction"] = test["macs_fraction"]
  summary["final"]["macs_overhead_fraction"] = test["macs_overhead_fraction"]
  plan = next(m.plan for m in engine.eval_metrics
              if isinstance(m, engine_lib.ExecutedMacs))
  summary["fbs_layers"] = fbs_lib.layer_table(plan, test)
  summary["fbs"] = {"density": float(engine.model.density),
                    "saliency_l1": float(engine.model.saliency_l1),
                    "init_from": init_from}
  summary["model_summary"] = train.model_summary(engine, state)
  runs.write_summary(workdir, summary)
  if runs.is_main():
    print(format_result(summary), flush=True)
  return summary


# ------------------------------------------------------------- section --
def defaults() -> ml_collections.ConfigDict:
  """The `fbs` fields (every FBS config)."""
  fc = ml_collections.ConfigDict()
  fc.init_from = ""   # workdir of a finished run of the same model, or ""
  return fc


def validate(config) -> None:
  """An FBS model and its `fbs` section; ``ConfigError`` naming the first
  bad field."""
  require = config_check.require
  is_fbs = issubclass(models_lib.MODELS[config.model], models_lib.FBSCNN)
  require(is_fbs, "model", f"must be an FBS model (fbs_cnn, fbs_digits_cnn) "
          f"with an fbs section, got {config.model!r}")
  kw = config.model_kwargs
  d = kw.get("density", 1.0)
  require(isinstance(d, (int, float)) and not isinstance(d, bool)
          and 0.0 < d <= 1.0, "model_kwargs.density",
          f"must be in (0, 1], got {d!r}")
  lam = kw.get("saliency_l1", 0.0)
  require(isinstance(lam, (int, float)) and not isinstance(lam, bool)
          and lam >= 0, "model_kwargs.saliency_l1",
          f"must be >= 0, got {lam!r}")
  init_from = config.fbs.get("init_from", "")
  require(isinstance(init_from, str), "fbs.init_from",
          f"must be a workdir path or '', got {init_from!r}")


# --------------------------------------------------------------- result --
DEPLOY_OPTIONS = ()


def deployable(config, workdir: str):
  """The FBS network (gates included): the newest checkpoint, as for a
  plain run (``drivers.Deployable``)."""
  return train.deployable(config, workdir)


def format_result(summary: dict) -> str:
  """The end-of-run text: the trainer's table, then the MAC table."""
  f = summary["final"]
  return "\n".join([train.format_result(summary), fbs_lib.format_layer_table(
      summary["fbs_layers"], f)])

