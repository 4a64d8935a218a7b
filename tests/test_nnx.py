"""Flax NNX: masks, pruning, `sparsity.masked`, lottery resets and the binary
NNX layers, on `nnx.State` and its pure dict, trained on scikit-learn digits.

The MLP test runs the README's "Flax NNX" example as it is written.
"""

import pathlib
import re

from flax import linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

import binary
import lottery
import sparsity

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _digits():
  d = load_digits()
  x = jnp.asarray(d.data / 16.0, jnp.float32)
  y = jnp.asarray(d.target, jnp.int32)
  return x[:1500], y[:1500], x[1500:], y[1500:]


class _MLP(nnx.Module):

  def __init__(self, rngs):
    self.linear1 = nnx.Linear(64, 32, rngs=rngs)
    self.bn = nnx.BatchNorm(32, rngs=rngs)
    self.linear2 = nnx.Linear(32, 10, rngs=rngs)

  def __call__(self, x):
    return self.linear2(jax.nn.relu(self.bn(self.linear1(x))))


class _LinenMLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.BatchNorm(use_running_average=True)(nn.Dense(32)(x))
    return nn.Dense(10)(jax.nn.relu(x))


class _CNN(nnx.Module):

  def __init__(self, rngs):
    self.conv1 = nnx.Conv(1, 8, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(8, 16, (3, 3), rngs=rngs)
    self.linear = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(-1, 8, 8, 1)
    x = nnx.avg_pool(jax.nn.relu(self.conv1(x)), (2, 2), (2, 2))
    x = nnx.avg_pool(jax.nn.relu(self.conv2(x)), (2, 2), (2, 2))
    return self.linear(x.reshape(x.shape[0], -1))


def _pruned_nonzeros(mask, tree):
  """Non-zero entries of ``tree`` at pruned positions, over masked leaves."""
  return sum(int(jnp.sum(jnp.where(m, 0, w != 0)))
             for _, m, w in sparsity.masked_leaves(mask, tree))


# ---------------------------------------------------------------------------
# Masks on NNX state
# ---------------------------------------------------------------------------

def test_paths_skip_the_variable_value():
  state = nnx.state(_MLP(nnx.Rngs(0)), nnx.Param)
  mask = sparsity.create_mask(state)
  names = [n for n, _ in sparsity.masked_leaves(mask)]
  assert names == ["linear1/kernel", "linear2/kernel"]
  assert sparsity.default_prunable(("l", "kernel", "value"), jnp.ones((2, 2)))
  assert not sparsity.default_prunable(("l", "bias", "value"), jnp.ones(2))
  seen = []
  sparsity.create_mask(state, lambda p, x: seen.append(p) or True)
  assert ("linear1", "kernel") in seen  # what a custom prunable sees


def test_same_prunable_count_as_linen():
  x = jnp.ones((1, 64))
  linen = _LinenMLP().init(jax.random.key(0), x)["params"]
  state = nnx.state(_MLP(nnx.Rngs(0)), nnx.Param)
  want = sparsity.count(sparsity.create_mask(linen))
  assert want == (64 * 32 + 32 * 10,) * 2
  assert sparsity.count(sparsity.create_mask(state)) == want
  pure = nnx.to_pure_dict(state)
  assert sparsity.count(sparsity.create_mask(pure)) == want
  cnn = nnx.state(_CNN(nnx.Rngs(0)), nnx.Param)
  assert sparsity.count(sparsity.create_mask(cnn))[1] == 72 + 1152 + 640


def test_empty_mask_is_an_error_for_linen_and_nnx():
  with pytest.raises(ValueError, match="no prunable leaf.*Dense_0/bias"):
    sparsity.create_mask({"Dense_0": {"bias": jnp.zeros(3)}})
  bn = nnx.state(nnx.BatchNorm(4, rngs=nnx.Rngs(0)), nnx.Param)
  with pytest.raises(ValueError, match="no prunable leaf.*got leaves: bias"):
    sparsity.create_mask(bn)
  with pytest.raises(ValueError, match="accepted by `prunable`"):
    sparsity.create_mask(nnx.state(_MLP(nnx.Rngs(0)), nnx.Param),
                         lambda p, x: False)
  with pytest.raises(TypeError, match="nnx.state"):
    sparsity.create_mask(_MLP(nnx.Rngs(0)))
  empty = sparsity.create_mask(bn, allow_empty=True)
  assert sparsity.masked_leaves(empty) == []


def test_masks_move_between_state_and_pure_dict():
  state = nnx.state(_MLP(nnx.Rngs(0)), nnx.Param)
  pure = nnx.to_pure_dict(state)
  m_state = sparsity.prune_layerwise_to(state, sparsity.create_mask(state),
                                        0.75)
  m_pure = sparsity.prune_layerwise_to(pure, sparsity.create_mask(pure), 0.75)
  assert sparsity.summarize(m_state) == sparsity.summarize(m_pure)
  for mask in (m_state, m_pure):
    for tree in (state, pure, nnx.as_pure(state)):
      out = sparsity.apply_mask(tree, mask)
      assert jax.tree.structure(out) == jax.tree.structure(tree)
      assert _pruned_nonzeros(m_state, out) == 0
  with pytest.raises(ValueError, match="not in it"):
    sparsity.apply_mask({"other": {"kernel": jnp.ones((64, 32))}}, m_pure)


# ---------------------------------------------------------------------------
# Training on digits
# ---------------------------------------------------------------------------

def _readme_example() -> str:
  text = README.read_text()
  section = text.split("\n## Flax NNX\n", 1)[1].split("\n## ", 1)[0]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_mlp_prunes_to_90_percent_with_nnx_optimizer():
  scope = {}
  exec(compile(_readme_example(), str(README), "exec"), scope)  # pylint: disable=exec-used
  model, mask, optimizer = scope["model"], scope["mask"], scope["optimizer"]
  assert sparsity.remaining_fraction(mask) == pytest.approx(0.1, abs=1e-3)
  assert _pruned_nonzeros(mask, nnx.state(model, nnx.Param)) == 0
  adam = optimizer.opt_state.inner_state[0]
  assert _pruned_nonzeros(mask, adam.mu) == 0
  assert _pruned_nonzeros(mask, adam.nu) == 0
  assert scope["accuracy"] > 0.8, scope["accuracy"]


def test_cnn_prunes_to_90_percent_in_a_functional_loop():
  x_train, y_train, x_test, y_test = _digits()
  model = _CNN(nnx.Rngs(1))
  graphdef, params = nnx.split(model, nnx.Param)
  mask = sparsity.create_mask(nnx.to_pure_dict(params))  # the pure form
  tx = sparsity.masked(optax.adam(3e-2))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, mask, x, y):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params, mask=mask)
    return optax.apply_updates(params, updates), opt_state

  targets = {50: 0.5, 80: 0.8, 110: 0.9}
  for t in range(200):
    if t in targets:
      mask = sparsity.prune_global_to(params, mask, targets[t])
      params = sparsity.apply_mask(params, mask)
    i = jax.random.randint(jax.random.key(t), (64,), 0, 1500)
    params, opt_state = step(params, opt_state, mask, x_train[i], y_train[i])
  assert sparsity.remaining_fraction(mask) == pytest.approx(0.1, abs=1e-3)
  assert _pruned_nonzeros(mask, params) == 0
  adam = opt_state.inner_state[0]
  assert _pruned_nonzeros(mask, adam.mu) == 0
  assert _pruned_nonzeros(mask, adam.nu) == 0
  logits = nnx.merge(graphdef, params)(x_test)
  accuracy = float(jnp.mean(logits.argmax(-1) == y_test))
  assert accuracy > 0.6, accuracy


class _BinaryMLP(nnx.Module):

  def __init__(self, rngs):
    self.linear1 = binary.BinaryLinear(64, 128, rngs=rngs)
    self.linear2 = binary.BinaryLinear(128, 10, input_quantizer="ste_sign",
                                       rngs=rngs)

  def __call__(self, x):
    h = self.linear1(x) / 8.0  # a binary kernel: scale by 1/sqrt(fan_in)
    return self.linear2(h) / np.sqrt(128.0)


def test_binary_nnx_mlp_trains_above_chance():
  x_train, y_train, x_test, y_test = _digits()
  model = _BinaryMLP(nnx.Rngs(0))
  tx = optax.chain(optax.adam(3e-3), binary.clip_params(1.0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(
          model(x), y).mean()
    optimizer.update(model, nnx.grad(loss_fn)(model))

  for t in range(200):
    i = jax.random.randint(jax.random.key(t), (64,), 0, 1500)
    step(model, optimizer, x_train[i], y_train[i])
  kernel = model.linear1.kernel[...]
  assert float(jnp.max(jnp.abs(kernel))) <= 1.0  # clip_params found it
  accuracy = float(jnp.mean(model(x_test).argmax(-1) == y_test))
  assert accuracy > 0.6, accuracy


def test_binary_nnx_layers_match_linen():
  x = jax.random.normal(jax.random.key(0), (3, 6, 6, 2))
  conv = binary.BinaryConvNNX(2, 4, (3, 3), strides=2,
                              input_quantizer="ste_sign", rngs=nnx.Rngs(0))
  linen = binary.BinaryConv(4, (3, 3), strides=2, input_quantizer="ste_sign")
  p = {"params": {"kernel": conv.kernel[...], "bias": conv.bias[...]}}
  np.testing.assert_allclose(conv(x), linen.apply(p, x), rtol=1e-6)
  g_nnx = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(conv)
  g_linen = jax.grad(lambda p: jnp.sum(linen.apply(p, x) ** 2))(p)
  np.testing.assert_allclose(g_nnx["kernel"][...],
                             g_linen["params"]["kernel"], rtol=1e-5)
  dense = binary.BinaryLinear(4, 3, rngs=nnx.Rngs(0))
  dense.kernel[...] = dense.kernel[...].at[0, 0].set(0.0)  # a pruned weight
  assert float(binary.binary_kernel(dense.kernel[...], "ste_sign")[0, 0]) == 0
  sto = binary.BinaryLinear(4, 3, kernel_quantizer="stochastic_sign",
                            rngs=nnx.Rngs(0, quantize=1))
  xs = jnp.ones((2, 4))
  np.testing.assert_allclose(sto(xs, deterministic=True),
                             xs @ sto.kernel[...] + sto.bias[...], rtol=1e-6)
  assert sto(xs, deterministic=False).shape == (2, 3)
  with pytest.raises(ValueError, match="deterministic"):
    sto(xs)


# ---------------------------------------------------------------------------
# Lottery resets on NNX state
# ---------------------------------------------------------------------------

def test_lottery_resets_on_nnx_state():
  _, theta0, _ = nnx.split(_MLP(nnx.Rngs(0)), nnx.Param, ...)
  _, theta_t, _ = nnx.split(_MLP(nnx.Rngs(1)), nnx.Param, ...)
  mask = lottery.prune_level(theta_t, sparsity.create_mask(theta_t),
                             rates=0.5)
  assert sparsity.remaining_fraction(mask) == pytest.approx(0.5, abs=1e-2)
  for mode, source in (("init", theta0), ("rewind", theta0),
                       ("lr_rewind", theta_t), ("finetune", theta_t)):
    start, _ = lottery.reset(mode, mask=mask, init_params=theta0,
                             final_params=theta_t)
    assert jax.tree.structure(start) == jax.tree.structure(theta0)
    assert _pruned_nonzeros(mask, start) == 0
    np.testing.assert_array_equal(start["linear2"]["bias"][...],
                                  source["linear2"]["bias"][...])
    kept = sparsity.masked_leaves(mask, start)[0]
    np.testing.assert_array_equal(
        kept[2], jnp.where(kept[1], source["linear1"]["kernel"][...], 0))
  tx = optax.adam(1e-3)
  opt_state = tx.init(theta_t)
  opt_state = jax.tree.map(jnp.ones_like, opt_state)
  rewound = lottery.reset_opt_state("rewind", mask=mask,
                                    rewind_opt_state=opt_state)
  assert _pruned_nonzeros(mask, rewound[0].mu) == 0
  assert _pruned_nonzeros(mask, rewound[0].nu) == 0
  # nnx.Optimizer's own state (moments in OptVariable wrappers).
  optimizer = nnx.Optimizer(_MLP(nnx.Rngs(1)), tx, wrt=nnx.Param)
  saved = jax.tree.map(jnp.ones_like, optimizer.opt_state)
  rewound = lottery.reset_opt_state("rewind", mask=mask,
                                    rewind_opt_state=saved)
  assert _pruned_nonzeros(mask, rewound[0].mu) == 0
  assert _pruned_nonzeros(mask, rewound[0].nu) == 0
  rand = lottery.random_prune(jax.random.key(0), mask)
  assert sparsity.summarize(rand) == sparsity.summarize(mask)
  mid = lottery.interpolate(theta0, theta_t, 0.5)
  assert jax.tree.structure(mid) == jax.tree.structure(theta0)
