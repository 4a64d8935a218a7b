"""Tests for lottery/: IMP levels, resets, controls and instability.

Expected values are hand-computed on small arrays; the LeNet ladder is
checked against the paper's figure labels and against real masks.
"""

import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lottery
import sparsity

# The modules that define these public functions (their doctests run here).
_controls = inspect.getmodule(lottery.random_prune)
_instability = inspect.getmodule(lottery.instability)
_levels = inspect.getmodule(lottery.prune_level)
_reset = inspect.getmodule(lottery.reset)

T, F = True, False


def _net(k0, b0, k1):
  return {"Dense_0": {"kernel": jnp.asarray(k0, jnp.float32),
                      "bias": jnp.asarray(b0, jnp.float32)},
          "Dense_1": {"kernel": jnp.asarray(k1, jnp.float32)}}


def _mask():
  return {"Dense_0": {"kernel": jnp.array([[T, F], [F, T]]), "bias": None},
          "Dense_1": {"kernel": jnp.array([[F, T]])}}


THETA_0 = _net([[1., 2.], [3., 4.]], [0.1, 0.2], [[5., 6.]])
THETA_K = _net([[11., 12.], [13., 14.]], [1.1, 1.2], [[15., 16.]])
THETA_T = _net([[21., 22.], [23., 24.]], [2.1, 2.2], [[25., 26.]])


def _as_lists(params):
  return jax.tree.map(lambda x: np.asarray(x).tolist(), params)


# ---------------------------------------------------------------------------
# Levels
# ---------------------------------------------------------------------------

def test_prune_level_prunes_smallest_and_never_revives():
  params = _net([[0.5, -0.1], [0.3, 0.2]], [0., 0.], [[0.4, -0.6]])
  mask = sparsity.create_mask(params)
  mask["Dense_0"]["kernel"] = jnp.array([[T, T], [T, F]])
  new = lottery.prune_level(params, mask, rates=0.34)  # round(.34*3)=1
  assert new["Dense_0"]["kernel"].tolist() == [[T, F], [T, F]]
  # round(0.34 * 2) = round(0.68) = 1 -> the smaller |w| (0.4) goes.
  assert new["Dense_1"]["kernel"].tolist() == [[F, T]]


def test_prune_level_global_rate_and_include():
  params = _net([[0.1, 0.4], [0.2, 0.3]], [0., 0.], [[0.05, 0.01]])
  mask = sparsity.create_mask(params)
  spare_output = lambda name: not name.startswith("Dense_1")
  new = lottery.prune_level(params, mask, global_rate=0.5,
                            include=spare_output)
  assert new["Dense_0"]["kernel"].tolist() == [[F, T], [F, T]]
  assert new["Dense_1"]["kernel"].tolist() == [[T, T]]
  everything = lottery.prune_level(params, mask, global_rate=0.5)
  assert everything["Dense_1"]["kernel"].tolist() == [[F, F]]
  assert sparsity.count(everything) == (3, 6)


@pytest.mark.parametrize("kwargs", [
    {}, {"rates": 0.2, "global_rate": 0.2}, {"rates": 0.2,
                                              "include": lambda n: True}])
def test_prune_level_argument_errors(kwargs):
  params = _net([[1., 2.]], [0.], [[1.]])
  with pytest.raises(ValueError):
    lottery.prune_level(params, sparsity.create_mask(params), **kwargs)


def test_remaining_and_oneshot():
  assert lottery.remaining_after(0, 0.2) == 1.0
  assert lottery.remaining_after(3, 0.2) == pytest.approx(0.512)
  assert lottery.oneshot_rate(1, 0.2) == pytest.approx(0.2)
  assert lottery.oneshot_rate(3, 0.2) == pytest.approx(0.488)
  assert (1 - lottery.oneshot_rate(5, 0.2)
          == pytest.approx(lottery.remaining_after(5, 0.2)))
  np.testing.assert_allclose(lottery.remaining_after(np.arange(3), 0.5),
                             [1.0, 0.5, 0.25])


@pytest.mark.parametrize("level,percent", [
    (3, 51.3), (7, 21.1), (9, 13.5), (11, 8.7), (15, 3.6), (18, 1.9),
    (20, 1.2)])
def test_lenet_ladder_matches_paper_labels(level, percent):
  assert round(100 * lottery.lenet_ladder(level), 1) == percent


def test_lenet_ladder_formula():
  for k in (0, 1, 3, 7):
    want = (265200 * 0.8**k + 1000 * 0.9**k) / 266200
    assert lottery.lenet_ladder(k) == pytest.approx(want, rel=1e-12)
  assert round(lottery.lenet_ladder(3), 3) == 0.513
  assert round(lottery.lenet_ladder(7), 3) == 0.211


def test_prune_level_lenet_exact_counts_and_ladder():
  """Per-layer rates, output at half the rate, on the real LeNet shapes."""
  keys = jax.random.split(jax.random.key(1), 3)
  shapes = [(784, 300), (300, 100), (100, 10)]
  params = {f"Dense_{i}": {"kernel": jax.random.normal(k, s),
                           "bias": jnp.zeros(s[1])}
            for i, (k, s) in enumerate(zip(keys, shapes))}
  mask = sparsity.create_mask(params)
  for _ in range(3):
    mask = lottery.prune_level(params, mask,
                               rates={"default": 0.2, "Dense_2": 0.1})
  got = {r["name"]: r["remaining"] for r in sparsity.summarize(mask)}
  # k = round(p * alive) per level, by hand:
  # 235200 -> 188160 -> 150528 -> 150528 - round(30105.6) = 120422
  # 30000 -> 24000 -> 19200 -> 15360;  1000 -> 900 -> 810 -> 729
  assert got == {"Dense_0/kernel": 120422, "Dense_1/kernel": 15360,
                 "Dense_2/kernel": 729}
  assert mask["Dense_0"]["bias"] is None
  remaining, total = sparsity.count(mask)
  assert total == 266200
  assert remaining / total == pytest.approx(lottery.lenet_ladder(3),
                                            abs=1e-5)
  # A pruned weight is never revived.
  again = lottery.prune_level(params, mask, rates=0.5)
  assert not np.any(np.asarray(again["Dense_0"]["kernel"])
                    & ~np.asarray(mask["Dense_0"]["kernel"]))


# ---------------------------------------------------------------------------
# Resets
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,source,step", [
    ("init", THETA_0, 0), ("rewind", THETA_K, 5), ("lr_rewind", THETA_T, 5),
    ("finetune", THETA_T, 0)])
def test_reset_modes_hand_computed(mode, source, step):
  params, t0 = lottery.reset(mode, mask=_mask(), init_params=THETA_0,
                             rewind_params=THETA_K, final_params=THETA_T,
                             rewind_step=5)
  assert t0 == step and isinstance(t0, int)
  k0 = np.asarray(source["Dense_0"]["kernel"])
  k1 = np.asarray(source["Dense_1"]["kernel"])
  assert _as_lists(params) == _as_lists(
      _net([[k0[0, 0], 0.], [0., k0[1, 1]]], source["Dense_0"]["bias"],
           [[0., k1[0, 1]]]))


def test_reset_values_written_out():
  params, t0 = lottery.reset("rewind", mask=_mask(), init_params=THETA_0,
                             rewind_params=THETA_K, final_params=THETA_T,
                             rewind_step=3)
  assert t0 == 3
  assert params["Dense_0"]["kernel"].tolist() == [[11., 0.], [0., 14.]]
  assert params["Dense_1"]["kernel"].tolist() == [[0., 16.]]
  assert np.allclose(params["Dense_0"]["bias"], [1.1, 1.2])
  params, t0 = lottery.reset("init", mask=_mask(), init_params=THETA_0,
                             final_params=THETA_T)
  assert (params["Dense_0"]["kernel"].tolist(), t0) == ([[1., 0.], [0., 4.]],
                                                        0)


def test_reset_rewind_at_step_zero_is_init():
  params, t0 = lottery.reset("rewind", mask=_mask(), init_params=THETA_0,
                             final_params=THETA_T)
  init, _ = lottery.reset("init", mask=_mask(), init_params=THETA_0,
                          final_params=THETA_T)
  assert t0 == 0 and _as_lists(params) == _as_lists(init)


def test_reset_errors():
  with pytest.raises(ValueError, match="init, rewind, lr_rewind, finetune"):
    lottery.reset("reinit", mask=_mask(), init_params=THETA_0,
                  final_params=THETA_T)
  with pytest.raises(ValueError, match="rewind_params"):
    lottery.reset("rewind", mask=_mask(), init_params=THETA_0,
                  final_params=THETA_T, rewind_step=4)
  with pytest.raises(ValueError):
    lottery.reset("lr_rewind", mask=_mask(), init_params=THETA_0,
                  final_params=THETA_T, rewind_step=-1)
  with pytest.raises(ValueError, match="choose one of"):
    lottery.reset_opt_state("bogus", mask=_mask())


def test_reset_opt_state_masks_saved_moments():
  tx = sparsity.masked(optax.adam(0.1))
  state = tx.init(THETA_K)
  ones = jax.tree.map(jnp.ones_like, THETA_K)
  full = sparsity.create_mask(THETA_K)
  _, state = tx.update(ones, state, THETA_K, mask=full)  # moments nonzero
  out = lottery.reset_opt_state("rewind", mask=_mask(),
                                rewind_opt_state=state)
  adam = out.inner_state[0]
  assert int(adam.count) == 1
  mu = adam.mu["Dense_0"]["kernel"]
  assert (np.asarray(mu) != 0).tolist() == [[T, F], [F, T]]
  assert (np.asarray(adam.nu["Dense_1"]["kernel"]) != 0).tolist() == [[F, T]]
  assert np.all(np.asarray(adam.mu["Dense_0"]["bias"]) != 0)  # unmasked
  assert jax.tree.structure(out) == jax.tree.structure(state)
  for mode in ("init", "lr_rewind", "finetune"):
    assert lottery.reset_opt_state(mode, mask=_mask(),
                                   rewind_opt_state=state) is None
  assert lottery.reset_opt_state("rewind", mask=_mask()) is None


def test_mask_opt_state_sgd_momentum():
  state = optax.sgd(0.1, momentum=0.9).init(THETA_T)
  state = (state[0]._replace(trace=THETA_T),) + tuple(state[1:])
  out = lottery.mask_opt_state(state, _mask())
  assert out[0].trace["Dense_0"]["kernel"].tolist() == [[21., 0.], [0., 24.]]
  assert out[0].trace["Dense_1"]["kernel"].tolist() == [[0., 26.]]


# ---------------------------------------------------------------------------
# Controls
# ---------------------------------------------------------------------------

def _init_fn(key):
  k0, k1 = jax.random.split(key)
  return {"Dense_0": {"kernel": jax.random.normal(k0, (2, 2)),
                      "bias": jnp.zeros(2)},
          "Dense_1": {"kernel": jax.random.normal(k1, (1, 2))}}


def test_random_reinit_keeps_mask_new_draw():
  original = _init_fn(jax.random.key(0))
  mask = _mask()
  fresh = lottery.random_reinit(jax.random.key(1), _init_fn, original, mask)
  assert jax.tree.structure(fresh) == jax.tree.structure(original)
  for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(original)):
    assert a.shape == b.shape and a.dtype == b.dtype
  for name in ("Dense_0", "Dense_1"):
    m = np.asarray(mask[name]["kernel"])
    k = np.asarray(fresh[name]["kernel"])
    assert np.all(k[~m] == 0) and np.all(k[m] != 0)
    assert not np.allclose(k[m], np.asarray(original[name]["kernel"])[m])
  # Same initializer: a re-draw with the original key is the original.
  same = lottery.random_reinit(jax.random.key(0), _init_fn, original, mask)
  assert np.allclose(same["Dense_0"]["kernel"],
                     sparsity.apply_mask(original, mask)["Dense_0"]["kernel"])


def test_random_reinit_shape_mismatch():
  original = _init_fn(jax.random.key(0))
  bad = lambda k: {"Dense_0": {"kernel": jnp.zeros((3, 2)),
                               "bias": jnp.zeros(2)},
                   "Dense_1": {"kernel": jnp.zeros((1, 2))}}
  with pytest.raises(ValueError, match="shape"):
    lottery.random_reinit(jax.random.key(0), bad, original, _mask())
  with pytest.raises(ValueError, match="structure"):
    lottery.random_reinit(jax.random.key(0), lambda k: {"w": jnp.zeros(1)},
                          original, _mask())


def test_random_prune_same_counts():
  mask = {"a": {"kernel": jnp.arange(100).reshape(10, 10) % 3 == 0},
          "b": {"kernel": jnp.arange(100).reshape(10, 10) < 7,
                "bias": None}}
  rand = lottery.random_prune(jax.random.key(3), mask)
  assert ([r["remaining"] for r in sparsity.summarize(rand)]
          == [r["remaining"] for r in sparsity.summarize(mask)] == [34, 7])
  assert rand["b"]["bias"] is None
  assert not np.array_equal(rand["a"]["kernel"], mask["a"]["kernel"])
  assert not np.array_equal(rand["b"]["kernel"], mask["b"]["kernel"])


# ---------------------------------------------------------------------------
# Instability
# ---------------------------------------------------------------------------

def test_interpolate_endpoints_and_dtype():
  a = {"w": jnp.array([0., 4.], jnp.bfloat16), "n": jnp.array(3)}
  b = {"w": jnp.array([2., 0.], jnp.bfloat16), "n": jnp.array(7)}
  assert lottery.interpolate(a, b, 0.0)["w"].tolist() == [0., 4.]
  assert lottery.interpolate(a, b, 1.0)["w"].tolist() == [2., 0.]
  mid = lottery.interpolate(a, b, 0.5)
  assert mid["w"].dtype == jnp.bfloat16 and mid["w"].tolist() == [1., 2.]
  assert int(mid["n"]) == 3


def _bump(params):
  """Error 1 - (w - 1)^2 on the line w: 0 -> 2 (barrier 1 at w = 1)."""
  return float(1.0 - (params["w"] - 1.0) ** 2)


def test_instability_quadratic_barrier():
  a, b = {"w": jnp.array(0.)}, {"w": jnp.array(2.)}
  out = lottery.instability(a, b, _bump, num_points=31)  # alpha=0.5 on grid
  assert len(out["alphas"]) == len(out["errors"]) == 31
  assert out["alphas"][0] == 0.0 and out["alphas"][-1] == 1.0
  assert out["instability"] == pytest.approx(1.0, abs=1e-6)
  out = lottery.instability(a, b, _bump)  # 30 points: max at alpha=15/29
  assert len(out["alphas"]) == 30
  assert out["instability"] == pytest.approx(1.0 - (1.0 / 29) ** 2, abs=1e-6)
  np.testing.assert_allclose(
      out["errors"], [1.0 - (2 * t - 1) ** 2 for t in np.linspace(0, 1, 30)],
      atol=1e-6)


def test_instability_linear_path_and_identical_nets():
  a, b = {"w": jnp.array(0.)}, {"w": jnp.array(1.)}
  linear = lottery.instability(a, b, lambda p: float(0.1 + 0.2 * p["w"]))
  assert linear["instability"] == pytest.approx(0.1, abs=1e-6)  # (.3-.1)/2
  same = lottery.instability(THETA_T, THETA_T, lambda p: float(
      jnp.sum(p["Dense_0"]["kernel"] ** 2)), num_points=5)
  assert same["instability"] == 0.0
  with pytest.raises(ValueError):
    lottery.instability(a, b, _bump, num_points=1)


# ---------------------------------------------------------------------------
# Docs and packaging
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("module", [_levels, _reset, _controls,
                                    _instability],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0
  assert result.failed == 0


def test_public_api_and_imports():
  for name in lottery.__all__:
    assert hasattr(lottery, name)
  for mod in (_levels, _reset, _controls, _instability):
    src = open(mod.__file__).read()
    assert "import experiments" not in src and "from experiments" not in src
    assert "import launch" not in src and "from launch" not in src
