"""Network Slimming vs ``sparsity.bn_scale_l1`` / ``slimming_filter_masks``.

Reference: Eric-mingjie/network-slimming (commit
b395dc07521cbc38f741d971a18fe3f6423c9ab1), transcribed into NumPy below:

* ``main.py``, ``updateBN``: ``m.weight.grad.data.add_(args.s *
  torch.sign(m.weight.data))`` for every ``nn.BatchNorm2d``, called between
  ``loss.backward()`` and ``optimizer.step()``;
* ``vggprune.py`` (identical lines in ``resprune.py`` and
  ``mask-impl/prune_mask.py``): all BN ``|gamma|`` concatenated in module
  order, ``y, i = torch.sort(bn)``, ``thre_index = int(total *
  args.percent)``, ``thre = y[thre_index]``, ``mask =
  weight_copy.gt(thre)``.

Pinned departures (documented in ``sparsity/_slimming.py``): the reference
prunes every ``|gamma| <= sort(|gamma|)[k]``, i.e. ``k + 1`` channels (the
project's ``k`` plus its smallest surviving channel) and every channel tied
with the threshold; the project prunes exactly ``k = floor(p * total)``
(ties: earlier layer, lower channel) and keeps at least one channel per
layer, where the reference empties the layer.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import sparsity


# ---------------------------------------------------------------------------
# Transcriptions
# ---------------------------------------------------------------------------

def update_bn(bn_grads, bn_weights, s):
  """main.py ``updateBN`` on lists of float32 arrays (returns new grads)."""
  return [g + np.float32(s) * np.sign(w)
          for g, w in zip(bn_grads, bn_weights)]


def vggprune_masks(bn_weights, percent):
  """vggprune.py: the channel masks (1 = kept) of every BatchNorm layer."""
  total = 0
  for w in bn_weights:
    total += w.shape[0]

  bn = np.zeros(total, np.float32)
  index = 0
  for w in bn_weights:
    size = w.shape[0]
    bn[index:(index + size)] = np.abs(w)
    index += size

  y = np.sort(bn)                    # y, i = torch.sort(bn)
  thre_index = int(total * percent)
  thre = y[thre_index]

  cfg_mask = []
  for w in bn_weights:
    weight_copy = np.abs(w)
    mask = (weight_copy > thre).astype(np.float32)   # weight_copy.gt(thre)
    cfg_mask.append(mask)
  return cfg_mask


# ---------------------------------------------------------------------------

def test_update_bn_matches_bn_scale_l1():
  rng = np.random.default_rng(0)
  gammas = [rng.standard_normal(6).astype(np.float32),
            rng.standard_normal(4).astype(np.float32)]
  gammas[0][2] = 0.0          # sign(0) = 0 in both: no push
  grads = [rng.standard_normal(6).astype(np.float32),
           rng.standard_normal(4).astype(np.float32)]
  s = 1e-4
  params = {"Conv_0": {"kernel": jnp.ones((3, 3, 2, 6))},
            "BatchNorm_0": {"scale": jnp.asarray(gammas[0]),
                            "bias": jnp.ones(6)},
            "BatchNorm_1": {"scale": jnp.asarray(gammas[1]),
                            "bias": jnp.ones(4)}}
  g = {"Conv_0": {"kernel": jnp.full((3, 3, 2, 6), 0.5)},
       "BatchNorm_0": {"scale": jnp.asarray(grads[0]), "bias": jnp.zeros(6)},
       "BatchNorm_1": {"scale": jnp.asarray(grads[1]), "bias": jnp.zeros(4)}}
  tx = sparsity.bn_scale_l1(s)
  out, _ = tx.update(g, tx.init(params), params)
  ref = update_bn(grads, gammas, s)
  np.testing.assert_array_equal(np.asarray(out["BatchNorm_0"]["scale"]),
                                ref[0])
  np.testing.assert_array_equal(np.asarray(out["BatchNorm_1"]["scale"]),
                                ref[1])
  # updateBN touches only the BN weights (gamma), not beta or conv kernels.
  np.testing.assert_array_equal(np.asarray(out["BatchNorm_0"]["bias"]), 0)
  np.testing.assert_array_equal(np.asarray(out["Conv_0"]["kernel"]), 0.5)


def _gammas(sizes, seed):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(c).astype(np.float32) for c in sizes]


@pytest.mark.parametrize("percent,seed", [(0.5, 1), (0.3, 2), (0.7, 3)])
def test_threshold_reference_prunes_one_more(percent, seed):
  gammas = _gammas([8, 12, 16], seed)            # total = 36
  ref = vggprune_masks(gammas, percent)
  ours = sparsity.slimming_filter_masks(
      {f"Conv_{i}": g for i, g in enumerate(gammas)}, percent)
  ours = [ours[f"Conv_{i}"] for i in range(3)]
  k = int(36 * percent)
  assert sum(int((~m).sum()) for m in ours) == k
  assert sum(int((1 - m).sum()) for m in ref) == k + 1
  # The extra channel is the smallest |gamma| the project keeps.
  flat = np.concatenate([np.abs(g) for g in gammas])
  kept = np.concatenate(ours)
  extra = np.flatnonzero(kept)[np.argmin(flat[kept])]
  expected = kept.copy()
  expected[extra] = False
  np.testing.assert_array_equal(np.concatenate(ref).astype(bool), expected)


def test_ties_and_empty_layer():
  # |gamma| sorted: 0.1 0.2 0.3 0.3 0.3 0.9. With p = 0.5 (k = 3) the
  # reference's threshold is sort(|gamma|)[3] = 0.3, tied three times, so it
  # prunes |gamma| <= 0.3: five channels, the whole of b included. The
  # project prunes exactly 3: 0.1, 0.2 and, of the tied 0.3, the one of the
  # earlier layer with the lower index (a[0]).
  a = np.array([0.3, 0.9, -0.3], np.float32)
  b = np.array([0.1, -0.2, 0.3], np.float32)
  ref = vggprune_masks([a, b], 0.5)
  ours = sparsity.slimming_filter_masks({"a": a, "b": b}, 0.5)
  np.testing.assert_array_equal(ref[0], [0, 1, 0])
  np.testing.assert_array_equal(ref[1], [0, 0, 0])
  np.testing.assert_array_equal(ours["a"], [False, True, True])
  np.testing.assert_array_equal(ours["b"], [False, False, True])
  # An empty layer in the reference, the guard in the project:
  c = np.array([0.01, 0.02], np.float32)
  d = np.array([0.5, 0.6, 0.7, 0.8], np.float32)
  ref = vggprune_masks([c, d], 0.34)            # k = int(2.04) = 2
  ours = sparsity.slimming_filter_masks({"c": c, "d": d}, 0.34)
  np.testing.assert_array_equal(ref[0], [0, 0])
  np.testing.assert_array_equal(ref[1], [0, 1, 1, 1])
  np.testing.assert_array_equal(ours["c"], [False, True])
  np.testing.assert_array_equal(ours["d"], [True, True, True, True])
