"""Masked train step vs dense train step (target: ratio <= 1.03).

  python -m bench.masked_step [--quick]

The optimizer is the trainer's: `experiments.optimizers.make_optimizer` of
a config naming it (constant learning rate). The dense step is that plain
optimizer; the masked steps pass a 80%-sparse mask (params pre-masked) to
`experiments.engine.make_tx` of the same config, the masked optimizer the
trainer runs (`sparsity.masked` in the form `optimizers.mask_moments`
picks: `"on_entry"` for these zero-preserving chains; the target applies
to it), and, for comparison, to `sparsity.masked(..., mask_moments=
"per_step")` (the default, exact for any inner optimizer). All are jitted
and run on identical batches with the same model, batch and number of
steps; the ratios of medians of interleaved timings are printed for
LeNet-300-100 (MNIST shapes, batch 60, Adam), an MLP 784-1024-1024-10
(MNIST shapes, batch 256, Adam) and ResNet-20 (CIFAR-10 shapes, batch 32,
SGD momentum). `--quick`: fewer timings (a smoke test, not a figure).
"""
import sys

import jax
import ml_collections
import optax

from bench._timing import interleaved_medians
from experiments import engine
from experiments import models
from experiments import optimizers
import sparsity


def _config(optimizer: str, learning_rate: float, momentum: float = 0.9):
  """A pruning config's optimizer fields (what `make_tx` reads)."""
  return ml_collections.ConfigDict({
      "optimizer": optimizer, "learning_rate": learning_rate,
      "momentum": momentum, "weight_decay": 0.0, "lr_schedule": "constant",
      "num_steps": 1, "pruning": {"method": "magnitude"}})


def _bench(name, model, input_shape, batch, config, number, repeats):
  rng = jax.random.PRNGKey(0)
  x = jax.random.normal(rng, (batch, *input_shape))
  y = jax.random.randint(rng, (batch,), 0, 10)
  variables = model.init(rng, x[:1], train=False)
  params = variables["params"]
  stats = variables.get("batch_stats", {})
  mask = sparsity.random_mask_like(
      rng, sparsity.prune_layerwise_to(params, sparsity.create_mask(params),
                                       0.8))
  params = sparsity.apply_mask(params, mask)

  def loss_fn(p, s):
    vs = {"params": p, **({"batch_stats": s} if s else {})}
    if s:
      logits, new = model.apply(vs, x, train=True, mutable=["batch_stats"])
      s = new["batch_stats"]
    else:
      logits = model.apply(vs, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), s

  def make(tx, masked):
    @jax.jit
    def step(p, o, s):
      (l, s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s)
      if masked:
        u, o = tx.update(g, o, p, mask=mask)
      else:
        u, o = tx.update(g, o, p)
      return optax.apply_updates(p, u), o, s, l

    state = [params, tx.init(params), stats]

    def run(n):
      for _ in range(n):
        p, o, s, l = step(*state)
        state[:] = [p, o, s]
      l.block_until_ready()
    run(2)  # compile
    return run

  form = optimizers.mask_moments(config)
  t = interleaved_medians(
      {"dense": make(optimizers.make_optimizer(config), False),
       "per_step": make(sparsity.masked(optimizers.make_optimizer(config),
                                        mask_moments="per_step"), True),
       "trainer": make(engine.make_tx(config), True)},
      number=number, repeats=repeats)
  print(f"{name}: dense {t['dense'] * 1e3:.3f} ms/step, masked (trainer's, "
        f"{form}) {t['trainer'] * 1e3:.3f} ms/step, ratio "
        f"{t['trainer'] / t['dense']:.3f} (target <= 1.03); per_step "
        f"{t['per_step'] * 1e3:.3f} ms/step, ratio "
        f"{t['per_step'] / t['dense']:.3f}; on {jax.devices()[0].platform}",
        flush=True)
  return t["trainer"] / t["dense"]


def main(argv):
  quick = "--quick" in argv
  _bench("lenet_300_100", models.get_model("lenet_300_100", 10), (784,), 60,
         _config("adam", 1.2e-3), number=20 if quick else 200,
         repeats=5 if quick else 15)
  _bench("mlp 784-1024-1024-10", models.get_model("mlp", 10,
                                                   hidden=(1024, 1024)),
         (784,), 256, _config("adam", 1e-3), number=5 if quick else 20,
         repeats=5 if quick else 15)
  _bench("resnet20", models.get_model("resnet20", 10), (32, 32, 3), 32,
         _config("momentum", 0.1), number=2 if quick else 10,
         repeats=3 if quick else 9)


if __name__ == "__main__":
  main(sys.argv)
