"""Tests for sparsity/_masks.py: mask algebra, against hand-written arrays."""

import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsity

# The modules that define these public functions (their doctests run here).
_magnitude = inspect.getmodule(sparsity.prune_global)
_masked = inspect.getmodule(sparsity.masked)
_masks = inspect.getmodule(sparsity.apply_mask)
_schedules = inspect.getmodule(sparsity.polynomial_sparsity)


def _params():
  return {
      "Conv_0": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.zeros(4)},
      "BatchNorm_0": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
      "Dense_0": {"kernel": jnp.arange(6.0).reshape(2, 3) - 2.5,
                  "bias": jnp.ones(3)},
  }


T, F = True, False


def test_default_prunable():
  assert sparsity.default_prunable(("Dense_0", "kernel"), jnp.zeros((2, 3)))
  assert sparsity.default_prunable(("Conv_0", "kernel"),
                                   jnp.zeros((3, 3, 2, 4)))
  assert not sparsity.default_prunable(("Dense_0", "bias"), jnp.zeros(3))
  assert not sparsity.default_prunable(("BatchNorm_0", "scale"),
                                       jnp.zeros(4))
  assert not sparsity.default_prunable(("Odd", "kernel"), jnp.zeros(3))
  assert not sparsity.default_prunable(("Dense_0", "kernel_x"),
                                       jnp.zeros((2, 3)))
  assert not sparsity.default_prunable((), jnp.zeros((2, 3)))
  # Works on abstract shapes too.
  assert sparsity.default_prunable(
      ("Dense_0", "kernel"), jax.ShapeDtypeStruct((2, 3), jnp.float32))


def test_create_mask_structure_and_values():
  params = _params()
  mask = sparsity.create_mask(params)
  assert mask["Conv_0"]["bias"] is None
  assert mask["BatchNorm_0"] == {"scale": None, "bias": None}
  assert mask["Dense_0"]["bias"] is None
  for m, shape in [(mask["Conv_0"]["kernel"], (3, 3, 2, 4)),
                   (mask["Dense_0"]["kernel"], (2, 3))]:
    assert m.dtype == jnp.bool_ and m.shape == shape and bool(m.all())
  # Same structure as params once None is a leaf.
  assert (jax.tree.structure(mask, is_leaf=lambda x: x is None)
          == jax.tree.structure(params))


def test_create_mask_custom_predicate_and_abstract_params():
  params = _params()
  mask = sparsity.create_mask(params, lambda path, leaf: path[0] == "Dense_0")
  assert mask["Conv_0"]["kernel"] is None
  assert mask["Dense_0"]["bias"].shape == (3,)
  abstract = jax.eval_shape(sparsity.create_mask, params)
  assert abstract["Dense_0"]["kernel"].dtype == jnp.bool_
  assert abstract["Dense_0"]["bias"] is None


def test_apply_mask_literal_and_untouched_leaves():
  params = _params()
  mask = sparsity.create_mask(params)
  mask["Dense_0"]["kernel"] = jnp.array([[T, F, T], [F, F, T]])
  out = sparsity.apply_mask(params, mask)
  np.testing.assert_array_equal(out["Dense_0"]["kernel"],
                                [[-2.5, 0.0, -0.5], [0.0, 0.0, 2.5]])
  assert out["Dense_0"]["bias"] is params["Dense_0"]["bias"]
  assert out["BatchNorm_0"]["scale"] is params["BatchNorm_0"]["scale"]
  np.testing.assert_array_equal(out["Conv_0"]["kernel"],
                                params["Conv_0"]["kernel"])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16,
                                   jnp.int32])
def test_apply_mask_preserves_dtype_and_jits(dtype):
  params = {"d": {"kernel": jnp.array([[1, -2], [3, 4]], dtype),
                  "bias": jnp.array([5, 6], dtype)}}
  mask = {"d": {"kernel": jnp.array([[T, F], [F, T]]), "bias": None}}
  out = jax.jit(sparsity.apply_mask)(params, mask)
  assert out["d"]["kernel"].dtype == dtype
  assert out["d"]["bias"].dtype == dtype
  np.testing.assert_array_equal(np.asarray(out["d"]["kernel"], np.float32),
                                [[1, 0], [0, 4]])


def test_apply_mask_zeroes_non_finite_pruned_values():
  params = {"k": jnp.array([[jnp.nan, jnp.inf], [1.0, -jnp.inf]])}
  mask = {"k": jnp.array([[F, F], [T, F]])}
  np.testing.assert_array_equal(sparsity.apply_mask(params, mask)["k"],
                                [[0.0, 0.0], [1.0, 0.0]])


def test_combine_masks():
  a = {"x": jnp.array([[T, T], [F, T]]), "y": None, "z": jnp.array([T, F])}
  b = {"x": jnp.array([[T, F], [T, T]]), "y": None, "z": None}
  c = sparsity.combine_masks(a, b)
  np.testing.assert_array_equal(c["x"], [[T, F], [F, T]])
  assert c["y"] is None
  np.testing.assert_array_equal(c["z"], [T, F])  # None AND m == m
  c2 = sparsity.combine_masks(b, a)
  np.testing.assert_array_equal(c2["z"], [T, F])


def test_count_and_remaining_fraction():
  mask = {"a": jnp.array([[T, F, F], [T, T, F]]), "b": None,
          "c": {"kernel": jnp.array([F, F, F, T])}}
  assert sparsity.count(mask) == (4, 10)
  assert isinstance(sparsity.count(mask)[0], int)
  assert sparsity.remaining_fraction(mask) == pytest.approx(0.4)
  assert sparsity.count({"b": None}) == (0, 0)
  assert sparsity.remaining_fraction({"b": None}) == 1.0


def test_summarize_order_and_table():
  params = _params()
  mask = sparsity.create_mask(params)
  mask["Dense_0"]["kernel"] = jnp.array([[T, F, T], [F, F, T]])
  rows = sparsity.summarize(mask)
  # Flattening order: sorted keys (BatchNorm_0 < Conv_0 < Dense_0).
  assert rows == [
      {"name": "Conv_0/kernel", "size": 72, "remaining": 72},
      {"name": "Dense_0/kernel", "size": 6, "remaining": 3},
  ]
  table = sparsity.format_summary_table(rows)
  lines = table.splitlines()
  assert lines[0].split() == ["layer", "size", "remaining", "remaining", "%"]
  assert lines[1].split() == ["Conv_0/kernel", "72", "72", "100.00"]
  assert lines[2].split() == ["Dense_0/kernel", "6", "3", "50.00"]
  assert lines[3].split() == ["total", "78", "75", "96.15"]
  assert sparsity.format_summary_table([]).splitlines()[-1].split() == [
      "total", "0", "0", "-"]


def test_leaf_names():
  assert sparsity.leaf_name(("block1", "Conv_0", "kernel")) == (
      "block1/Conv_0/kernel")
  path = jax.tree_util.tree_flatten_with_path({"a": [{"kernel": 1}]})[0][0][0]
  assert sparsity.leaf_name(path) == "a/0/kernel"
  mask = {"b": {"kernel": jnp.ones((1, 2), bool)}, "a": None}
  params = {"b": {"kernel": jnp.ones((1, 2))}, "a": jnp.ones(3)}
  named = sparsity.masked_leaves(mask, params)
  assert [n for n, _, _ in named] == ["b/kernel"]
  assert named[0][2] is params["b"]["kernel"]


@pytest.mark.parametrize("module", [_masks, _magnitude, _masked, _schedules],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0
  assert result.failed == 0
