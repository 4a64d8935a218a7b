"""Tests for sparsity/_filters.py: filter masks against hand-written arrays."""

import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import conformance
import sparsity

# The modules that define these public functions (their doctests run here).
_filters = inspect.getmodule(sparsity.channel_groups)

T, F = True, False


def _params():
  return {
      "Conv_0": {"kernel": jnp.arange(1.0, 25.0).reshape(2, 1, 3, 4),
                 "bias": jnp.arange(1.0, 5.0)},
      "BatchNorm_0": {"scale": jnp.ones(4), "bias": jnp.full(4, 0.5)},
      "Dense_0": {"kernel": jnp.arange(1.0, 7.0).reshape(2, 3),
                  "bias": jnp.ones(3)},
  }


def _layers():
  """A hand-written layer list: conv -> bn -> relu -> flatten -> dense."""
  p = lambda *k: ["params", *k]  # noqa: E731
  return [
      {"name": "Conv_0", "op": "conv", "inputs": ["input"],
       "params": {"kernel": p("Conv_0", "kernel"), "bias": p("Conv_0", "bias")}},
      {"name": "BatchNorm_0", "op": "batchnorm", "inputs": ["Conv_0"],
       "params": {"scale": p("BatchNorm_0", "scale"),
                  "bias": p("BatchNorm_0", "bias"),
                  "mean": ["batch_stats", "BatchNorm_0", "mean"],
                  "var": ["batch_stats", "BatchNorm_0", "var"]}},
      {"name": "relu_0", "op": "activation", "kind": "relu",
       "inputs": ["BatchNorm_0"], "params": {}},
      {"name": "flatten_0", "op": "flatten", "inputs": ["relu_0"],
       "params": {}},
      {"name": "Dense_0", "op": "dense", "inputs": ["flatten_0"],
       "params": {"kernel": p("Dense_0", "kernel")}},
  ]


def test_channel_groups_hand_written_list():
  assert sparsity.channel_groups(_layers()) == {"Conv_0": ["BatchNorm_0"],
                                                "Dense_0": []}


def test_channel_groups_resnet20_layer_list():
  from experiments import models  # pylint: disable=g-import-not-at-top
  layers = models.layer_list(models.get_model("resnet20", 10), (32, 32, 3))
  groups = sparsity.channel_groups(layers)
  convs = [e["name"] for e in layers if e["op"] == "conv"]
  assert set(convs) <= set(groups)
  # Every conv of ResNet-20 is followed by exactly its own BatchNorm, which
  # has the conv's number of channels.
  params = models.abstract_variables(models.get_model("resnet20", 10),
                                     (32, 32, 3))["params"]
  flat = {sparsity.leaf_name(p): x for p, x in
          jax.tree_util.tree_flatten_with_path(params)[0]}
  for conv in convs:
    assert len(groups[conv]) == 1, conv
    bn = groups[conv][0]
    assert "BatchNorm" in bn
    assert (flat[f"{bn}/scale"].shape[0]
            == flat[f"{conv}/kernel"].shape[-1]), conv
  # An expanded mask of all-True filter masks covers every conv's BN.
  fm = {k: v for k, v in sparsity.filters_of(None, params).items()
        if k in groups}
  mask = sparsity.expand_filter_masks(params, fm, groups,
                                      sparsity.create_mask(params))
  named = dict((n, m) for n, m in sparsity.masked_leaves(mask))
  assert f"{groups[convs[5]][0]}/scale" in named
  assert all(bool(m.all()) for m in named.values())


def test_expand_broadcasts_onto_kernel_bias_and_batchnorm():
  params = _params()
  keep = jnp.array([T, F, T, F])
  mask = sparsity.expand_filter_masks(
      params, {"Conv_0": keep}, sparsity.channel_groups(_layers()))
  k = np.asarray(mask["Conv_0"]["kernel"])
  assert k.shape == (2, 1, 3, 4) and k.dtype == np.bool_
  expected = np.broadcast_to(np.array([T, F, T, F]), (2, 1, 3, 4))
  np.testing.assert_array_equal(k, expected)
  np.testing.assert_array_equal(mask["Conv_0"]["bias"], [T, F, T, F])
  np.testing.assert_array_equal(mask["BatchNorm_0"]["scale"], [T, F, T, F])
  np.testing.assert_array_equal(mask["BatchNorm_0"]["bias"], [T, F, T, F])
  # Other layers are untouched (no weight mask given: None).
  assert mask["Dense_0"] == {"kernel": None, "bias": None}
  masked = sparsity.apply_mask(params, mask)
  np.testing.assert_array_equal(masked["Conv_0"]["bias"], [1., 0., 3., 0.])
  np.testing.assert_array_equal(masked["BatchNorm_0"]["bias"],
                                [0.5, 0., 0.5, 0.])
  np.testing.assert_array_equal(masked["Conv_0"]["kernel"][1, 0, 2],
                                [21., 0., 23., 0.])


def test_expand_composes_with_weight_mask():
  params = _params()
  weight_mask = sparsity.create_mask(params)
  weight_mask["Dense_0"]["kernel"] = jnp.array([[T, F, T], [T, T, F]])
  out = sparsity.expand_filter_masks(params,
                                     {"Dense_0": jnp.array([T, T, F])},
                                     mask=weight_mask)
  np.testing.assert_array_equal(out["Dense_0"]["kernel"],
                                [[T, F, F], [T, T, F]])
  np.testing.assert_array_equal(out["Dense_0"]["bias"], [T, T, F])
  # The conv keeps its weight mask (all True), its bias stays unmasked.
  assert bool(out["Conv_0"]["kernel"].all())
  assert out["Conv_0"]["bias"] is None
  # Same result as combine_masks of the filter-only mask and the weight mask.
  only = sparsity.expand_filter_masks(params,
                                      {"Dense_0": jnp.array([T, T, F])})
  combined = sparsity.combine_masks(weight_mask, only)
  np.testing.assert_array_equal(combined["Dense_0"]["kernel"],
                                out["Dense_0"]["kernel"])


def test_expand_is_jittable_and_structure_does_not_depend_on_values():
  params = _params()
  groups = {"Conv_0": ["BatchNorm_0"]}
  f = jax.jit(lambda k: sparsity.expand_filter_masks(params, {"Conv_0": k},
                                                     groups))
  a, b = f(jnp.array([T, T, T, T])), f(jnp.array([F, F, T, F]))
  assert (jax.tree.structure(a, is_leaf=lambda x: x is None)
          == jax.tree.structure(b, is_leaf=lambda x: x is None))
  np.testing.assert_array_equal(b["BatchNorm_0"]["scale"], [F, F, T, F])
  assert f._cache_size() == 1  # pylint: disable=protected-access


def test_expand_refuses_bad_names_and_lengths():
  params = _params()
  with pytest.raises(KeyError, match="Conv_9/kernel"):
    sparsity.expand_filter_masks(params, {"Conv_9": jnp.ones(4, bool)})
  with pytest.raises(ValueError, match="Conv_0"):
    sparsity.expand_filter_masks(params, {"Conv_0": jnp.ones(3, bool)})
  with pytest.raises(ValueError, match="Dense_0/bias"):
    sparsity.expand_filter_masks(params, {"Conv_0": jnp.ones(4, bool)},
                                 {"Conv_0": ["Dense_0"]})


def test_expand_resolves_call_suffix_names():
  params = {"Conv_0": {"kernel": jnp.ones((1, 1, 1, 2))}}
  out = sparsity.expand_filter_masks(params,
                                     {"Conv_0_call1": jnp.array([T, F])})
  np.testing.assert_array_equal(out["Conv_0"]["kernel"][0, 0, 0], [T, F])


def test_filters_of_any_kept_weight():
  params = _params()
  mask = sparsity.create_mask(params)
  k = np.ones((2, 1, 3, 4), bool)
  k[..., 1] = False
  k[..., 3] = False
  k[1, 0, 2, 3] = True  # one weight keeps filter 3 alive
  mask["Conv_0"]["kernel"] = jnp.asarray(k)
  out = sparsity.filters_of(mask, params)
  assert list(out) == ["Conv_0", "Dense_0"]
  np.testing.assert_array_equal(out["Conv_0"], [T, F, T, T])
  np.testing.assert_array_equal(out["Dense_0"], [T, T, T])
  # filters_of of an expanded filter mask gives the filter mask back.
  keep = jnp.array([F, T, T, F])
  expanded = sparsity.expand_filter_masks(params, {"Conv_0": keep})
  np.testing.assert_array_equal(
      sparsity.filters_of(expanded, params)["Conv_0"], keep)


def test_masked_training_keeps_dropped_filter_and_its_bn_at_zero():
  """A conv+BN model: dropped channel's kernel, bias, BN scale/shift and
  their Adam moments stay exactly 0, so the channel is 0 after the BN."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class Net(nn.Module):

    @nn.compact
    def __call__(self, x, train):
      x = nn.Conv(4, (3, 3))(x)
      x = nn.BatchNorm(use_running_average=not train)(x)
      return nn.relu(x)

  model = Net()
  x = jax.random.normal(jax.random.key(0), (8, 5, 5, 2))
  variables = model.init(jax.random.key(1), x, train=False)
  params, stats = variables["params"], variables["batch_stats"]
  groups = {"Conv_0": ["BatchNorm_0"]}
  mask = sparsity.expand_filter_masks(
      params, {"Conv_0": jnp.array([T, F, T, T])}, groups,
      sparsity.create_mask(params))
  params = sparsity.apply_mask(params, mask)
  tx = sparsity.masked(optax.adam(0.1))
  state = tx.init(params)

  @jax.jit
  def step(params, stats, state):
    def loss(p):
      y, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                           mutable=["batch_stats"])
      return jnp.mean((y - 1.0) ** 2), new["batch_stats"]
    (_, stats), g = jax.value_and_grad(loss, has_aux=True)(params)
    u, state = tx.update(g, state, params, mask=mask)
    return optax.apply_updates(params, u), stats, state

  for _ in range(5):
    params, stats, state = step(params, stats, state)
  assert float(jnp.abs(params["Conv_0"]["kernel"][..., 1]).max()) == 0.0
  assert float(params["Conv_0"]["bias"][1]) == 0.0
  assert float(params["BatchNorm_0"]["scale"][1]) == 0.0
  assert float(params["BatchNorm_0"]["bias"][1]) == 0.0
  mu = state.inner_state[0].mu
  assert float(mu["BatchNorm_0"]["scale"][1]) == 0.0
  assert float(jnp.abs(mu["Conv_0"]["kernel"][..., 1]).max()) == 0.0
  assert float(jnp.abs(params["BatchNorm_0"]["scale"][0] - 1.0)) > 0.0
  y = model.apply({"params": params, "batch_stats": stats}, x, train=False)
  assert float(jnp.abs(y[..., 1]).max()) == 0.0
  assert float(jnp.abs(y[..., 0]).max()) > 0.0


def test_project_to_mask_zeroes_unmasked_params():
  params = {"k": jnp.array([[1., 2.], [3., 4.]]), "b": jnp.array([5., 6.])}
  mask = {"k": jnp.array([[T, F], [T, T]]), "b": None}
  tx = optax.chain(sparsity.masked(optax.sgd(1.0)),
                   sparsity.project_to_mask())
  u, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params),
                   params, mask=mask)
  out = optax.apply_updates(params, u)
  np.testing.assert_array_equal(out["k"], [[0., 0.], [2., 3.]])
  np.testing.assert_array_equal(out["b"], [4., 5.])


def test_filter_masks_are_in_the_conformance_suite():
  names = [t.name for t in conformance.TRANSFORMS]
  assert "sparsity.expand_filter_masks" in names
  # The entry's mask really drops whole filters and masks biases.
  params = conformance.mlp_params(jax.random.key(0))
  mask = conformance.random_mask(jax.random.key(1), params, 0.35)
  expanded = conformance.filter_expanded_mask(mask)
  bias = np.asarray(expanded["Dense_0"]["bias"])
  assert not bias[0] and not bias[3] and bias.sum() > 0
  np.testing.assert_array_equal(
      np.asarray(expanded["Dense_0"]["kernel"]).any(axis=0), bias)
  assert expanded["Dense_2"]["bias"] is None


def test_doctests():
  result = doctest.testmod(_filters, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
