"""Measured speed of shrunk networks vs their MACs (issue 17).

  python -m bench.shrink [--quick]

For VGG-11 and ResNet-20 (CIFAR shapes 32x32x3, random weights: timing
does not depend on training), filters are selected by FPGM (geometric
median, ``sparsity.fpgm_filter_masks``, the same rate in every conv) and
by Network Slimming (``sparsity.slimming_filter_masks``: the smallest
BatchNorm scales globally, the scales drawn uniformly from [0.05, 1.5] so
the selection is not trivial) at two rates; the network is masked as the
drivers mask it (``shrink.masked_variables``: kernel column, bias and the
following BatchNorm's scale and shift) and shrunk (``shrink.shrink``).
Per (model, method, rate) the table gives

* MACs: shrunk / dense MACs (``shrink.shrunk_size``);
* JAX: shrunk / dense median time of the jitted layer executor
  (``models.layer_executor``, ``block_until_ready``);
* evaluator: shrunk / dense median time of the NumPy evaluator
  (``export.Model`` of ``export.encode``, numba if installed);

medians of interleaved timings (``bench._timing``: the dense network and
every shrunk one of a model in alternation) on one batch.  The
dense network is the unmasked one.  Before timing, the shrunk network's
logits are checked against the masked network's (atol 1e-4 times the
logits' scale), so a wrong network is never timed.  Target (VGG on CPU):
time ratio <= 1.3 x the MACs fraction (MACs 0.40 -> time <= 0.52).
Batch 16, 7 repeats.  ``--quick``: narrow models (VGG 16-32-64,
ResNet-20 of width 4), batch 4, one rate, 3 repeats (a smoke test).
The full run needs about 20 GB of memory: ``sparsity.fpgm_keep``'s
geometric-median distances hold every pairwise difference of a layer's
filters (512 x 512 x 4608 for VGG-11's last convs).

Where the evaluator's FPGM shortfall comes from (VGG-11, r = 0.3: time
0.83 at MACs 0.50 in the README's run), measured per layer with
``Model.run(timings=...)`` on the loaded 2-core CPU: with one BLAS thread
(``OPENBLAS_NUM_THREADS=1``, the thread's CPU time) the shrunk network
costs 0.57 of the dense one (1.15 x MACs). Convs 1-7, 86 % of the time,
scale as their MACs (0.51-0.58; odd widths such as 359 run at the same
GFLOP/s as 512). Conv 0 (3 input channels, MACs 0.70) takes 0.80, and
BatchNorm, ReLU and pooling (10 %) scale with the channels. With
OpenBLAS's default 2 threads on loaded cores the 64-256-row matmuls of
the 4x4 and 2x2 convs spin while the other thread is descheduled: 4-11x
their one-thread CPU time, shrunk hardly cheaper than dense, 3x the wall
time overall. So the evaluator's ratio here measures the scheduler. Time
it with ``OPENBLAS_NUM_THREADS=1`` on a shared machine.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from bench._timing import interleaved_medians
from experiments import export
from experiments import models
from experiments import shrink as shrink_lib
import sparsity

_SHAPE = (32, 32, 3)
_TARGET = 1.3


def _variables(model, seed=0):
  """Random variables: kernels N(0, 2 / fan_in), BatchNorm scales
  U(0.05, 1.5) (the slimming criterion), small shifts and means,
  variances U(0.5, 2)."""
  rng = np.random.default_rng(seed)

  def f(path, leaf):
    shape, last = leaf.shape, path[-1].key
    if last == "kernel":
      new = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    elif last == "var":
      new = rng.uniform(0.5, 2.0, shape)
    elif last == "scale":
      new = rng.uniform(0.05, 1.5, shape)
    else:
      new = rng.normal(0.0, 0.1, shape)
    return np.asarray(new, leaf.dtype)

  return jax.tree_util.tree_map_with_path(
      f, models.abstract_variables(model, _SHAPE))


def _kernel(variables, layers, name):
  e = next(e for e in layers if e["name"] == name)
  node = variables
  for key in e["params"]["kernel"]:
    node = node[key]
  return np.asarray(node)


def _masks(layers, variables, method, rate):
  """{conv name: keep}: every conv followed by a BatchNorm."""
  groups = sparsity.channel_groups(layers)
  convs = [e["name"] for e in layers
           if e["op"] == "conv" and groups.get(e["name"])]
  if method == "fpgm":
    return sparsity.fpgm_filter_masks(
        {n: _kernel(variables, layers, n) for n in convs},
        {n: rate for n in convs})
  bn = {e["name"]: e for e in layers}
  scales = {}
  for n in convs:
    node = variables
    for key in bn[groups[n][0]]["params"]["scale"]:
      node = node[key]
    scales[n] = np.asarray(node)
  return sparsity.slimming_filter_masks(scales, rate)


def _jax_fn(layers, variables, x):
  run = models.layer_executor(layers, variables, input_shape=_SHAPE)
  xj = jnp.asarray(x)

  def fn(n):
    for _ in range(n):
      y = run(xj)
    y.block_until_ready()
  fn(1)  # compile
  return fn


def _eval_fn(layers, variables, x):
  header, tensors = export.encode(layers, variables, input_shape=_SHAPE)
  model = export.Model(header, tensors)

  def fn(n):
    for _ in range(n):
      model(x)
  fn(1)  # numba compiles
  return fn


def _bench(name, model, rates, batch, number, repeats):
  layers = models.layer_list(model, _SHAPE)
  variables = _variables(model)
  x = np.random.default_rng(1).standard_normal(
      (batch, *_SHAPE)).astype(np.float32)
  fns = {"dense_jax": _jax_fn(layers, variables, x),
         "dense_eval": _eval_fn(layers, variables, x)}
  rows = []
  for method in ("fpgm", "slimming"):
    for rate in rates:
      masks = _masks(layers, variables, method, rate)
      masked = shrink_lib.masked_variables(layers, variables, masks)
      small, small_vars = shrink_lib.shrink(layers, variables, masks,
                                            input_shape=_SHAPE)
      want = np.asarray(models.layer_executor(layers, masked)(x[:4]))
      got = np.asarray(models.layer_executor(small, small_vars)(x[:4]))
      scale = max(1.0, float(np.abs(want).max()))
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)
      size = shrink_lib.shrunk_size(layers, masked, input_shape=_SHAPE)
      key = f"{method} {rate}"
      fns[f"{key} jax"] = _jax_fn(small, small_vars, x)
      fns[f"{key} eval"] = _eval_fn(small, small_vars, x)
      rows.append({
          "model": name, "method": method, "rate": rate, "key": key,
          "macs": size["shrunk_macs"] / size["dense_macs"],
          "params": size["shrunk_parameters"] / size["parameters"]})
  t = interleaved_medians(fns, number=number, repeats=repeats)
  for r in rows:
    key = r.pop("key")
    r.update(jax=t[f"{key} jax"] / t["dense_jax"],
             eval=t[f"{key} eval"] / t["dense_eval"],
             dense_jax_ms=t["dense_jax"] * 1e3,
             dense_eval_ms=t["dense_eval"] * 1e3)
    print(f"{name} {key}: MACs {r['macs']:.3f}, JAX {r['jax']:.3f}, "
          f"evaluator {r['eval']:.3f}", flush=True)
  return rows


def main(argv):
  quick = "--quick" in argv
  if quick:  # narrow models: a smoke test of the whole path
    nets = [("vgg (16-32-64)", models.VGG(num_classes=10,
                                         cfg=(16, "M", 32, "M", 64, "M"))),
            ("resnet20 (width 4)", models.get_model("resnet20", 10,
                                                   width=4))]
    rates, batch, number, repeats = (0.5,), 4, 1, 3
  else:
    nets = [("vgg11", models.get_model("vgg11", 10)),
            ("resnet20", models.get_model("resnet20", 10))]
    rates, batch, number, repeats = (0.3, 0.5), 16, 1, 7
  rows = []
  for name, model in nets:
    rows += _bench(name, model, rates, batch, number, repeats)
  print(f"\ndevice: {jax.devices()[0].platform} ({jax.devices()[0]}), "
        f"jax {jax.__version__}, batch {batch}; ratios shrunk / dense\n")
  print("| model | method | rate | MACs | params | JAX time | evaluator "
        "time | dense JAX ms | dense evaluator ms |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['method']} | {r['rate']} | {r['macs']:.3f} "
          f"| {r['params']:.3f} | {r['jax']:.3f} | {r['eval']:.3f} | "
          f"{r['dense_jax_ms']:.1f} | {r['dense_eval_ms']:.1f} |")
  print()
  for r in rows:
    if r["model"].startswith("vgg"):
      bound = _TARGET * r["macs"]
      for kind in ("jax", "eval"):
        ok = "meets" if r[kind] <= bound else "MISSES"
        print(f"{r['model']} {r['method']} {r['rate']} {kind}: time "
              f"{r[kind]:.3f} vs 1.3 x MACs {bound:.3f}: {ok} the target")


if __name__ == "__main__":
  main(sys.argv)
