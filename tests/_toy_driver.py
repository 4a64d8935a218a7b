"""A toy method driver: the whole of what a new method needs.

``tests/test_drivers.py`` registers it with one line
(``drivers.DRIVERS["toy"] = "_toy_driver"``) and runs a config with a
``toy`` section through ``drivers.run``. The method: train with the masked
optimizer, and at ``toy.prune_at`` remove the ``toy.fraction`` smallest
remaining weights of every layer (one event, a pure function of the state).
"""
import functools

import jax
import sparsity

from experiments import engine as engine_lib
from experiments import runs
from experiments import train


def _prune(rate: float, state):
  return sparsity.prune_layerwise(state.params, state.mask, rate)


def run(config, workdir: str) -> dict:
  summary = runs.open_run(config, workdir, format_fn=train.format_result)
  if summary is not None:
    return summary
  engine = engine_lib.Engine(config)
  prune = engine_lib.mask_event(functools.partial(
      _prune, float(config.toy.fraction)))
  state = engine_lib.train_phase(
      engine, workdir, lambda: engine.init(jax.random.PRNGKey(config.seed)),
      end_step=config.num_steps, data_seed=config.seed,
      events={int(config.toy.prune_at): prune})
  with jax.set_mesh(engine.mesh):
    test = engine.evaluate(state.params, state.batch_stats, "test")
  summary = train.base_summary(config, engine.dataset, state, test)
  summary["toy"] = {"fraction": float(config.toy.fraction)}
  runs.write_summary(workdir, summary)
  return summary
