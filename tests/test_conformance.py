"""The conformance suite, run over every entry of conformance.TRANSFORMS.

See tests/conformance.py for what is checked and how to register a
transform.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import conformance
import sparsity

ENTRIES = conformance.TRANSFORMS
SPARSE = [t for t in ENTRIES if t.sparse]


def _ids(entries):
  return [t.name for t in entries]


def _is_none(x):
  return x is None


def _random_like(key, tree):
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, [
      jax.random.normal(jax.random.fold_in(key, i), x.shape).astype(x.dtype)
      for i, x in enumerate(leaves)])


def _signature(tree):
  """Structure (None leaves kept), shapes and dtypes of a pytree."""
  leaves, treedef = jax.tree.flatten(tree, is_leaf=_is_none)
  return treedef, [None if x is None else (tuple(x.shape), jnp.dtype(x.dtype))
                   for x in leaves]


def _setup(entry, inner, keep=0.35, bf16_last=False, seed=0):
  key = jax.random.key(seed)
  params = conformance.MODELS[entry.model].params(key, bf16_last=bf16_last)
  mask = conformance.random_mask(jax.random.fold_in(key, 1), params, keep)
  params = sparsity.apply_mask(params, mask)
  tx = entry.make(inner)
  return tx, params, mask, tx.init(params)


# ---------------------------------------------------------------------------
# (0) the factory's type
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_make_returns_extra_args_transformation(entry):
  tx = entry.make(optax.sgd(0.1))
  assert isinstance(tx, optax.GradientTransformationExtraArgs)


# ---------------------------------------------------------------------------
# (0b) the transform acts on the leaves it is for, at kept positions only
# ---------------------------------------------------------------------------

ACTING = [t for t in ENTRIES if t.acts_on is not None]


# (Not Adam: its first update is lr * sign(g) whatever g's size.)
@pytest.mark.parametrize("inner_name", ["sgd", "momentum"])
@pytest.mark.parametrize("entry", ACTING, ids=_ids(ACTING))
def test_transform_acts_on_its_leaves(entry, inner_name):
  inner = conformance.INNER_OPTIMIZERS[inner_name]
  tx, params, mask, state = _setup(entry, inner(), keep=0.5)
  base = sparsity.masked(inner())
  grads = _random_like(jax.random.key(3), params)
  got, _ = tx.update(grads, state, params, **entry.extra_args(mask))
  want, _ = base.update(grads, base.init(params), params, mask=mask)
  acted = []
  for (name, m, g), (_, _, w) in zip(sparsity.masked_leaves(mask, got),
                                     sparsity.masked_leaves(mask, want)):
    m, g, w = np.asarray(m), np.asarray(g), np.asarray(w)
    assert not g[~m].any(), name  # pruned: no update
    if entry.acts_on(name):
      assert (~m).any() and m.any(), name  # the mask prunes some, keeps some
      assert (g[m] != w[m]).all(), name
      acted.append(name)
    else:
      np.testing.assert_array_equal(g, w, err_msg=name)
  assert acted


# ---------------------------------------------------------------------------
# (1) no retrace when the mask values change
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_jit_does_not_retrace_when_mask_changes(entry):
  tx, params, mask, state = _setup(
      entry, optax.adamw(1e-2, weight_decay=1e-2))
  traces = []

  @jax.jit
  def step(p, s, g, m):
    traces.append(1)  # Python side effect: runs once per trace
    u, s = tx.update(g, s, p, **entry.extra_args(m))
    return optax.apply_updates(p, u), s

  key = jax.random.key(7)
  for i in range(4):
    m = conformance.random_mask(jax.random.fold_in(key, i), params, 0.5)
    params, state = step(params, state,
                         _random_like(jax.random.fold_in(key, 10 + i), params),
                         m)
  assert len(traces) == 1
  assert step._cache_size() == 1  # pylint: disable=protected-access


# ---------------------------------------------------------------------------
# (2) state structure and dtypes stable across updates
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("inner_name", list(conformance.INNER_OPTIMIZERS))
@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_state_structure_and_dtypes_are_stable(entry, inner_name):
  inner = conformance.INNER_OPTIMIZERS[inner_name]()
  tx, params, mask, state = _setup(entry, inner, bf16_last=True)
  before = _signature(state)
  step = jax.jit(lambda p, s, g, m: tx.update(g, s, p,
                                               **entry.extra_args(m)))
  for i in range(3):
    grads = _random_like(jax.random.key(i), params)
    updates, state = step(params, state, grads, mask)
    assert _signature(state) == before
    assert _signature(updates) == _signature(grads)
    params = optax.apply_updates(params, updates)
  assert _signature(params) == _signature(grads)


# ---------------------------------------------------------------------------
# (3) 1 device vs 4 forced CPU devices (one subprocess for all entries)
# ---------------------------------------------------------------------------

def test_same_result_on_1_and_4_devices():
  four = conformance.run_data_parallel_subprocess(n_devices=4)
  assert set(four) == {t.name for t in ENTRIES}
  for entry in ENTRIES:
    one = conformance.data_parallel_run(entry, n_devices=1)
    assert set(one) == set(four[entry.name]), entry.name
    for leaf in one:
      np.testing.assert_allclose(
          np.asarray(four[entry.name][leaf]), np.asarray(one[leaf]),
          rtol=1e-6, atol=1e-6, err_msg=f"{entry.name} {leaf}")


# ---------------------------------------------------------------------------
# (4) orbax checkpoint round trip of (params, state), and exact resume
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_checkpoint_round_trip(entry, tmp_path):
  tx, params, mask, state = _setup(entry, optax.adam(1e-2), bf16_last=True)

  @jax.jit
  def step(p, s, g, m):
    u, s = tx.update(g, s, p, **entry.extra_args(m))
    return optax.apply_updates(p, u), s

  for i in range(2):
    params, state = step(params, state,
                         _random_like(jax.random.key(i), params), mask)
  target = {"params": params, "state": state, "mask": mask}

  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", target)
  checkpointer.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  restored = checkpointer.restore(tmp_path / "ckpt", abstract)
  checkpointer.close()

  assert _signature(restored) == _signature(target)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(target)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Resuming from the restored state is bit-identical.
  grads = _random_like(jax.random.key(99), params)
  resumed = step(restored["params"], restored["state"], grads,
                 restored["mask"])
  original = step(params, state, grads, mask)
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(original)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------------------
# (5) the invariant: pruned weights and their moments stay exactly 0
# ---------------------------------------------------------------------------

N_STEPS = 1000


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _run_steps(tx, entry, n_steps, params, state, mask, key):
  """n_steps updates with random gradients; counts violations every step."""

  def body(i, carry):
    p, s, bad = carry
    g = _random_like(jax.random.fold_in(key, i), p)
    u, s = tx.update(g, s, p, **entry.extra_args(mask))
    p = optax.apply_updates(p, u)
    m = entry.current_mask(s, mask)
    _, bad_state = conformance.pruned_state_violations(s, m,
                                                       entry.exempt_state)
    bad_params = conformance.pruned_param_violations(p, m)
    return p, s, bad + bad_state + bad_params

  return jax.lax.fori_loop(0, n_steps, body, (params, state, jnp.int32(0)))


@pytest.mark.parametrize("inner_name", list(conformance.INNER_OPTIMIZERS))
@pytest.mark.parametrize("entry", SPARSE, ids=_ids(SPARSE))
def test_pruned_weights_and_moments_stay_zero(entry, inner_name):
  inner = conformance.INNER_OPTIMIZERS[inner_name]()
  tx, params, mask, state = _setup(entry, inner, keep=0.35)
  remaining, total = sparsity.count(mask)
  assert 0.5 <= 1 - remaining / total <= 0.8

  key = jax.random.key(1)
  half = N_STEPS // 2
  params, state, bad = _run_steps(tx, entry, half, params, state, mask,
                                  jax.random.fold_in(key, 0))
  assert int(bad) == 0

  # Prune further half-way (as a pruning event would), re-mask the params,
  # and continue: stale moments of newly pruned weights must be cleared.
  more = conformance.random_mask(jax.random.fold_in(key, 1), params, 0.6)
  mask = sparsity.combine_masks(mask, more)
  params = sparsity.apply_mask(params, mask)
  params, state, bad = _run_steps(tx, entry, N_STEPS - half, params, state,
                                  mask, jax.random.fold_in(key, 2))
  assert int(bad) == 0

  final_mask = entry.current_mask(state, mask)
  checked, bad_state = conformance.pruned_state_violations(
      state, final_mask, entry.exempt_state)
  assert int(bad_state) == 0
  assert int(conformance.pruned_param_violations(params, final_mask)) == 0
  if inner_name != "sgd":  # stateful: the moments must have been checked
    assert checked >= len(sparsity.masked_leaves(final_mask))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))


# ---------------------------------------------------------------------------
# (6) N:M masks (an event, not an entry: see conformance.py) under masked
# ---------------------------------------------------------------------------

NM_PHASE_STEPS = 100


# Two inner optimizers (a momentum trace; Adam's mu and nu with weight
# decay): the others are covered by the `masked` entry, and CI time is short.
@pytest.mark.parametrize("inner_name", ["nesterov", "adamw"])
def test_n_m_masks_under_masked(inner_name):
  entry = next(t for t in ENTRIES if t.name == "masked")
  tx = entry.make(conformance.INNER_OPTIMIZERS[inner_name]())
  key = jax.random.key(2)
  params = conformance.mlp_params(key, sizes=conformance.NM_SIZES)
  mask = sparsity.create_mask(params)
  state = tx.init(params)
  # Gradual 2:4 (4:4 -> 3:4 -> 2:4), each event from the trained weights;
  # the event's caller zeroes the newly pruned weights, masked the rest.
  for phase, n in enumerate((4, 3, 2)):
    new = sparsity.prune_n_m(params, mask, n=n, m=4)
    for _, old_leaf, new_leaf in sparsity.masked_leaves(mask, new):
      assert not np.asarray(new_leaf & ~old_leaf).any()  # never revived
    mask = new
    params = sparsity.apply_mask(params, mask)
    params, state, bad = _run_steps(tx, entry, NM_PHASE_STEPS, params, state,
                                    mask, jax.random.fold_in(key, phase))
    assert int(bad) == 0
  assert all(sparsity.is_n_m(m, 2, 4) for _, m in
             sparsity.masked_leaves(mask))
  assert [r.get("n_m") for r in sparsity.summarize(mask)] == ["2:4"] * 3
  checked, bad_state = conformance.pruned_state_violations(
      state, mask, entry.exempt_state)
  assert int(bad_state) == 0
  assert int(conformance.pruned_param_violations(params, mask)) == 0
  assert checked >= len(sparsity.masked_leaves(mask))
