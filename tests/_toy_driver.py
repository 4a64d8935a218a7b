"""A toy method driver: the whole of what a new method needs.

``tests/test_drivers.py`` registers it with one line
(``drivers.DRIVERS["toy"] = "_toy_driver"``) and runs a config with a
``toy`` section through ``drivers.run``. The method: train with the masked
optimizer, and at ``toy.prune_at`` remove the ``toy.fraction`` smallest
remaining weights of every layer (one event, a pure function of the state).
"""
import jax
import sparsity

from experiments import runs
from experiments import train


def run(config, workdir: str) -> dict:
  summary = runs.open_run(config, workdir, format_fn=train.format_result)
  if summary is not None:
    return summary
  engine = train.Engine(config)
  state = train.train_phase(
      engine, workdir, lambda: engine.init(jax.random.PRNGKey(config.seed)),
      end_step=config.num_steps, data_seed=config.seed,
      prune_at={int(config.toy.prune_at): float(config.toy.fraction)},
      prune_fn=lambda s, rate: sparsity.prune_layerwise(s.params, s.mask,
                                                        rate))
  with jax.set_mesh(engine.mesh):
    test = engine.evaluate(state.params, state.batch_stats, "test")
  summary = train.base_summary(config, engine.dataset, state, test)
  summary["toy"] = {"fraction": float(config.toy.fraction)}
  runs.write_summary(workdir, summary)
  return summary
