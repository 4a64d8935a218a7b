"""FBS gating in the CPU evaluator: the ``wta`` op and ``abs`` activation,
their validation, and the skipping of gated channels
(``experiments/export/_gating.py``) against JAX and against the full
computation."""
import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import export
from experiments import models
from experiments import drivers
from experiments import train
from experiments.configs import fbs_digits
from experiments.export import _gating
from experiments.export import _ops
from experiments.export import _spec
from launch import evaluate
import sparsity
from tests import _layer_list_ref as ref

F32 = np.float32


# --------------------------------------------------------------- wta op --
def test_wta_hand_computed_ties_lower_index_wins():
  g = np.array([[1, 3, 3, 2, 3], [0, 0, 5, 0, 0], [2, 2, 2, 2, 2]], F32)
  want = np.array([[0, 3, 3, 0, 0], [0, 0, 5, 0, 0], [2, 2, 0, 0, 0]], F32)
  np.testing.assert_array_equal(_ops.wta(g, 2), want)
  np.testing.assert_array_equal(ref.wta(g.astype(np.float64), 2), want)
  assert _ops.wta(g, 5) is g  # k = C: nothing suppressed


def test_wta_matches_jax_with_many_ties():
  rng = np.random.default_rng(0)
  g = rng.integers(0, 4, (50, 12)).astype(F32)  # many ties
  for k in (1, 5, 11, 12):
    want = np.asarray(sparsity.winners_take_all(jnp.asarray(g), k))
    np.testing.assert_array_equal(_ops.wta(g, k), want)
    np.testing.assert_array_equal(ref.wta(g.astype(np.float64), k), want)


def test_wta_count_matches_sparsity():
  for c in (1, 3, 10, 64, 192):
    for d in (0.01, 0.1, 0.25, 0.5, 0.7, 0.75, 1.0):
      assert _spec.wta_count(d, c) == sparsity.wta_count(d, c), (d, c)


# ------------------------------------------------------ FBS digits model --
def _variables(model, input_shape, seed=0, dead_channel=None):
  """Random trained-like variables; ``dead_channel`` (c) makes the
  saliency of output channel c of FBSConv_0 always 0 (bias -100)."""
  rng = np.random.default_rng(seed)

  def f(path, leaf):
    keys = [p.key for p in path]
    shape, last = leaf.shape, keys[-1]
    if last == "kernel":
      new = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    elif last == "var":
      new = rng.uniform(0.5, 2.0, shape)
    elif last == "scale":
      new = rng.uniform(0.5, 1.5, shape)
    elif last == "bias" and "saliency" in keys:
      new = rng.uniform(0.2, 1.0, shape)  # saliencies mostly positive
    else:  # bias, mean
      new = rng.normal(0.0, 0.3, shape)
    return np.asarray(new, np.float32)

  v = jax.tree_util.tree_map_with_path(
      f, models.abstract_variables(model, input_shape))
  v = jax.tree.map(np.asarray, v)
  if dead_channel is not None:
    v["params"]["FBSConv_0"]["saliency"]["bias"][dead_channel] = -100.0
  return v


def _fbs_digits(density, seed=0, dead_channel=None):
  model = models.get_model("fbs_digits_cnn", 10, density=density)
  layers = models.layer_list(model, (8, 8, 1))
  variables = _variables(model, (8, 8, 1), seed, dead_channel)
  header, tensors = export.encode(layers, variables, input_shape=(8, 8, 1))
  return model, layers, variables, header, tensors


def _x(n=12, seed=1):
  return np.random.default_rng(seed).standard_normal((n, 8, 8, 1)).astype(F32)


@pytest.mark.parametrize("density", [0.5, 1.0])
def test_fbs_digits_matches_jax_and_full_computation(density, monkeypatch):
  model, layers, variables, header, tensors = _fbs_digits(density)
  x = _x()
  want = np.asarray(model.apply(variables, x, train=False))
  skip = export.Model(header, tensors)
  full = export.Model(header, tensors, skip_gated=False)
  got = skip(x)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
  np.testing.assert_allclose(got, full(x), rtol=1e-5, atol=1e-5)
  # The NumPy twins of the numba gathers compute the same products; so do
  # one example at a time (chunks of 1, and a batch of 1).
  np.testing.assert_array_equal(
      export.Model(header, tensors, use_numba=False)(x), got)
  np.testing.assert_allclose(export.Model(header, tensors)(x[3:4]),
                             got[3:4], rtol=1e-5, atol=1e-5)
  monkeypatch.setattr(_gating, "_KERNEL_CHUNK", 1)
  np.testing.assert_array_equal(export.Model(header, tensors)(x), got)
  np.testing.assert_allclose(ref.run(layers, variables, x), want, rtol=0,
                             atol=1e-4)
  kernels = {r["name"]: r["kernel"] for r in skip.plan()}
  assert kernels["Conv_0"] == "blas"  # ungated first layer
  assert kernels["FBSConv_0/Conv_0"] == "blas skip(out <- wta_0)"
  assert kernels["FBSConv_1/Conv_0"] == (
      "blas skip(out <- wta_1, in <- wta_0)")
  assert kernels["FBSConv_2/Conv_0"] == (
      "blas skip(out <- wta_2, in <- wta_1)")
  assert all("skip" not in r["kernel"] for r in full.plan())
  # MACs computed: per layer, the batch's largest count of kept input
  # channels times that of kept output channels (from JAX's sown gates).
  _, state = model.apply(variables, x, train=False, mutable=["fbs_gates"])
  keep = {int(k.split("_")[1]): np.asarray(v["keep"][0])
          for k, v in state["fbs_gates"].items()}
  most = {i: int(k.sum(-1).max()) for i, k in keep.items()}
  shapes = {0: (8, 8, 32, 32), 1: (4, 4, 32, 64), 2: (4, 4, 64, 64)}
  macs = skip.macs()
  assert set(macs) == {f"FBSConv_{i}/Conv_0" for i in shapes}
  for i, (h, w, cin, cout) in shapes.items():
    done, dense = macs[f"FBSConv_{i}/Conv_0"]
    assert dense == 12 * h * w * 9 * cin * cout
    kin = cin if i == 0 else most[i - 1]
    assert done == 12 * h * w * 9 * kin * most[i], i
    if density < 1:
      assert most[i] <= cout // 2 and done <= dense // (2 if i == 0 else 4)


def test_skipped_channels_are_not_computed():
  """Weights near float32's largest value in the kernel of a channel that is
  never kept poison the full computation (their sums overflow to inf, and
  the gate's inf * 0 is NaN) but not the skipping one: the conv never
  computes that output channel, and the next conv never reads it. (Finite
  weights: the evaluator refuses NaN and inf at load.)"""
  c = 5
  model, _, variables, header, tensors = _fbs_digits(0.5, dead_channel=c)
  x = _x()
  clean = export.Model(header, tensors, skip_gated=False)(x)
  tensors = dict(tensors)
  k0 = tensors["FBSConv_0/Conv_0/kernel"].copy()
  k0[..., c] = 3e38             # output channel c of the gated conv
  k1 = tensors["FBSConv_1/Conv_0/kernel"].copy()
  k1[:, :, c, :] = 3e38         # input channel c of the next conv
  tensors["FBSConv_0/Conv_0/kernel"] = k0
  tensors["FBSConv_1/Conv_0/kernel"] = k1
  with np.errstate(all="ignore"):  # the overflow is the point
    skip = export.Model(header, tensors)
    full = export.Model(header, tensors, skip_gated=False)
    poisoned = full(x)
  assert not np.all(np.isfinite(poisoned))
  np.testing.assert_allclose(skip(x), clean, rtol=0, atol=1e-5)


def test_fold_batchnorm_with_skipping():
  _, _, _, header, tensors = _fbs_digits(0.5, seed=3)
  x = _x(seed=4)
  want = export.Model(header, tensors, skip_gated=False)(x)
  m = export.Model(header, tensors, fold_batchnorm=True)
  kernels = {r["name"]: r["kernel"] for r in m.plan()}
  assert kernels["FBSConv_1/Conv_0"] == (
      "blas+bn skip(out <- wta_1, in <- wta_0)")
  np.testing.assert_allclose(m(x), want, rtol=0, atol=1e-4)


# ------------------------------------------------------------- planning --
def _e(name, op, inputs, **attrs):
  return {"name": name, "op": op, "inputs": inputs, "params": {}, **attrs}


def test_plan_needs_a_private_per_channel_chain_and_zero_preserving_ops():
  layers = [
      _e("s", "pool", ["input"], kind="avg", **{"global": True}),
      _e("w", "wta", ["s"]),
      _e("c1", "conv", ["input"]),
      _e("bn", "batchnorm", ["c1"]),
      _e("g1", "gate", ["bn", "w"]),
      _e("r", "activation", ["g1"], kind="relu"),
      _e("mp", "pool", ["r"], kind="max", window=[2, 2], strides=[2, 2],
         padding=[[0, 1], [0, 1]], **{"global": False}),
      _e("c2", "conv", ["mp"]),                        # in: zeros kept
      _e("sg", "activation", ["r"], kind="sigmoid"),   # sigmoid(0) = 1/2
      _e("c3", "conv", ["sg"]),
      _e("c4", "conv", ["input"]),                     # read twice
      _e("g2", "gate", ["c4", "w"]),
      _e("wide", "pool", ["r"], kind="max", window=[2, 2], strides=[2, 2],
         padding=[[2, 0], [0, 0]], **{"global": False}),  # all-padding rows
      _e("c5", "conv", ["wide"]),
      _e("out", "add", ["c2", "c3", "c4", "g2", "c5"]),
  ]
  convs = {"c1", "c2", "c3", "c4", "c5"}
  assert _gating.find(layers, convs) == {
      "c1": {"out": "w", "in": None}, "c2": {"out": None, "in": "w"}}
  assert _gating.find(layers, convs - {"c1"}) == {
      "c2": {"out": None, "in": "w"}}
  # A wta later in the list than the conv: its value is not there yet.
  late = [layers[0], layers[2], layers[1]] + layers[3:]
  assert "c1" not in _gating.find(late, convs)


def test_kept_indices():
  g = np.array([[0, 2, 0, 1], [3, 0, 0, 0], [0, 0, 0, 0]], F32)
  np.testing.assert_array_equal(_gating.kept(g, 4), [[1, 3], [0, 1], [0, 1]])
  assert _gating.kept(np.ones((2, 4), F32), 4) is None
  assert _gating.kept(None, 4) is None


# ----------------------------------------------------------- validation --
def _bad_wta(header, **attrs):
  header = copy.deepcopy(header)
  entry = next(e for e in header["layers"] if e["name"] == "wta_1")
  entry.update(attrs)
  return header


@pytest.mark.parametrize("attrs,match", [
    ({"k": 0}, r"'wta_1' \(wta\): bad k 0 \(must be in \[1, 64\]\)"),
    ({"k": 65}, r"bad k 65"),
    ({"k": 3.0}, r"bad k 3.0"),
    ({"k": 31}, r"bad k 31 \(density 0.5 of 64 channels gives 32\)"),
    ({"density": 0}, r"bad density 0"),
    ({"density": 1.5}, r"bad density 1.5"),
    ({"density": None}, r"bad density None"),
    ({"shape": [8]}, r"bad k 32 \(must be in \[1, 8\]\)"),
    ({"shape": []}, r"bad k 32 \(must be in \[1, 0\]\)"),
    ({"k": 4, "density": 0.5, "shape": [8]}, r"shape mismatch"),
    ({"density": True}, r"bad density True"),
    ({"k": None}, r"bad k None"),
])
def test_malformed_wta_is_refused(attrs, match):
  _, _, _, header, tensors = _fbs_digits(0.5)
  with pytest.raises(export.FormatError, match=match):
    export.Model(_bad_wta(header, **attrs), tensors)


def test_launch_evaluate_refuses_bad_wta_and_reports_skipping(tmp_path,
                                                              capsys):
  _, _, _, header, tensors = _fbs_digits(0.5)
  good, bad = str(tmp_path / "fbs.sbn"), str(tmp_path / "bad.sbn")
  meta = {"dataset": "digits"}
  export.write(good, {**header, "meta": meta}, tensors)
  export.write(bad, {**_bad_wta(header, k=0), "meta": meta}, tensors)
  with pytest.raises(SystemExit) as exc:
    evaluate.main([f"--model={bad}"])
  assert exc.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "bad k 0" in err
  assert evaluate.main([f"--model={good}", "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  rows = {r["name"]: r for r in out["layers"]}
  assert 0 < rows["FBSConv_1/Conv_0"]["macs_fraction"] <= 0.25
  assert "skip(" in rows["FBSConv_1/Conv_0"]["kernel"]
  assert evaluate.main([f"--model={good}", "--json", "--no_skip_gated"]) == 0
  off = json.loads(capsys.readouterr().out)
  assert off["accuracy"] == out["accuracy"]
  assert all("macs_fraction" not in r for r in off["layers"])


# ------------------------------------------------ export of an FBS run --
def test_fbs_run_exports_and_evaluates_like_jax(tmp_path, capsys):
  """A real (tiny) checkpointed FBS run -> export_run -> the evaluator
  (skipping on) gives JAX's logits and the run's test accuracy."""
  config = fbs_digits.get_config()
  config.num_steps = 6
  config.log_every = config.eval_every = config.checkpoint_every = 6
  run, out = str(tmp_path / "run"), str(tmp_path / "fbs.sbn")
  drivers.run(config, run)
  summary = export.export_run(run, out)
  assert summary["model"] == "fbs_digits_cnn" and summary["step"] == 6
  built = train.build(config)
  state = train.load_state(config, run)
  test = built.dataset.splits["test"].arrays
  logits = np.asarray(built.model.apply(
      {"params": state.params, "batch_stats": state.batch_stats},
      test["image"], train=False))
  ev = export.Model.load(out)
  assert sum("skip(" in r["kernel"] for r in ev.plan()) == 3
  np.testing.assert_allclose(ev(test["image"]), logits, rtol=1e-4, atol=1e-4)
  capsys.readouterr()
  assert evaluate.main([f"--model={out}", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  with open(f"{run}/summary.json") as f:
    final = json.load(f)["final"]
  assert result["accuracy"] == pytest.approx(final["test_accuracy"])
  with pytest.raises(FileExistsError):
    export.export_run(run, out)
