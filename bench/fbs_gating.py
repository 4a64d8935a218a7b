"""FBS channel skipping in the CPU evaluator: per-layer time of the gated convs.

  python -m bench.fbs_gating [--quick] [--batch=N] [--threads=T]

M-CifarNet with FBS (``fbs_cnn``, 32x32x3 inputs, 10 classes; random
trained-like variables: kernels N(0, 2/fan_in), BN statistics and shifts
random; saliency kernels U(0, 2/fan_in) and biases U(0.2, 1), so every
saliency is > 0 and d = 1 keeps every channel), exported at densities
d = 1.0, 0.75 and 0.5 (the same variables: d changes only the ``wta`` k).  Each file is
loaded twice, with ``skip_gated`` on (``experiments/export/_gating.py``:
the gated convs compute only the kept output channels and read only the
kept input channels) and off (every channel computed, then zeroed by the
gate).  The six models run the same batch in alternation (``repeats``
rounds, per-layer seconds from ``Model.run(timings=...)``, median per
layer); the table gives, per conv, the d = 1 skip-off time and every
configuration's time relative to it, and the fraction of the dense MACs the
skipping conv computed (``Model.macs()``; about d^2 for a conv with gated
input and output, d for the first gated one, whose input is the ungated
first layer).  Logits with skipping are checked against skipping off.

BLAS threads are limited to ``--threads`` (default 1, via threadpoolctl when
installed) and each layer is timed in CPU time of the calling thread
(``Model.run(..., clock=time.thread_time)``), like the 1-thread figures of
``bench.xnor_kernels``: per-core work, robust to other jobs on the machine
(with more threads the CPU time of the other threads is not counted).
"""
import statistics
import sys
import time

import jax
import numpy as np

from experiments import export
from experiments import models

DENSITIES = (1.0, 0.75, 0.5)
INPUT_SHAPE = (32, 32, 3)


def _variables(model, seed=0):
  rng = np.random.default_rng(seed)

  def f(path, leaf):
    keys = [p.key for p in path]
    shape, last = leaf.shape, keys[-1]
    if "saliency" in keys:  # g > 0 always: d = 1 keeps every channel
      new = (rng.uniform(0.0, 2.0 / shape[0], shape) if last == "kernel"
             else rng.uniform(0.2, 1.0, shape))
    elif last == "kernel":
      new = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    elif last == "var":
      new = rng.uniform(0.5, 2.0, shape)
    elif last == "scale":
      new = rng.uniform(0.5, 1.5, shape)
    else:
      new = rng.normal(0.0, 0.3, shape)
    return np.asarray(new, np.float32)

  return jax.tree.map(np.asarray, jax.tree_util.tree_map_with_path(
      f, models.abstract_variables(model, INPUT_SHAPE)))


def build():
  """{(d, skip): export.Model} for every density, skipping on and off."""
  out = {}
  variables = None
  for d in DENSITIES:
    model = models.get_model("fbs_cnn", 10, density=d)
    if variables is None:
      variables = _variables(model)
    layers = models.layer_list(model, INPUT_SHAPE)
    header, tensors = export.encode(layers, variables,
                                    input_shape=INPUT_SHAPE)
    for skip in (False, True):
      out[(d, skip)] = export.Model(header, tensors, skip_gated=skip)
  return out


def measure(evaluators, x, repeats):
  """{(d, skip): {layer: median seconds}}, plus the logits of each."""
  times = {k: {} for k in evaluators}
  logits = {}
  for k, m in evaluators.items():  # warm-up (and the logits)
    logits[k] = m(x)
  for _ in range(repeats):
    for k, m in evaluators.items():
      t = {}
      m.run(x, timings=t, clock=time.thread_time)
      for name, s in t.items():
        times[k].setdefault(name, []).append(s)
  return ({k: {n: statistics.median(v) for n, v in t.items()}
           for k, t in times.items()}, logits)


def main(argv):
  quick = "--quick" in argv
  batch = 16 if quick else 64
  threads = 1
  for a in argv[1:]:
    if a.startswith("--batch="):
      batch = int(a.split("=", 1)[1])
    elif a.startswith("--threads="):
      threads = int(a.split("=", 1)[1])
  repeats = 3 if quick else 9
  try:
    import threadpoolctl  # pylint: disable=g-import-not-at-top
    limit = threadpoolctl.threadpool_limits(threads)
  except ImportError:
    limit = None
  import os  # pylint: disable=g-import-not-at-top
  print(f"fbs_cnn (M-CifarNet) 32x32x3, batch {batch}, {repeats} rounds, "
        f"BLAS threads {threads if limit is not None else 'default'}, load "
        f"average {os.getloadavg()[0]:.2f}")
  evaluators = build()
  x = np.random.default_rng(1).standard_normal((batch,) + INPUT_SHAPE
                                               ).astype(np.float32)
  med, logits = measure(evaluators, x, repeats)
  for d in DENSITIES:
    ref = logits[(d, False)]
    err = float(np.max(np.abs(logits[(d, True)] - ref)) /
                max(1e-30, float(np.max(np.abs(ref)))))
    print(f"d={d}: skipping vs full logits, max |diff| / max |logit| = "
          f"{err:.1e}")
    assert err < 1e-5, err
  base = med[(1.0, False)]
  convs = [l.name for l in evaluators[(0.5, True)].layers if l.op == "conv"]
  gated = evaluators[(0.5, True)].macs()
  cols = [(d, s) for d in DENSITIES for s in (False, True)]
  head = " ".join(f"{d}/{'on' if s else 'off'}".rjust(9) for d, s in cols)
  print("per conv: d=1/off ms, then time / (d=1/off time) for d/skip; "
        "macs = computed / dense of the skipping conv")
  print(f"  {'layer':<18} {'ms':>8} {head}   macs d=1  0.75   0.5")
  tot = {k: 0.0 for k in cols}
  for name in convs:
    ratios = " ".join(f"{med[k][name] / base[name]:9.2f}" for k in cols)
    fr = []
    for d in DENSITIES:
      macs = evaluators[(d, True)].macs().get(name)
      fr.append(f"{macs[0] / macs[1]:5.2f}" if macs else f"{'-':>5}")
    print(f"  {name:<18} {base[name] * 1e3:8.2f} {ratios}   {' '.join(fr)}")
  for k in cols:
    tot[k] = sum(med[k].values())
  print(f"  {'whole model':<18} {tot[(1.0, False)] * 1e3:8.2f} " +
        " ".join(f"{tot[k] / tot[(1.0, False)]:9.2f}" for k in cols))
  g = [n for n in convs if n in gated]
  gsum = {k: sum(med[k][n] for n in g) for k in cols}
  print(f"  {'gated convs':<18} {gsum[(1.0, False)] * 1e3:8.2f} " +
        " ".join(f"{gsum[k] / gsum[(1.0, False)]:9.2f}" for k in cols))


if __name__ == "__main__":
  main(sys.argv)
