"""The optimizer/STE ablation's STE axis (experiments/configs/ablation_digits).

The identity STE (`ste_identity_sign`) and the clipped STE (`ste_sign`,
window |w| <= 1) differ only at latent weights outside the window. With
weight clipping on (`clip_weights=1`) no weight is ever outside, so the
two columns are the same function; the grid therefore also runs them with
weight clipping off (Alizadeh et al. 2019 vary exactly these two: gradient
clipping and the weight constraint), and each run records the fraction of
latent weights outside the window (`train.latent_window_stats`).
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import models
from experiments import sweep as sweep_lib
from experiments import train
from experiments.configs import ablation_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "ablation_digits.py")


def _config(quantizer, clip_weights):
  config = ablation_digits.get_config()
  config.model_kwargs.hidden = (16,)
  config.model_kwargs.kernel_quantizer = quantizer
  config.clip_weights = clip_weights
  return config


def _binary_kernels(params):
  return {path: leaf for path, leaf in
          jax.tree_util.tree_flatten_with_path(params)[0]
          if models.is_binary_kernel(
              tuple(str(getattr(k, "key", k)) for k in path), leaf)}


def _grads(quantizer, params, batch_stats, x, y):
  run = train.build(_config(quantizer, 0.0))

  def loss(p):
    out = run.model.apply({"params": p, "batch_stats": batch_stats}, x,
                          train=False)
    return jnp.sum(out * y)

  return jax.grad(loss)(params)


def test_stes_differ_exactly_outside_the_window():
  run = train.build(_config("ste_sign", 0.0))
  state = run.init_state(jax.random.PRNGKey(0))
  # Latent weights as weight clipping off lets them become: x 1.5, so about
  # a third of the Uniform(-1, 1)-initialized entries have |w| > 1.
  params = jax.tree_util.tree_map_with_path(
      lambda path, w: w * 1.5 if models.is_binary_kernel(
          tuple(str(getattr(k, "key", k)) for k in path), w) else w,
      state.params)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(8, *run.dataset.input_shape)),
                  jnp.float32)
  y = jnp.asarray(rng.normal(size=(8, run.dataset.num_classes)), jnp.float32)
  g_clip = _grads("ste_sign", params, state.batch_stats, x, y)
  g_id = _grads("ste_identity_sign", params, state.batch_stats, x, y)

  kernels = _binary_kernels(params)
  assert len(kernels) == 2  # binary_first and binary_last: both binary
  gc, gi = _binary_kernels(g_clip), _binary_kernels(g_id)
  n_out = 0
  for path, w in kernels.items():
    out = np.abs(np.asarray(w)) > 1.0
    a, b = np.asarray(gc[path]), np.asarray(gi[path])
    assert out.any() and (~out).any()
    n_out += out.sum()
    # Inside the window: the same gradient, bit for bit.
    np.testing.assert_array_equal(a[~out], b[~out])
    # Outside: the clipped STE passes nothing, the identity STE passes it.
    assert np.all(a[out] == 0)
    assert np.mean(b[out] != 0) > 0.9
  # Every other leaf (biases, BatchNorm) gets the same gradient: the two
  # quantizers have the same forward pass.
  for (path, a), (_, b) in zip(
      jax.tree_util.tree_flatten_with_path(g_clip)[0],
      jax.tree_util.tree_flatten_with_path(g_id)[0]):
    if path not in kernels:
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  total = sum(w.size for w in kernels.values())
  stats = train.latent_window_stats(params)
  assert stats["latent_outside_window"] == n_out / total
  assert stats["latent_abs_max"] == max(
      float(jnp.max(jnp.abs(w))) for w in kernels.values())


def test_weight_clipping_keeps_weights_inside_the_window():
  """With clip_weights=1 one step puts every latent weight back in the
  window (so the STEs coincide from then on); with 0 they stay outside."""
  for clip, outside in ((1.0, False), (0.0, True)):
    run = train.build(_config("ste_identity_sign", clip))
    state = run.init_state(jax.random.PRNGKey(0))
    params = jax.tree.map(lambda w: w * 3.0, state.params)
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = run.tx.update(grads, run.tx.init(params), params,
                               mask=state.mask)
    new = jax.tree.map(lambda p, u: p + u, params, updates)
    stats = train.latent_window_stats(new)
    assert (stats["latent_outside_window"] > 0.5) == outside, (clip, stats)
    assert (stats["latent_abs_max"] <= 1.0) == (not outside)


def test_latent_window_stats():
  params = {"BinaryDense_0": {"kernel": jnp.array([[0.5, -1.0], [1.5, 0.0]]),
                              "bias": jnp.array([9.0, 9.0])},
            "Dense_1": {"kernel": jnp.array([[5.0, 5.0]])}}
  # Live entries 0.5, -1.0, 1.5 (the pruned 0 is left out); only 1.5 is
  # outside the inclusive window |w| <= 1; biases and real layers ignored.
  assert train.latent_window_stats(params) == {
      "latent_outside_window": 1 / 3, "latent_abs_max": 1.5}
  assert train.latent_window_stats(params, window=0.4) == {
      "latent_outside_window": 1.0, "latent_abs_max": 1.5}
  assert train.latent_window_stats({"Dense_1": params["Dense_1"]}) == {}


def test_grid_has_the_ste_by_weight_clipping_axis():
  s = sweep_lib.load(CONFIG)
  axis = {"optimizer": ["sgd", "momentum", "adam"],
          "model_kwargs.kernel_quantizer": ["ste_identity_sign", "ste_sign"],
          "clip_weights": [0.0, 1.0]}
  assert axis in s.grids
  i = s.grids.index(axis)
  members = [p for p in s.points if i in p.grids]
  assert len(members) == 3 * 2 * 2 * 5
  for opt in axis["optimizer"]:
    for q in axis["model_kwargs.kernel_quantizer"]:
      for clip in (0.0, 1.0):
        seeds = sorted(p.seed for p in members
                       if p.values["optimizer"] == opt
                       and p.values["model_kwargs.kernel_quantizer"] == q
                       and p.values["clip_weights"] == clip)
        assert seeds == [0, 1, 2, 3, 4], (opt, q, clip)


def test_results_report_the_fraction_outside_the_window(tmp_path):
  path = tmp_path / "sweep.py"
  path.write_text(
      "from experiments.configs import ablation_digits\n"
      "get_config = ablation_digits.get_config\n"
      "def get_sweep():\n"
      "  return {'seeds': [0, 1], 'grids': [{'clip_weights': [0.0, 1.0]}]}\n")
  s = sweep_lib.load(str(path), check_build=False)
  rows = []
  for p, (acc, frac) in zip(s.points, [(0.9, 0.25), (0.8, 0.75),
                                       (0.7, 0.0), (0.6, 0.0)]):
    rows.append({"name": p.name, **p.values, "seed": p.seed,
                 "test_accuracy": acc, "test_loss": 0.1,
                 "latent_outside_window": frac, "step": 1,
                 "wall_seconds": 1.0, "status": "ok"})
  md = sweep_lib.markdown(s, rows)
  assert "| clip_weights | test accuracy | n | latent_outside_window |" in md
  std = np.std([0.9, 0.8], ddof=1)  # the sample std, the same for both
  half = 12.706204736174696 * std / np.sqrt(2)  # t(0.975, 1) s / sqrt(2)
  assert (f"| 0.0 | 0.8500 ± {std:.4f} [{0.85 - half:.4f}, "
          f"{0.85 + half:.4f}] | 2 | 0.5 |") in md, md
  assert (f"| 1.0 | 0.6500 ± {np.std([0.7, 0.6], ddof=1):.4f} "
          f"[{0.65 - half:.4f}, {0.65 + half:.4f}] | 2 | 0 |") in md, md
