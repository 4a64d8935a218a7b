"""Trainer steps/s vs a minimal hand-written jitted loop (target >= 0.95).

  python -m bench.trainer_throughput [--quick]

Both run the same model (the digits MLP of digits_magnitude.py, dense), the
same optimizer and the same batches (`experiments.data.train_batch`). Fixed
costs (compilation, evaluation, checkpoint, set-up) are cancelled by timing
two lengths, N and 2N steps, and dividing the extra steps by the extra time.
The trainer logs every 200 steps and checkpoints only at the end, as the
config would; the hand loop does nothing but step.
"""
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import optax

from experiments import data as data_lib
from experiments import train
from experiments.configs import digits_magnitude


def _config(num_steps):
  config = digits_magnitude.get_config()
  config.pruning.method = "none"
  config.num_steps = num_steps
  config.eval_every = config.checkpoint_every = num_steps
  return config


def trainer_seconds(num_steps):
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    train.train_and_evaluate(_config(num_steps), workdir)
    return time.perf_counter() - t0


def hand_loop_seconds(num_steps):
  config = _config(num_steps)
  run = train.build(config)
  model, src = run.model, run.dataset.splits["train"]
  params = run.init_state(jax.random.PRNGKey(0)).params
  tx = optax.adam(config.learning_rate)

  @jax.jit
  def step(p, o, batch):
    def loss(p):
      logits = model.apply({"params": p}, batch["image"])
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, batch["label"]).mean()
    l, g = jax.value_and_grad(loss)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, l

  t0 = time.perf_counter()
  o = tx.init(params)
  for i in range(num_steps):
    b = data_lib.train_batch(src, i, batch_size=config.batch_size,
                             seed=config.seed)
    params, o, l = step(params, o, {k: jnp.asarray(v) for k, v in b.items()})
  l.block_until_ready()
  return time.perf_counter() - t0


def main(argv):
  n = 1000 if "--quick" in argv else 4000
  trainer_seconds(200)  # warm caches (imports, dataset)
  t_tr = trainer_seconds(2 * n) - trainer_seconds(n)
  t_hand = hand_loop_seconds(2 * n) - hand_loop_seconds(n)
  tr_rate, hand_rate = n / t_tr, n / t_hand
  print(f"trainer {tr_rate:.0f} steps/s, hand-written loop {hand_rate:.0f} "
        f"steps/s, ratio {tr_rate / hand_rate:.3f} (target >= 0.95) on "
        f"{jax.devices()[0].platform}")


if __name__ == "__main__":
  main(sys.argv)
