"""Accelerator check: the trainer's overheads as ratios, on any JAX device.

  python -m bench.accelerator [--quick]

Prints the devices JAX finds (platform, device kind, count), then one row
per ratio, each measured in one run against its baseline (the candidates
alternate, A B A B, and the ratio is of the medians), so a noisy or shared
machine's drift hits both sides alike:

* trainer / hand-written loop, steps/s: `engine.train_phase` of a plain
  dense run (its own `steps_per_sec` of each log window, which covers the
  data, the transfer, the step, the loss check and logging; the first
  window, compilation, dropped) vs a minimal jitted `value_and_grad` +
  optimizer loop over the same batches (`data.train_batch`). ResNet-20,
  CIFAR-10 shapes, batch 128, SGD momentum, synthetic data.
* masked / dense train step: the trainer's step (`engine.make_train_step`)
  with `engine.make_tx` of a pruning run (`sparsity.masked`, an 80 %
  layer-wise magnitude mask) vs of a dense run. Same ResNet-20.
* STE-binary / float train step: the BNN CNN of binaryconnect_cifar10.py
  (VGG-like, width 0.5: sign kernels with a clipped STE, clipping and
  Glorot-scaled updates, squared hinge loss) vs its float twin
  (`binarize=False`).
* BENN 8 members, vmapped / sequential (speed-up): one `jax.vmap` of the
  trainer's step over a stacked state of 8 members and a stacked batch
  (what `experiments.benn_run` does for independent bagging) vs 8 member
  steps one after another; the semi-binary NIN of benn_cifar10_nin.py.
  Same work on both sides; printed as sequential time / vmapped time.
* the periodic mask update's share of a step: one magnitude-pruning event
  as the trainer applies it (`engine.mask_event` of
  `pruning.apply_pruning`, layer-wise, to the result on the device) vs a
  masked ResNet-20 step; printed as its share u / (f s + u) of the
  training time when it runs every f = `pruning.frequency` (100) steps
  (u: one update, s: one step), with u / s.

Targets, those of the single-topic benches: trainer / loop >= 0.95
(`bench.trainer_throughput`), masked / dense <= 1.03 (`bench.masked_step`),
STE / float <= 1.15 (`bench.ste_step`), vmapped / sequential > 1
(`bench.benn_vmap`); for the mask update's share, < 0.01 (1 %). The full
run is meant to finish in under 5 minutes on one GPU (most of it
compilation: about ten programs).

`--quick` runs the same functions at toy sizes (one-hidden-layer MLPs, a
binary one for the STE and BENN rows, on 8x8x3 inputs, batch 8, a few
steps: compiling the conv nets alone takes minutes of a loaded 2-core CPU),
so CI checks the program on a CPU (`tests/test_bench_accelerator.py`); its
figures say nothing about an accelerator.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bench._timing import interleaved_medians
from experiments import data as data_lib
from experiments import engine
from experiments import models
from experiments import pruning
from experiments.configs import benn_cifar10_nin
from experiments.configs import binaryconnect_cifar10
from experiments.configs import digits_magnitude
import sparsity

USAGE = "usage: python -m bench.accelerator [--quick]"

# A model is (name, kwargs): with the config's own model name, kwargs
# override the config's model_kwargs; with another name, they are all.
FULL = dict(
    mode="full", input_shape=(32, 32, 3), batch=128,
    resnet=("resnet20", {}), bnn=("bnn_cnn", {"width": 0.5}),
    benn=("nin", {"width": 1.0}), members=8,
    window=50, windows=5, loop_repeats=3, number=10, repeats=7,
    mask_number=3)
# Toy sizes for a CPU check of the program: the same functions on one-
# hidden-layer MLPs (a conv net's compilation alone would take minutes of a
# loaded 2-core CPU).
QUICK = dict(
    mode="quick", input_shape=(8, 8, 3), batch=8,
    resnet=("mlp", {"hidden": (32,)}), bnn=("binary_mlp", {"hidden": (32,)}),
    benn=("binary_mlp", {"hidden": (32,)}), members=8,
    window=4, windows=3, loop_repeats=2, number=3, repeats=3,
    mask_number=1)
SPARSITY = 0.8


def _model(config, spec):
  """The model of `spec` = (name, kwargs) for `config` (module comment)."""
  name, kwargs = spec
  kwargs = {**(config.model_kwargs.to_dict() if name == config.model
               else {}), **kwargs}
  if "binarize" in config:
    kwargs["binarize"] = bool(config.binarize)
  return models.get_model(name, 10, **kwargs)


def _label(spec) -> str:
  name, kwargs = spec
  return name + "".join(f" {k}={v}" for k, v in kwargs.items())


def _resnet_config(size, pruned: bool) -> ml_collections.ConfigDict:
  """A ResNet-20 run on synthetic CIFAR-shaped data (`pruned`: a pruning
  run's optimizer, `sparsity.masked`; else the dense run's): SGD momentum
  0.9, LR 0.1, coupled weight decay 1e-4 (lottery_resnet20_*); the
  pruning section of digits_magnitude.py, layer-wise every 100 steps."""
  config = digits_magnitude.get_config()
  config.dataset = "synthetic"
  config.dataset_kwargs = ml_collections.ConfigDict({
      "input_shape": size["input_shape"], "num_classes": 10,
      "num_train": 16 * size["batch"], "num_validation": size["batch"],
      "num_test": size["batch"]})
  config.model, kwargs = size["resnet"]
  config.model_kwargs = ml_collections.ConfigDict(kwargs)
  config.batch_size = size["batch"]
  config.eval_batch_size = size["batch"]
  config.optimizer = "sgd"
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.pruning.method = "magnitude" if pruned else "none"
  config.pruning.target_sparsity = SPARSITY
  return config


def _init_fn(model, tx, input_shape):
  """key -> a fresh TrainState of `model` (the trainer's `init_state`)."""

  def init(key) -> engine.TrainState:
    init_key, state_key = jax.random.split(key)
    variables = model.init(init_key, jnp.zeros((1, *input_shape)),
                           train=False)
    params = variables["params"]
    return engine.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params), mask=sparsity.create_mask(params),
        rng=state_key)
  return init


def _state(model, tx, input_shape, key) -> engine.TrainState:
  """A fresh TrainState of `model`, initialised in one jitted program."""
  return jax.jit(_init_fn(model, tx, input_shape))(key)


def _batch(size, seed: int, lead=()) -> dict:
  """A synthetic batch on the device (`lead`: extra leading axes); drawn
  with NumPy, so no random program is compiled for it."""
  rng = np.random.default_rng(seed)
  shape = (*lead, size["batch"])
  return {"image": jnp.asarray(rng.normal(
              size=(*shape, *size["input_shape"])).astype(np.float32)),
          "label": jnp.asarray(rng.integers(0, 10, shape).astype(np.int32))}


_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def _stepper(step, state, batch):
  """run(n): n jitted steps on `batch`, to the result on the device (on a
  copy of `state`: the step donates it)."""
  box = [_copy(state)]

  def run(n):
    for _ in range(n):
      box[0], m = step(box[0], batch)
    jax.block_until_ready(m)
  run(2)  # compile and warm up
  return run


# ------------------------------------------------- trainer vs hand loop --
def _trainer_rates(eng, size, n: int) -> list:
  """steps/s of each log window of one `train_phase` (the first dropped)."""
  with tempfile.TemporaryDirectory() as workdir:
    engine.train_phase(eng, workdir, lambda: eng.init(jax.random.PRNGKey(0)),
                       end_step=n, data_seed=0, eval_splits=(),
                       checkpoint_start=False)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f]
  return [r["steps_per_sec"] for r in rows if "steps_per_sec" in r][1:]


def _hand_loop(eng, size):
  """rates(n): steps/s of each window of a minimal jitted loop over the
  trainer's batches (its start state is the trainer's too)."""
  config, model = eng.config, eng.model
  src = eng.dataset.splits["train"]
  tx = optax.sgd(config.learning_rate, momentum=config.momentum)

  @jax.jit
  def step(p, o, s, batch):
    def loss(p):
      if s:
        logits, new = model.apply({"params": p, "batch_stats": s},
                                  batch["image"], train=True,
                                  mutable=["batch_stats"])
        new = new["batch_stats"]
      else:
        logits, new = model.apply({"params": p}, batch["image"],
                                  train=True), s
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, batch["label"]).mean(), new
    (l, s), g = jax.value_and_grad(loss, has_aux=True)(p)
    g = jax.tree.map(lambda g, w: g + config.weight_decay * w, g, p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, s, l

  def rates(n):
    state = eng.init(jax.random.PRNGKey(0))
    p, s = state.params, state.batch_stats
    o = jax.jit(tx.init)(p)
    out, t0 = [], time.perf_counter()
    for i in range(n):
      b = data_lib.train_batch(src, i, batch_size=config.batch_size,
                               seed=config.seed)
      p, o, s, l = step(p, o, s, {k: jnp.asarray(v) for k, v in b.items()})
      if (i + 1) % size["window"] == 0:
        l.block_until_ready()
        t1 = time.perf_counter()
        out.append(size["window"] / (t1 - t0))
        t0 = t1
    return out[1:]
  return rates


def trainer_vs_loop(size) -> tuple:
  config = _resnet_config(size, pruned=False)
  config.log_every = size["window"]
  n = size["window"] * size["windows"]
  config.num_steps = config.eval_every = config.checkpoint_every = n
  eng = engine.Engine(config)
  hand = _hand_loop(eng, size)
  trainer, loop = [], []
  for _ in range(size["loop_repeats"]):  # alternating: A B A B
    trainer += _trainer_rates(eng, size, n)
    loop += hand(n)
  tr, hl = statistics.median(trainer), statistics.median(loop)
  return (tr / hl, f"trainer {tr:.1f} steps/s, hand-written loop "
          f"{hl:.1f} steps/s; target >= 0.95")


# ----------------------------------------------------- the train steps --
def _resnet_steps(size) -> dict:
  """The trainer's jitted ResNet-20 step, dense and masked (80 %)."""
  key = jax.random.PRNGKey(0)
  config = _resnet_config(size, pruned=False)
  model = _model(config, size["resnet"])
  batch = _batch(size, 1)
  out = {}
  for name, pruned in (("dense", False), ("masked", True)):
    config.pruning.method = "magnitude" if pruned else "none"
    tx = engine.make_tx(config)
    state = _state(model, tx, size["input_shape"], key)
    if pruned:
      mask = sparsity.prune_layerwise_to(state.params, state.mask, SPARSITY)
      state = jax.jit(engine.mask_event(lambda _: mask))(state)
    step = jax.jit(engine.make_train_step(model, tx), donate_argnums=0)
    out[name] = (step, state, batch, tx)
  return out


def masked_vs_dense(size, steps) -> tuple:
  t = interleaved_medians(
      {k: _stepper(*steps[k][:3]) for k in ("dense", "masked")},
      number=size["number"], repeats=size["repeats"])
  return (t["masked"] / t["dense"], f"dense {t['dense'] * 1e3:.3f} ms, "
          f"masked {t['masked'] * 1e3:.3f} ms per step; target <= 1.03")


def ste_vs_float(size) -> tuple:
  key = jax.random.PRNGKey(0)
  batch = _batch(size, 1)
  runs = {}
  for name, binarize in (("float", False), ("ste", True)):
    config = binaryconnect_cifar10.get_config()
    config.binarize = binarize
    model = _model(config, size["bnn"])
    tx = engine.make_tx(config)
    step = jax.jit(engine.make_train_step(model, tx, config.loss),
                   donate_argnums=0)
    runs[name] = _stepper(step, _state(model, tx, size["input_shape"], key),
                          batch)
  t = interleaved_medians(runs, number=size["number"],
                          repeats=size["repeats"])
  return (t["ste"] / t["float"], f"float {t['float'] * 1e3:.3f} ms, "
          f"STE-binary {t['ste'] * 1e3:.3f} ms per step ({_label(size['bnn'])}); "
          "target <= 1.15")


def benn_vmap_vs_sequential(size) -> tuple:
  config = benn_cifar10_nin.get_config()
  model = _model(config, size["benn"])
  tx = engine.make_tx(config)
  k = size["members"]
  keys = jax.random.split(jax.random.PRNGKey(0), k)
  stacked = jax.jit(jax.vmap(_init_fn(model, tx, size["input_shape"])))(keys)
  batches = _batch(size, 1, lead=(k,))
  unstack = jax.jit(lambda tree: [jax.tree.map(lambda x, i=i: x[i], tree)
                                  for i in range(k)])
  members, member_batches = unstack(stacked), unstack(batches)
  train_step = engine.make_train_step(model, tx, config.loss)
  vmapped = _stepper(jax.jit(jax.vmap(train_step), donate_argnums=0),
                     stacked, batches)
  step = jax.jit(train_step, donate_argnums=0)
  one = [_stepper(step, s, b) for s, b in zip(members, member_batches)]

  def sequential(n):  # member after member, n steps each
    for run in one:
      run(n)
  t = interleaved_medians({"vmap": vmapped, "sequential": sequential},
                          number=size["number"], repeats=size["repeats"])
  return (t["sequential"] / t["vmap"],
          f"{k} members: vmapped {k / t['vmap']:.1f}, sequential "
          f"{k / t['sequential']:.1f} member-steps/s ({_label(size['benn'])}); "
          "target > 1")


def mask_update_share(size, steps) -> tuple:
  step, state, batch, _ = steps["masked"]
  pcfg = _resnet_config(size, pruned=True).pruning
  event = engine.mask_event(
      lambda s: pruning.apply_pruning(s.params, s.mask, pcfg, SPARSITY))
  box = [_copy(state)]

  def update(n):
    for _ in range(n):
      box[0] = event(box[0])
    jax.block_until_ready(box[0])
  update(1)  # compile
  t = interleaved_medians(
      {"step": _stepper(step, state, batch), "update": update},
      number=size["mask_number"], repeats=size["repeats"])
  every = pcfg.frequency
  share = t["update"] / (every * t["step"] + t["update"])
  return (share, f"one update {t['update'] * 1e3:.2f} ms = "
          f"{t['update'] / t['step']:.2f} steps of {t['step'] * 1e3:.3f} ms; "
          f"an update every {every} steps; target < 0.01")


# ------------------------------------------------------------------ main --
def describe_devices() -> str:
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  return (f"devices: {devices[0].platform}, {', '.join(kinds)} x "
          f"{len(devices)} (jax {jax.__version__})")


ROWS = ("trainer / hand-written loop steps/s", "masked / dense step",
        "STE-binary / float step", "BENN vmapped / sequential speed-up",
        "mask update share of the step time")


def main(argv) -> int:
  args = argv[1:]
  bad = [a for a in args if a != "--quick"]
  if bad:
    print(f"{USAGE} (unknown argument {bad[0]!r})", file=sys.stderr)
    return 2
  size = QUICK if "--quick" in args else FULL
  t0 = time.perf_counter()
  print(describe_devices(), flush=True)
  print(f"{size['mode']} mode: synthetic "
        f"{'x'.join(map(str, size['input_shape']))} inputs, batch "
        f"{size['batch']}, {_label(size['resnet'])} (trainer, masked, mask "
        "update); ratios of medians of alternating runs", flush=True)
  steps = _resnet_steps(size)
  measures = (lambda: trainer_vs_loop(size),
              lambda: masked_vs_dense(size, steps),
              lambda: ste_vs_float(size),
              lambda: benn_vmap_vs_sequential(size),
              lambda: mask_update_share(size, steps))
  for label, measure in zip(ROWS, measures):
    value, detail = measure()
    print(f"{label}: {value:.3f} ({detail})", flush=True)
    if not math.isfinite(value):
      return 1
  print(f"total {time.perf_counter() - t0:.0f} s", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
