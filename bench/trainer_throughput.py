"""Trainer steps/s vs a minimal hand-written jitted loop (target >= 0.95).

  python -m bench.trainer_throughput [--quick]

Both run the same model (the digits MLP of digits_magnitude.py), the same
Adam and the same batches (`experiments.data.train_batch`). Two rows:

* dense: `--config.pruning.method=none` vs a plain `value_and_grad` +
  `adam.update` loop;
* pruned 80%: one-shot layer-wise pruning at step 0, so every step is
  masked, vs the minimal masked loop of METHODS.md 0.2 (`g * m`, update,
  `w * m`) with the trainer's own mask.

Both are timed in windows of 200 steps in steady state (the trainer's own
`steps_per_sec` of each log row in metrics.jsonl, which covers everything
its loop does between two log steps: data, transfer, step, the loss
fetch and finiteness check, logging; the hand loop's wall time per 200
steps up to `block_until_ready`). The first window (compilation) is
dropped; runs alternate, and the ratio of the median window rates is
printed.
"""
import json
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import optax

from experiments import data as data_lib
from experiments import drivers
from experiments import train
from experiments.configs import digits_magnitude
import sparsity


def _config(num_steps, pruned):
  config = digits_magnitude.get_config()
  config.num_steps = num_steps
  config.eval_every = config.checkpoint_every = num_steps
  if pruned:
    config.pruning.schedule = "oneshot"
    config.pruning.begin_step = 0
  else:
    config.pruning.method = "none"
  return config


WINDOW = 200


def trainer_rates(num_steps, pruned):
  with tempfile.TemporaryDirectory() as workdir:
    config = _config(num_steps, pruned)
    config.log_every = WINDOW
    drivers.run(config, workdir)
    with open(f"{workdir}/metrics.jsonl") as f:
      rows = [json.loads(l) for l in f]
  return [r["steps_per_sec"] for r in rows if "steps_per_sec" in r][1:]


def hand_loop_rates(num_steps, pruned):
  config = _config(num_steps, pruned)
  run = train.build(config)
  model, src = run.model, run.dataset.splits["train"]
  params = run.init_state(jax.random.PRNGKey(0)).params
  mask = sparsity.create_mask(params)
  if pruned:
    mask = sparsity.prune_layerwise_to(params, mask, 0.8)
  tx = optax.adam(config.learning_rate)

  @jax.jit
  def step(p, o, batch):
    def loss(p):
      logits = model.apply({"params": p}, batch["image"], train=True)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, batch["label"]).mean()
    l, g = jax.value_and_grad(loss)(p)
    if pruned:
      g = sparsity.apply_mask(g, mask)
    u, o = tx.update(g, o, p)
    p = optax.apply_updates(p, u)
    if pruned:
      p = sparsity.apply_mask(p, mask)
    return p, o, l

  params = sparsity.apply_mask(params, mask)
  o = tx.init(params)
  rates, t0 = [], time.perf_counter()
  for i in range(num_steps):
    b = data_lib.train_batch(src, i, batch_size=config.batch_size,
                             seed=config.seed)
    params, o, l = step(params, o, {k: jnp.asarray(v) for k, v in b.items()})
    if (i + 1) % WINDOW == 0:
      l.block_until_ready()
      t1 = time.perf_counter()
      rates.append(WINDOW / (t1 - t0))
      t0 = t1
  return rates[1:]


def ratio(pruned, n, repeats):
  tr, hand = [], []
  for _ in range(repeats):  # alternating, so drift hits both alike
    tr += trainer_rates(n, pruned)
    hand += hand_loop_rates(n, pruned)
  return statistics.median(tr), statistics.median(hand)


def main(argv):
  n = 1000 if "--quick" in argv else 3000
  repeats = 3 if "--quick" in argv else 5
  lines = []
  for pruned in (False, True):
    tr, hand = ratio(pruned, n, repeats)
    lines.append(
        f"{'pruned 80%' if pruned else 'dense':>10}: trainer {tr:.0f} "
        f"steps/s, hand-written loop {hand:.0f} steps/s, ratio "
        f"{tr / hand:.3f} (target >= 0.95)")
  print(f"digits MLP on {jax.devices()[0].platform}: median rate of "
        f"{WINDOW}-step windows over {repeats} alternating runs of {n} steps")
  print("\n".join(lines))


if __name__ == "__main__":
  main(sys.argv)
