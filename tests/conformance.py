"""The conformance registry: every per-step transform joins ``TRANSFORMS``.

``tests/test_conformance.py`` runs one parameterized suite over this
registry. For every entry it checks that

1. a jitted step does not retrace when the mask values change;
2. the state's tree structure, shapes and dtypes are stable across updates
   (also with a bfloat16 parameter);
3. a data-parallel step over a ``jax.sharding.Mesh`` of 4 forced CPU devices
   (batch on ``'data'``, params replicated) gives the 1-device result;
4. ``(params, state)`` round-trip through an orbax checkpoint;
5. for ``sparse=True`` entries, the invariant: with params zero at pruned
   positions, after every one of 1000 steps with random gradients under
   SGD, momentum, Nesterov, Adam and AdamW (weight decay 1e-2), every pruned
   weight and every parameter-shaped state leaf is exactly 0 at pruned
   positions, also after the mask is changed (pruned further) half-way.

How to register a new transform
-------------------------------
Append a :class:`Transform` to ``TRANSFORMS`` at the bottom of this file
(here, not from another module, so the 4-device subprocess sees it too)::

    Transform(
        name="my_transform",                      # test id
        make=lambda inner: mypkg.my_transform(inner, some_option=1.0),
        sparse=True,                              # keeps pruned weights at 0
        extra_args=lambda mask: {"mask": mask},   # kwargs of update()
    )

``make(inner)`` receives an optax optimizer and must return a
``GradientTransformationExtraArgs`` (a transform that is not a wrapper can
chain itself with ``inner``: ``lambda inner: optax.chain(mine(), inner)``).
``extra_args(mask)`` builds the keyword arguments of every ``update`` call
from the current mask (return ``{}`` if the transform takes none). Optional
fields: ``current_mask(state, mask)`` when the transform keeps its own mask
in its state (the invariant is checked against that mask), and
``exempt_state(path)`` for parameter-shaped state leaves that may be
non-zero at pruned positions by design (e.g. scores), named by their
``jax.tree_util.keystr`` path; ``model`` (a key of ``MODELS``) when the
transform acts on leaves the MLP does not have; ``acts_on(name)`` naming
the param leaves (``"BatchNorm_0/scale"``) the transform must change: the
suite then checks that its updates differ from ``masked(inner)``'s there,
at kept positions only.

Event transforms are not entries: they return a new mask between jitted
phases, and what must hold afterwards is the invariant of the per-step
transform that trains under that mask. N:M structured sparsity
(``sparsity.prune_n_m``, ``n_m_schedule``) is such an event and adds no
per-step transform (SR-STE's masked forward pass is not implemented), so
it has no entry; ``test_n_m_masks_under_masked`` in test_conformance.py
runs the ``masked`` entry's invariant check (Nesterov and AdamW inners)
with gradual N:M masks (4:4, then 3:4 and 2:4 computed from the trained
weights) on the MLP with input sizes divisible by 4 (``NM_SIZES``).

Test models (``MODELS``): ``"mlp"``, a 3-layer MLP whose kernels have
pairwise different shapes, and ``"gated_bn"``, the same MLP with a
BatchNorm (inference form: per-channel scale and shift) and a
main/subsidiary filter gate (``Dense_i_subsidiary``, through
``binary.subsidiary_keep``) after each hidden layer. The masks
(:func:`random_mask`) cover every kernel and, where the model has them,
every BatchNorm scale and shift and every gate, as the filter masks of the
drivers do. A state leaf "corresponds to" a masked leaf when its path ends
with that leaf's path (``...mu['BatchNorm_0']['scale']``) and the shapes
agree, or, when no masked leaf's path ends its path, when its shape is
that of exactly one masked leaf; the invariant check needs nothing else
from the transform.
"""

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsity


@dataclasses.dataclass(frozen=True)
class Transform:
  """One registry entry (see the module docstring)."""
  name: str
  make: Callable[[optax.GradientTransformation],
                 optax.GradientTransformationExtraArgs]
  sparse: bool
  extra_args: Callable[[Any], dict] = lambda mask: {"mask": mask}
  current_mask: Callable[[Any, Any], Any] = lambda state, mask: mask
  exempt_state: Callable[[str], bool] = lambda path: False
  model: str = "mlp"
  acts_on: Callable[[str], bool] | None = None


# Inner optimizers of the invariant check.
INNER_OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "sgd": lambda: optax.sgd(0.05),
    "momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "nesterov": lambda: optax.sgd(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-2),
}

# Kernel shapes (6, 16), (16, 12), (12, 4): pairwise different.
MLP_SIZES = (6, 16, 12, 4)
# The N:M test's MLP: every kernel's input size a multiple of 4.
NM_SIZES = (8, 16, 12, 4)


# ---------------------------------------------------------------------------
# Test model and masks
# ---------------------------------------------------------------------------

def mlp_params(key: jax.Array, sizes=MLP_SIZES, dtype=jnp.float32,
               bf16_last: bool = False) -> dict:
  """Flax-style params of an MLP: {"Dense_i": {"kernel", "bias"}}."""
  params = {}
  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    k1, k2 = jax.random.split(jax.random.fold_in(key, i))
    last = i == len(sizes) - 2
    dt = jnp.bfloat16 if (bf16_last and last) else dtype
    params[f"Dense_{i}"] = {
        "kernel": (jax.random.normal(k1, (n_in, n_out)) / np.sqrt(n_in)
                   ).astype(dt),
        "bias": (0.1 * jax.random.normal(k2, (n_out,))).astype(dt),
    }
  return params


def mlp_apply(params: dict, x: jax.Array) -> jax.Array:
  n = len(params)
  for i in range(n):
    layer = params[f"Dense_{i}"]
    x = x @ layer["kernel"].astype(x.dtype) + layer["bias"].astype(x.dtype)
    if i < n - 1:
      x = jnp.tanh(x)
  return x


def gated_bn_params(key: jax.Array, sizes=MLP_SIZES, dtype=jnp.float32,
                    bf16_last: bool = False) -> dict:
  """:func:`mlp_params` plus, after each hidden layer i, ``BatchNorm_i``
  {"scale", "bias"} and the gate ``Dense_i_subsidiary`` (values in
  [-0.9, 0.9]: inside the STE window of ``subsidiary_keep``, where the
  count penalty has a gradient)."""
  params = mlp_params(key, sizes, dtype, bf16_last)
  for i, n in enumerate(sizes[1:-1]):
    k1, k2, k3 = jax.random.split(jax.random.fold_in(key, 1000 + i), 3)
    params[f"BatchNorm_{i}"] = {
        "scale": (1.0 + 0.2 * jax.random.normal(k1, (n,))).astype(dtype),
        "bias": (0.1 * jax.random.normal(k2, (n,))).astype(dtype)}
    params[f"Dense_{i}_subsidiary"] = jax.random.uniform(
        k3, (n,), dtype, -0.9, 0.9)
  return params


def gated_bn_apply(params: dict, x: jax.Array) -> jax.Array:
  import binary  # pylint: disable=g-import-not-at-top
  n = sum(1 for k in params if k.startswith("Dense_")
          and not k.endswith("_subsidiary"))
  for i in range(n):
    layer = params[f"Dense_{i}"]
    x = x @ layer["kernel"].astype(x.dtype) + layer["bias"].astype(x.dtype)
    if i < n - 1:
      bn = params[f"BatchNorm_{i}"]
      x = x * bn["scale"].astype(x.dtype) + bn["bias"].astype(x.dtype)
      x = x * binary.subsidiary_keep(params[f"Dense_{i}_subsidiary"]
                                     ).astype(x.dtype)
      x = jnp.tanh(x)
  return x


@dataclasses.dataclass(frozen=True)
class Model:
  """A test model: ``params(key, bf16_last=False)`` and ``apply(params,
  x)``, inputs ``(batch, MLP_SIZES[0])``, outputs ``(batch,
  MLP_SIZES[-1])``."""
  params: Callable[..., dict]
  apply: Callable[[dict, jax.Array], jax.Array]


MODELS: dict[str, Model] = {
    "mlp": Model(mlp_params, mlp_apply),
    "gated_bn": Model(gated_bn_params, gated_bn_apply),
}


def prunable(path: tuple, leaf: Any) -> bool:
  """Kernels (``sparsity.default_prunable``), BatchNorm scales and shifts,
  and subsidiary gates."""
  if sparsity.default_prunable(path, leaf):
    return True
  names = [str(p) for p in path]
  return bool(names) and (
      names[-1].endswith("_subsidiary")
      or (len(names) >= 2 and names[-2].startswith("BatchNorm")
          and names[-1] in ("scale", "bias")))


def random_mask(key: jax.Array, params: dict, keep: float) -> Any:
  """A mask keeping each prunable weight (:func:`prunable`) with
  probability ``keep``."""
  mask = sparsity.create_mask(params, prunable)
  leaves, treedef = jax.tree.flatten(mask, is_leaf=lambda x: x is None)
  out = [None if m is None else
         jax.random.bernoulli(jax.random.fold_in(key, i), keep, m.shape)
         for i, m in enumerate(leaves)]
  return jax.tree.unflatten(treedef, out)


def pruned_state_violations(state: Any, mask: Any,
                            exempt: Callable[[str], bool]) -> tuple:
  """(number of checked leaves, number of non-zeros at pruned positions).

  A state leaf is checked against the masked leaf whose path ends its path
  (same shape), else against the only masked leaf of its shape (see the
  module docstring). Jittable.
  """
  flat_mask = [(jax.tree_util.keystr(p), m) for p, m in
               jax.tree_util.tree_flatten_with_path(
                   mask, is_leaf=lambda x: x is None)[0] if m is not None]
  shapes = [tuple(m.shape) for _, m in flat_mask]
  checked, bad = 0, jnp.int32(0)
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    key, shape = jax.tree_util.keystr(path), tuple(getattr(leaf, "shape", ()))
    by_path = [(len(k), m) for k, m in flat_mask if key.endswith(k)]
    if by_path:
      m = max(by_path, key=lambda x: x[0])[1]
      m = m if tuple(m.shape) == shape else None
    else:
      m = (flat_mask[shapes.index(shape)][1] if shapes.count(shape) == 1
           else None)
    if m is None or exempt(key):
      continue
    checked += 1
    bad += jnp.sum(jnp.logical_and(~m, leaf != 0), dtype=jnp.int32)
  return checked, bad


def pruned_param_violations(params: Any, mask: Any) -> jax.Array:
  bad = jnp.int32(0)
  for _, m, w in sparsity.masked_leaves(mask, params):
    bad += jnp.sum(jnp.logical_and(~m, w != 0), dtype=jnp.int32)
  return bad


# ---------------------------------------------------------------------------
# Data-parallel run (1 device in the test process, 4 in a subprocess)
# ---------------------------------------------------------------------------

DP_STEPS = 5
DP_BATCH = 16


def data_parallel_run(entry: Transform, n_devices: int) -> dict:
  """Params after ``DP_STEPS`` Adam steps, batch sharded over n devices."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  devices = jax.devices()[:n_devices]
  assert len(devices) == n_devices, (len(devices), n_devices)
  mesh = Mesh(np.array(devices), ("data",))
  replicated = NamedSharding(mesh, P())
  batch_sharded = NamedSharding(mesh, P("data"))

  key = jax.random.key(0)
  model = MODELS[entry.model]
  params = model.params(key)
  mask = random_mask(jax.random.fold_in(key, 1), params, keep=0.4)
  params = sparsity.apply_mask(params, mask)
  tx = entry.make(optax.adam(1e-2))
  state = tx.init(params)
  params, state, mask = jax.device_put((params, state, mask), replicated)

  def loss_fn(p, x, y):
    return jnp.mean((model.apply(p, x) - y) ** 2)

  @jax.jit
  def step(p, s, m, x, y):
    g = jax.grad(loss_fn)(p, x, y)
    u, s = tx.update(g, s, p, **entry.extra_args(m))
    return optax.apply_updates(p, u), s

  for i in range(DP_STEPS):
    kx, ky = jax.random.split(jax.random.fold_in(key, 100 + i))
    x = jax.device_put(jax.random.normal(kx, (DP_BATCH, MLP_SIZES[0])),
                       batch_sharded)
    y = jax.device_put(jax.random.normal(ky, (DP_BATCH, MLP_SIZES[-1])),
                       batch_sharded)
    params, state = step(params, state, mask, x, y)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(p): np.asarray(v).tolist() for p, v in flat}


def run_data_parallel_subprocess(n_devices: int = 4, timeout: float = 300
                                 ) -> dict:
  """All registered entries' data-parallel results from one subprocess."""
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  root = os.path.dirname(tests_dir)
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(
      [f for f in env.get("XLA_FLAGS", "").split()
       if not f.startswith("--xla_force_host_platform_device_count")]
      + [f"--xla_force_host_platform_device_count={n_devices}"])
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
      [tests_dir, root] + [p for p in [env.get("PYTHONPATH")] if p])
  code = ("import sys, json, conformance; "
          f"json.dump(conformance.device_main({n_devices}), sys.stdout)")
  proc = subprocess.run([sys.executable, "-c", code], env=env,
                        capture_output=True, text=True, timeout=timeout,
                        check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"device subprocess failed:\n{proc.stderr[-4000:]}")
  return json.loads(proc.stdout)


def device_main(n_devices: int) -> dict:
  """Every transform's data-parallel run on `n_devices` devices, by name;
  what the device subprocess above runs and prints as JSON."""
  assert jax.device_count() == n_devices, jax.devices()
  return {t.name: data_parallel_run(t, n_devices) for t in TRANSFORMS}


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

TRANSFORMS: list[Transform] = [
    Transform(name="masked", make=sparsity.masked, sparse=True,
              extra_args=lambda mask: {"mask": mask}),
    # The fast form for zero-preserving inners (all of INNER_OPTIMIZERS):
    # the state is masked on entry, so the stale moments of newly pruned
    # weights are cleared by the update after the mid-run mask change.
    Transform(name="masked[on_entry]",
              make=lambda inner: sparsity.masked(inner,
                                                 mask_moments="on_entry"),
              sparse=True, extra_args=lambda mask: {"mask": mask}),
]

# binary/: the BinaryConnect per-step transforms, chained after the masked
# optimizer, so that the pruned-stays-zero invariant is checked through them.
import binary  # pylint: disable=wrong-import-position,g-import-not-at-top

TRANSFORMS += [
    Transform(name="binary.scale_by_glorot",
              make=lambda inner: optax.chain(sparsity.masked(inner),
                                             binary.scale_by_glorot()),
              sparse=True, extra_args=lambda mask: {"mask": mask}),
    Transform(name="binary.clip_params",
              make=lambda inner: optax.chain(sparsity.masked(inner),
                                             binary.scale_by_glorot(),
                                             binary.clip_params(1.0)),
              sparse=True, extra_args=lambda mask: {"mask": mask}),
]

# sparsity filter masks: a filter mask derived from the weight mask (the
# filters that are alive, minus every third output channel of the hidden
# layers), expanded onto kernels and biases and ANDed with the weight mask;
# project_to_mask zeroes the biases and kernels of the newly dropped
# channels at the first step, masked keeps them and their moments at 0.
_FILTER_TEMPLATE = jax.eval_shape(lambda: mlp_params(jax.random.key(0)))


def filter_expanded_mask(mask: Any) -> Any:
  """The expanded mask of the ``filters`` entry (jittable)."""
  alive = sparsity.filters_of(mask, _FILTER_TEMPLATE)
  hidden = [f"Dense_{i}" for i in range(len(MLP_SIZES) - 2)]
  filter_masks = {name: jnp.logical_and(
      alive[name], jnp.arange(alive[name].shape[0]) % 3 != 0)
                  for name in hidden}
  return sparsity.expand_filter_masks(_FILTER_TEMPLATE, filter_masks,
                                      mask=mask)


TRANSFORMS += [
    Transform(name="sparsity.expand_filter_masks",
              make=lambda inner: optax.chain(sparsity.masked(inner),
                                             sparsity.project_to_mask()),
              sparse=True,
              extra_args=lambda mask: {"mask": filter_expanded_mask(mask)},
              current_mask=lambda state, mask: filter_expanded_mask(mask)),
]

# sparsity gradient counting: the counts are chained before the masked
# optimizer; they are int32, parameter-shaped and 0 at pruned positions.
TRANSFORMS += [
    Transform(name="sparsity.count_gradients",
              make=lambda inner: optax.chain(sparsity.count_gradients(0.3),
                                             sparsity.masked(inner)),
              sparse=True, extra_args=lambda mask: {"mask": mask}),
]

# Network Slimming's L1 on BatchNorm scales, as the filter-pruning driver
# chains it (masked(chain(bn_scale_l1, optimizer))), on the gated model:
# its BatchNorm scales are masked leaves, and the L1 subgradient must move
# the kept ones only.
TRANSFORMS += [
    Transform(name="sparsity.bn_scale_l1",
              make=lambda inner: sparsity.masked(optax.chain(
                  sparsity.bn_scale_l1(0.05), inner)),
              sparse=True, extra_args=lambda mask: {"mask": mask},
              model="gated_bn",
              acts_on=lambda name: name.startswith("BatchNorm_")
              and name.endswith("/scale")),
    # Chained after the masked optimizer: sign(0) = 0 must leave a pruned
    # (zero) scale at exactly 0 by itself.
    Transform(name="sparsity.bn_scale_l1[after_masked]",
              make=lambda inner: optax.chain(sparsity.masked(inner),
                                             sparsity.bn_scale_l1(0.05)),
              sparse=True, extra_args=lambda mask: {"mask": mask},
              model="gated_bn",
              acts_on=lambda name: name.startswith("BatchNorm_")
              and name.endswith("/scale")),
]

# main/subsidiary: the penalty on the gates, added to their gradients
# before the optimizer (as the main/subsidiary driver's gate branch:
# penalty, then Adam), inside the masked optimizer: the gates are masked
# leaves of the gated model (a masked gate is a filter whose gate is held
# at 0).
TRANSFORMS += [
    Transform(name="binary.add_mask_penalty",
              make=lambda inner: sparsity.masked(optax.chain(
                  binary.add_mask_penalty(0.05), inner)),
              sparse=True, extra_args=lambda mask: {"mask": mask},
              model="gated_bn",
              acts_on=lambda name: name.endswith("_subsidiary")),
    # The main/subsidiary budget: the gates projected after the optimizer
    # (as mainsub_run chains it), inside the masked wrapper; 90% removed at
    # once so that the boundary falls between two kept (non-zero) gates.
    Transform(name="binary.mask_budget",
              make=lambda inner: sparsity.masked(optax.chain(
                  inner, binary.mask_budget(0.9, 1))),
              sparse=True, extra_args=lambda mask: {"mask": mask},
              model="gated_bn",
              acts_on=lambda name: name.endswith("_subsidiary")),
]
