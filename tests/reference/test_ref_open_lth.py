"""open_lth magnitude pruning vs ``sparsity.prune_global`` / ``prune_layerwise``.

Reference: facebookresearch/open_lth, ``pruning/sparse_global.py``,
``Strategy.prune`` (commit 2ce732fe48abd5a80c10a153c45d397b048e980c),
transcribed into NumPy below. open_lth has no layer-wise magnitude
strategy (``pruning/registry.py`` registers only ``sparse_global``; the
"layerwise" of ``lottery/branch/randomly_prune.py`` is a random shuffle), so
the layer-wise comparison applies the same rule to one tensor at a time (a
model whose only prunable tensor is that layer).

The convention the tests pin (documented in ``sparsity/_magnitude.py``):
the project removes exactly ``k = round(p n)`` survivors (ties by flat
index); open_lth takes ``threshold = sort(|w|)[ceil(p n)]`` and removes every
survivor with ``|w| <= threshold``: ``ceil(p n) + 1`` weights, plus any tied
with the threshold. On distinct magnitudes its removed set is therefore the
project's plus the ``ceil(p n) + 1 - round(p n)`` smallest survivors of the
project's mask (1 when ``p n`` rounds up or is whole, 2 otherwise).
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import sparsity


# ---------------------------------------------------------------------------
# Transcription: open_lth pruning/sparse_global.py, Strategy.prune
# (torch tensors -> NumPy arrays; ``trained_model.prunable_layer_names`` ->
# the keys of ``weights``; ``Mask`` -> a dict of 0/1 arrays).
# ---------------------------------------------------------------------------

def open_lth_sparse_global(weights, current_mask, pruning_fraction,
                           pruning_layers_to_ignore=None):
  current_mask = ({k: np.ones_like(v) for k, v in weights.items()}
                  if current_mask is None else current_mask)

  # Determine the number of weights that need to be pruned.
  number_of_remaining_weights = np.sum([np.sum(v)
                                        for v in current_mask.values()])
  number_of_weights_to_prune = np.ceil(
      pruning_fraction * number_of_remaining_weights).astype(int)

  # Determine which layers can be pruned.
  prunable_tensors = set(weights)
  if pruning_layers_to_ignore:
    prunable_tensors -= set(pruning_layers_to_ignore.split(","))

  # Get the model weights.
  weights = {k: v.copy() for k, v in weights.items() if k in prunable_tensors}

  # Create a vector of all the unpruned weights in the model.
  weight_vector = np.concatenate([v[current_mask[k] == 1]
                                  for k, v in weights.items()])
  threshold = np.sort(np.abs(weight_vector))[number_of_weights_to_prune]

  new_mask = {k: np.where(np.abs(v) > threshold, current_mask[k],
                          np.zeros_like(v))
              for k, v in weights.items()}
  for k in current_mask:
    if k not in new_mask:
      new_mask[k] = current_mask[k]
  return new_mask


# ---------------------------------------------------------------------------
# Fixed inputs and helpers
# ---------------------------------------------------------------------------

def _weights(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return {name: rng.standard_normal(shape).astype(np.float32)
          for name, shape in shapes.items()}


def _params(weights):
  return {name: {"kernel": jnp.asarray(w)} for name, w in weights.items()}


def _project_mask(mask):
  return {name: np.asarray(leaf["kernel"]).astype(np.float32)
          for name, leaf in mask.items()}


def _smallest_survivors(weights, mask, count):
  """(name, flat index) of the ``count`` smallest |w| with mask == 1."""
  entries = [(abs(float(w.ravel()[i])), name, i)
             for name, w in weights.items()
             for i in np.flatnonzero(mask[name].ravel())]
  return [(name, i) for _, name, i in sorted(entries)[:count]]


def _remove(mask, where):
  out = {k: v.copy() for k, v in mask.items()}
  for name, i in where:
    out[name].ravel()[i] = 0
  return out


SHAPES = {"Dense_0": (8, 6), "Dense_1": (6, 4)}   # n = 72


@pytest.mark.parametrize("p", [0.2, 0.25, 0.5])
def test_global_open_lth_removes_ceil_pn_plus_one(p):
  w = _weights(SHAPES)
  n = sum(v.size for v in w.values())
  ref = open_lth_sparse_global(w, None, p)
  params = _params(w)
  ours = _project_mask(sparsity.prune_global(
      params, sparsity.create_mask(params), p))

  k_ours, k_ref = int(round(p * n)), math.ceil(p * n) + 1
  assert sum(int((1 - m).sum()) for m in ours.values()) == k_ours
  assert sum(int((1 - m).sum()) for m in ref.values()) == k_ref
  # The reference = the project's mask minus its smallest survivors.
  extra = _smallest_survivors(w, ours, k_ref - k_ours)
  expected = _remove(ours, extra)
  for name in w:
    np.testing.assert_array_equal(ref[name], expected[name])
  # p n = 14.4, 18, 36: the reference removes 2, 1, 1 more weights.
  assert k_ref - k_ours == {0.2: 2, 0.25: 1, 0.5: 1}[p]


def test_global_iterative_second_round():
  w = _weights(SHAPES, seed=1)
  params = _params(w)
  mask = sparsity.create_mask(params)
  first = sparsity.prune_global(params, mask, 0.2)
  ours = _project_mask(sparsity.prune_global(params, first, 0.2))
  ref = open_lth_sparse_global(w, _project_mask(first), 0.2)
  alive = sum(int(m.sum()) for m in _project_mask(first).values())   # 58
  k_ours, k_ref = int(round(0.2 * alive)), math.ceil(0.2 * alive) + 1
  extra = _smallest_survivors(w, ours, k_ref - k_ours)
  expected = _remove(ours, extra)
  for name in w:
    np.testing.assert_array_equal(ref[name], expected[name])
    # Neither revives a pruned weight.
    assert np.all(ref[name] <= _project_mask(first)[name])


@pytest.mark.parametrize("p", [0.2, 0.3])
def test_layerwise_is_open_lth_rule_per_tensor(p):
  w = _weights(SHAPES, seed=2)
  params = _params(w)
  ours = _project_mask(sparsity.prune_layerwise(
      params, sparsity.create_mask(params), p))
  for name, v in w.items():
    ref = open_lth_sparse_global({name: v}, None, p)[name]
    k_ours, k_ref = int(round(p * v.size)), math.ceil(p * v.size) + 1
    assert int((1 - ours[name]).sum()) == k_ours
    assert int((1 - ref).sum()) == k_ref
    extra = _smallest_survivors({name: v}, {name: ours[name]},
                                k_ref - k_ours)
    np.testing.assert_array_equal(ref, _remove({name: ours[name]},
                                               extra)[name])


def test_ties_at_threshold_reference_removes_all_of_them():
  # |w| = 0.1, 0.2, 0.2, 0.2, 0.3, ...: p n = 1, the reference's threshold
  # is sort(|w|)[1] = 0.2 and it removes 0.1 and all three 0.2 (4 weights);
  # the project removes exactly round(p n) = 1 (the 0.1).
  v = np.array([[0.2, 0.1, -0.2, 0.3, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8]],
               np.float32)
  ref = open_lth_sparse_global({"Dense_0": v}, None, 0.1)["Dense_0"]
  params = _params({"Dense_0": v})
  ours = _project_mask(sparsity.prune_global(
      params, sparsity.create_mask(params), 0.1))["Dense_0"]
  np.testing.assert_array_equal(ref, [[0, 0, 0, 1, 0, 1, 1, 1, 1, 1]])
  np.testing.assert_array_equal(ours, [[1, 0, 1, 1, 1, 1, 1, 1, 1, 1]])


def test_ignored_layers_count_differently():
  # open_lth counts the survivors of EVERY mask entry, ignored layers
  # included (n = 72), but prunes only the others; the project's
  # ``include`` counts the included leaves only (n = 48).
  w = _weights(SHAPES, seed=3)
  params = _params(w)
  ref = open_lth_sparse_global(w, None, 0.2, "Dense_1")
  ours = _project_mask(sparsity.prune_global(
      params, sparsity.create_mask(params), 0.2,
      include=lambda name: not name.startswith("Dense_1")))
  assert np.all(ref["Dense_1"] == 1) and np.all(ours["Dense_1"] == 1)
  assert int((1 - ref["Dense_0"]).sum()) == math.ceil(0.2 * 72) + 1   # 16
  assert int((1 - ours["Dense_0"]).sum()) == round(0.2 * 48)         # 10
  extra = _smallest_survivors({"Dense_0": w["Dense_0"]},
                              {"Dense_0": ours["Dense_0"]}, 6)
  np.testing.assert_array_equal(
      ref["Dense_0"], _remove({"Dense_0": ours["Dense_0"]}, extra)["Dense_0"])
