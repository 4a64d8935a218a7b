"""Masked train step vs dense train step (target: ratio <= 1.03).

  python -m bench.masked_step [--quick]

The dense step is the plain optax optimizer; the masked step wraps the same
optimizer with `sparsity.masked` and passes a 80%-sparse mask (params
pre-masked). Both are jitted with donated state and run on identical
batches; the ratio of medians of interleaved timings is printed for
LeNet-300-100 (MNIST shapes, batch 60, Adam) and ResNet-20 (CIFAR-10 shapes,
batch 32, SGD momentum).
"""
import sys

import jax
import optax

from bench._timing import interleaved_medians
from experiments import models
import sparsity


def _bench(name, model, input_shape, batch, opt, number, repeats):
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

  t = interleaved_medians({"dense": make(opt, False),
                           "masked": make(sparsity.masked(opt), True)},
                          number=number, repeats=repeats)
  ratio = t["masked"] / t["dense"]
  print(f"{name}: dense {t['dense'] * 1e3:.3f} ms/step, masked "
        f"{t['masked'] * 1e3:.3f} ms/step, ratio {ratio:.3f} "
        f"(target <= 1.03) on {jax.devices()[0].platform}")
  return ratio


def main(argv):
  quick = "--quick" in argv
  _bench("lenet_300_100", models.get_model("lenet_300_100", 10), (784,), 60,
         optax.adam(1.2e-3), number=20 if quick else 200,
         repeats=5 if quick else 15)
  _bench("resnet20", models.get_model("resnet20", 10), (32, 32, 3), 32,
         optax.sgd(0.1, momentum=0.9), number=2 if quick else 10,
         repeats=3 if quick else 9)


if __name__ == "__main__":
  main(sys.argv)
