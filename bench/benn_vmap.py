"""BENN: K members trained together with vmap vs one after another.

  python -m bench.benn_vmap [--quick] [--members=8]

Both sides run the trainer's own step (`engine.make_train_step`, the
benn_digits recipe: semi-binary NIN width 1/4, Adam, cross-entropy, batch
64 of 8x8 digits), jitted with donated state; the vmap side is
`jax.vmap` of that step over a stacked state of K members and a stacked
batch (what `experiments.benn_run` does for independent bagging), the
loop side is K member runs one after another, each a step per batch.
Same total work: S stacked steps = K x S single steps, each member on its
own bootstrap batches. Reported: member-steps per second of each and the
throughput ratio (target >= 2x on 2 CPU cores), from interleaved medians
(compilation excluded). Batch assembly (NumPy gathers) is included on
both sides, as in the driver.
"""
import sys

import jax
import numpy as np

from bench._timing import interleaved_medians
from experiments import benn_run
from experiments import data as data_lib
from experiments.configs import benn_digits


def main(argv):
  quick = "--quick" in argv
  k = next((int(a.split("=")[1]) for a in argv
            if a.startswith("--members=")), 8)
  steps = 5 if quick else 20
  config = benn_digits.get_config()
  config.benn.members = k
  driver = benn_run.Driver(config, "/tmp/bench_benn_vmap_unused")
  jstep, init, keys, _, _, _ = driver.stacked_setup()
  single = driver.engine.train_step()   # the loop driver's compiled step
  sources = [driver.source(i) for i in range(k)]
  seeds = [benn_run.member_seed(config.seed, i, 1) for i in range(k)]
  bs = config.batch_size
  state = {"stacked": init(keys),
           "members": [driver.engine.place(driver.start(i))
                       for i in range(k)]}
  pos = {"step": 0}

  def stacked(n):
    s = state["stacked"]
    for _ in range(n):
      t = pos["step"]
      batches = [data_lib.train_batch(src, t, batch_size=bs, seed=sd)
                 for src, sd in zip(sources, seeds)]
      s, m = jstep(s, {key: np.stack([b[key] for b in batches])
                       for key in batches[0]})
      pos["step"] += 1
    jax.block_until_ready(m)
    state["stacked"] = s

  def loop(n):
    with jax.set_mesh(driver.engine.mesh):
      for i in range(k):          # member after member, n steps each
        s = state["members"][i]
        for t in range(n):
          s, m = single(s, data_lib.train_batch(sources[i], t, batch_size=bs,
                                                seed=seeds[i]))
        jax.block_until_ready(m)
        state["members"][i] = s

  stacked(1)
  loop(1)  # compile
  med = interleaved_medians({"vmap": stacked, "loop": loop}, number=steps,
                            repeats=3 if quick else 5)
  vmap_rate = k / med["vmap"]
  loop_rate = k / med["loop"]
  print(f"BENN {k} members, NIN width {config.model_kwargs.width} on "
        f"digits, batch {bs}, {jax.device_count()} device(s)")
  print(f"  vmap (stacked):  {vmap_rate:8.1f} member-steps/s")
  print(f"  loop (one by one): {loop_rate:6.1f} member-steps/s")
  print(f"  throughput ratio vmap / loop: {vmap_rate / loop_rate:.2f}x "
        "(target >= 2x)")
  return vmap_rate / loop_rate


if __name__ == "__main__":
  main(sys.argv)
