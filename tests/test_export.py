"""Export round trips across the zoo: JAX logits vs the CPU evaluator's.

LeNet-300-100 (level 1 of a real IMP run, 5% of the weights left, exported
with ``launch.export --level=1``), ResNet-20 (masked, random BN statistics), the
BinaryConnect and BNN MLPs and the BNN CNN (masked, so their binary kernels
are ternary).  Also: ``launch.evaluate`` without JAX (an import blocker)
and without numba, export refusals; NIN (BENN semi-binary, XNOR-Net
all-binary masked) and the semi-binary ResNet-18; the sign(0) / heaviside(0)
conventions against JAX; BatchNorm folding (in the evaluator, and stored
folded into BinaryConnect layers, format version 3).
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import export
from experiments import models
from experiments import drivers
from experiments import train
from tests import _export_check
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = (32, 32, 3)

_BLOCKER = _export_check.BLOCKER
_NO_JAX = _export_check.NO_JAX


def _random_variables(model, input_shape, seed=0, density=1.0):
  """Random variables (latent binary kernels Uniform(-1, 1)), non-trivial
  BN statistics, and a random mask of ``density`` applied to the kernels."""
  variables = jax.tree.map(np.array, models.random_variables(
      model, input_shape, seed, binary_uniform=True))
  rng = np.random.default_rng(seed + 1)
  mask = jax.tree_util.tree_map_with_path(
      lambda p, v: (rng.random(v.shape) < density) if p[-1].key == "kernel"
      and v.ndim >= 2 else None, variables["params"])
  variables["params"] = jax.tree.map(
      lambda v, m: v if m is None else v * m, variables["params"], mask,
      is_leaf=lambda x: x is None)
  return variables, mask


def _round_trip(tmp_path, model, input_shape, variables, mask, batch=3):
  layers = models.layer_list(model, input_shape)
  path = str(tmp_path / "model.sbn")
  export.write_model(path, layers, variables, mask, input_shape=input_shape)
  x = np.random.default_rng(1).standard_normal(
      (batch, *input_shape)).astype(np.float32)
  want, inter = model.apply(variables, jnp.asarray(x), train=False,
                            capture_intermediates=True,
                            mutable=["intermediates"])
  evaluator = export.Model.load(path)
  outputs = {}
  got = evaluator.run(x, outputs=outputs)
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)
  return evaluator, outputs, inter["intermediates"]


def test_resnet20_masked_round_trip(tmp_path):
  model = models.get_model("resnet20", 10)
  variables, mask = _random_variables(model, CIFAR, density=0.05)
  ev, _, _ = _round_trip(tmp_path, model, CIFAR, variables, mask, batch=2)
  assert any(r["kernel"].startswith("csr") for r in ev.plan())


BINARY_MLPS = {
    "binaryconnect": dict(kernel_quantizer="ste_sign", binary_first=True,
                          binary_last=True),
    "bnn": dict(kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                activation="hard_tanh", binary_first=True, binary_last=True),
    "bnn_magnitude_heaviside": dict(
        kernel_quantizer="magnitude_aware_sign",
        input_quantizer="ste_heaviside", activation="hard_tanh"),
}


@pytest.mark.parametrize("case", sorted(BINARY_MLPS))
def test_binary_mlp_round_trip(tmp_path, case):
  kwargs = BINARY_MLPS[case]
  model = models.get_model("binary_mlp", 10, hidden=(96, 64), **kwargs)
  variables, mask = _random_variables(model, (8, 8, 1), density=0.5)
  ev, outputs, inter = _round_trip(tmp_path, model, (8, 8, 1), variables,
                                   mask)
  kernels = {r["name"]: r["kernel"] for r in ev.plan()}
  if "input_quantizer" in kwargs:
    assert kernels["BinaryDense_1"] == "xnor-ternary", kernels
  else:
    assert not any(k.startswith("xnor") for k in kernels.values())
  if kwargs["kernel_quantizer"] == "ste_sign" and "input_quantizer" in kwargs:
    # +-1 x +-1 products: JAX's float32 sums are exact integers, as ours.
    for name in ("BinaryDense_1", "BinaryDense_2"):
      jax_out = np.asarray(inter[name]["__call__"][0])
      assert np.array_equal(outputs[name], jax_out), name


def test_bnn_cnn_round_trip(tmp_path):
  model = models.get_model("bnn_cnn", 10, width=1 / 16,
                           kernel_quantizer="ste_sign",
                           input_quantizer="ste_sign", activation="hard_tanh")
  variables, mask = _random_variables(model, CIFAR, density=0.5)
  ev, outputs, inter = _round_trip(tmp_path, model, CIFAR, variables, mask)
  kernels = {r["name"]: r["kernel"] for r in ev.plan()}
  assert kernels["BinaryConv_1"] == "xnor-ternary", kernels
  for name in ("BinaryConv_1", "BinaryConv_5", "BinaryDense_1"):
    assert np.array_equal(outputs[name],
                          np.asarray(inter[name]["__call__"][0])), name


@pytest.mark.parametrize("iq", ["ste_sign", "ste_heaviside"])
def test_binary_inputs_at_exactly_zero_match_jax(tmp_path, iq):
  """sign(0) = +1 and heaviside(0) = 0, as binary.ste_sign /
  ste_heaviside: half of BinaryDense_1's inputs are exactly 0 (BN scale and
  bias 0), and its outputs must equal JAX's bit for bit."""
  import binary  # pylint: disable=g-import-not-at-top
  from experiments.export import _ops  # pylint: disable=g-import-not-at-top
  zero = np.zeros(3, np.float32)
  assert np.array_equal(_ops.sign(zero), np.asarray(binary.ste_sign(zero)))
  assert np.array_equal(_ops.heaviside(zero),
                        np.asarray(binary.ste_heaviside(zero)))
  model = models.get_model("binary_mlp", 10, hidden=(40, 24),
                           kernel_quantizer="ste_sign", input_quantizer=iq,
                           activation="hard_tanh")
  variables, mask = _random_variables(model, (8, 8, 1), density=0.7)
  for role in ("scale", "bias"):
    variables["params"]["BatchNorm_0"][role][::2] = 0.0
  _, outputs, inter = _round_trip(tmp_path, model, (8, 8, 1), variables,
                                  mask)
  x = outputs["hard_tanh_0"]
  assert np.all(x[:, ::2] == 0.0) and np.any(x[:, 1::2] != 0.0)
  jax_out = np.asarray(inter["BinaryDense_1"]["__call__"][0])
  assert np.array_equal(outputs["BinaryDense_1"], jax_out)
  # The other convention would not pass: flip what 0 maps to.
  w = variables["params"]["BinaryDense_1"]
  view = np.where(w["kernel"] == 0, 0, np.where(w["kernel"] >= 0, 1, -1))
  other = (np.where(x > 0, 1.0, -1.0) if iq == "ste_sign" else
           np.where(x >= 0, 1.0, 0.0))
  assert not np.array_equal((other @ view + w["bias"]).astype(np.float32),
                            jax_out)


NIN_CASES = {
    "benn_semi_binary": dict(variant="benn"),
    "xnor_all_binary_masked": dict(variant="xnor", binary_first=True,
                                   binary_last=True),
}


@pytest.mark.parametrize("case", sorted(NIN_CASES))
def test_nin_round_trip(tmp_path, case):
  kwargs = NIN_CASES[case]
  model = models.get_model("nin", 10, width=0.1, **kwargs)
  density = 0.6 if "masked" in case else 1.0
  variables, mask = _random_variables(model, CIFAR, density=density)
  ev, outputs, inter = _round_trip(tmp_path, model, CIFAR, variables, mask,
                                   batch=2)
  kernels = {r["name"]: r["kernel"] for r in ev.plan()}
  xnor = [k for k, v in kernels.items() if v.startswith("xnor")]
  assert len(xnor) == (7 if "all_binary" in case else 5) - (
      0 if kwargs["variant"] == "benn" else -2), kernels
  assert all(("ternary" in kernels[k]) == (density < 1) for k in xnor)
  for name in xnor:  # alpha * exact integer sums vs JAX's float32 conv
    np.testing.assert_allclose(outputs[name],
                               np.asarray(inter[name]["__call__"][0]),
                               rtol=1e-5, atol=1e-5)


def test_unet_tiny_round_trip(tmp_path):
  """Segmentation: concat and upsample against JAX (MobileNetV3's gate is
  checked against the reference interpreter in test_evaluator.py)."""
  model = models.get_model("unet_tiny", 4)
  variables, mask = _random_variables(model, CIFAR, density=0.3)
  ev, _, _ = _round_trip(tmp_path, model, CIFAR, variables, mask, batch=2)
  assert {"concat", "upsample"} <= {r["op"] for r in ev.plan()}


def test_binary_resnet18_round_trip(tmp_path):
  model = models.get_model("binary_resnet18", 10, width=1 / 16)
  variables, mask = _random_variables(model, CIFAR, density=0.5)
  ev, _, _ = _round_trip(tmp_path, model, CIFAR, variables, mask, batch=2)
  assert any(r["kernel"].startswith("xnor") for r in ev.plan())


@pytest.mark.parametrize("name,kwargs", [
    ("resnet20", {}),
    ("bnn_cnn", dict(width=1 / 16, kernel_quantizer="ste_sign",
                     input_quantizer="ste_sign", activation="hard_tanh"))])
def test_fold_batchnorm_matches(tmp_path, name, kwargs):
  model = models.get_model(name, 10, **kwargs)
  variables, mask = _random_variables(model, CIFAR, density=0.05)
  ev, _, _ = _round_trip(tmp_path, model, CIFAR, variables, mask, batch=2)
  folded = export.Model.load(str(tmp_path / "model.sbn"),
                             fold_batchnorm=True)
  kernels = [r["kernel"] for r in folded.plan()]
  ops = {l.name: l.op for l in folded.layers}
  n_bn = sum(l.op == "batchnorm" and ops[l.inputs[0]] in ("dense", "conv")
             for l in folded.layers)
  # Each of those convs/denses is read by its BN only (ResNet-20's
  # shortcut adds read BN outputs); BNs after a pool stay.
  assert sum(k.startswith("folded into") for k in kernels) == n_bn > 0
  assert sum(k.endswith("+bn") for k in kernels) == n_bn
  if name == "bnn_cnn":
    assert any(k.startswith("xnor") and k.endswith("+bn") for k in kernels)
  x = np.random.default_rng(3).standard_normal((2, *CIFAR)).astype(
      np.float32)
  np.testing.assert_allclose(folded(x), ev(x), rtol=1e-4, atol=1e-4)


# BinaryConnect: binary weights, real inputs; every layer binary, biases.
FOLD_ZOO = {
    "binaryconnect_mlp_masked": ("binary_mlp", (8, 8, 1), 0.5, dict(
        hidden=(96, 64), **BINARY_MLPS["binaryconnect"])),
    "binaryconnect_mlp_magnitude": ("binary_mlp", (8, 8, 1), 1.0, dict(
        hidden=(96, 64), kernel_quantizer="magnitude_aware_sign",
        binary_first=True, binary_last=True)),
    "binaryconnect_cnn": ("bnn_cnn", CIFAR, 1.0, dict(
        width=1 / 16, kernel_quantizer="ste_sign", binary_first=True,
        binary_last=True)),
}


@pytest.mark.parametrize("case", sorted(FOLD_ZOO))
def test_folded_batchnorm_round_trip(tmp_path, case):
  """bn_fold=True: each BN right after a binary layer is one scale and
  shift on that layer; logits equal JAX's and the unfolded file's to
  float32 rounding, and the file is smaller.  In the CNN the BNs after a
  max pool stay four vectors."""
  name, shape, density, kwargs = FOLD_ZOO[case]
  model = models.get_model(name, 10, **kwargs)
  variables, mask = _random_variables(model, shape, density=density)
  layers = models.layer_list(model, shape)
  # Running variances that keep the activations O(1) (the k-th BN follows
  # the k-th weight layer, whose +-1 kernel sums fan_in terms).
  weights = [e for e in layers if e["op"] in ("dense", "conv")]
  bns = [e for e in layers if e["op"] == "batchnorm"]
  for w, bn in zip(weights, bns):
    fan_in = np.prod(variables["params"][w["name"]]["kernel"].shape[:-1])
    variables["batch_stats"][bn["name"]]["var"] *= fan_in
  paths = {}
  for fold in (False, True):
    paths[fold] = str(tmp_path / f"m{int(fold)}.sbn")
    export.write_model(paths[fold], layers, variables, mask,
                       input_shape=shape, bn_threshold=True, bn_fold=fold)
  assert os.path.getsize(paths[True]) < os.path.getsize(paths[False])
  four, folded = export.Model.load(paths[False]), export.Model.load(
      paths[True])
  assert folded.version == 3
  kernels = {r["name"]: r["kernel"] for r in folded.plan()}
  names = export.foldable_batchnorms(layers)
  bns = [e["name"] for e in layers if e["op"] == "batchnorm"]
  assert {k for k, v in kernels.items() if v.startswith("folded into")} == (
      set(names)) and len(names) == (6 if name == "bnn_cnn" else 3)
  assert all(kernels[src].endswith("+bn") for src in names.values())
  assert all(kernels[bn] == "numpy" for bn in bns if bn not in names)
  x = np.random.default_rng(1).standard_normal((2, *shape)).astype(
      np.float32)
  want = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, jnp.asarray(x)))  # one compilation: much faster on CPU
  assert 0.01 < np.abs(want).max() < 100
  got = folded(x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(four(x), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got, four(x), rtol=1e-5, atol=1e-5)


def test_encode_refuses_nonzero_pruned_weight():
  model = models.get_model("mlp", 10, hidden=(8,))
  variables, mask = _random_variables(model, (8, 8, 1), density=0.5)
  variables["params"]["Dense_0"]["kernel"][~mask["Dense_0"]["kernel"]] = 1e-9
  with pytest.raises(export.ExportError, match="not exactly 0"):
    export.encode(models.layer_list(model, (8, 8, 1)), variables, mask,
                  input_shape=(8, 8, 1))


# ------------------------------------------------- from a run's workdir --
@pytest.fixture(scope="module")
def lottery_run(tmp_path_factory):
  """A real IMP run (the lottery driver) of LeNet-300-100: level 0 dense,
  level 1 keeping 5% of every layer (CSR territory), no controls."""
  run = str(tmp_path_factory.mktemp("export") / "run")
  config = helpers.small_lottery_config(model="lenet_300_100", num_steps=20,
                                        log_every=10)
  config.model_kwargs.hidden = (300, 100)
  config.lottery.levels = 1
  config.lottery.rates = {"default": 0.95}
  config.lottery.controls = ()
  drivers.run(config, run)
  level = os.path.join(run, "level_01")
  state = train.load_state(config, level)
  built = train.build(config)
  test = built.dataset.splits["test"].arrays
  logits = np.asarray(built.model.apply({"params": state.params},
                                        test["image"], train=False))
  acc = float(np.mean(np.argmax(logits, -1) == test["label"]))
  return {"run": run, "level": level, "logits": logits, "accuracy": acc,
          "images": test["image"]}


def _cli(args, env=None, code=None):
  cmd = [sys.executable] + (["-c", code] if code else []) + args
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        env={**os.environ, **(env or {})}, timeout=300)


def test_export_level_and_evaluate_without_jax(lottery_run, tmp_path):
  out = str(tmp_path / "lenet.sbn")
  r = _cli(["-m", "launch.export", f"--workdir={lottery_run['run']}",
            "--level=1", f"--out={out}"])
  assert r.returncode == 0, r.stderr
  ev = export.Model.load(out)
  assert ev.meta["level"] == 1 and ev.meta["model"] == "lenet_300_100"
  np.testing.assert_allclose(ev(lottery_run["images"]),
                             lottery_run["logits"], rtol=1e-5, atol=1e-5)
  assert any(r["kernel"].startswith("csr") for r in ev.plan())
  r = _cli([f"--model={out}", "--dataset=digits", "--split=test", "--json"],
           code=_NO_JAX)
  assert r.returncode == 0, r.stderr
  result = json.loads(r.stdout)
  assert result["accuracy"] == lottery_run["accuracy"]
  assert result["numba"] == export.numba_available()
  assert [row["name"] for row in result["layers"]] == [
      row["name"] for row in ev.plan()]
  assert all(row["seconds"] >= 0 for row in result["layers"])
  # The text report, without numba, the dataset taken from the file.
  r = _cli([f"--model={out}"], env={"SBN_NO_NUMBA": "1"}, code=_NO_JAX)
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert lines[0].startswith(
      f"digits/test: accuracy {lottery_run['accuracy']:.4f} on 360 examples")
  assert "(numba: off)" in lines[0]
  rows = {line.split()[0]: line.split() for line in lines[2:]}
  assert set(rows) == {row["name"] for row in ev.plan()}
  assert rows["Dense_0"][2] == "csr-scipy", rows  # density 0.05, no numba
  float(rows["Dense_0"][-2])  # milliseconds
  # The blocker works: a module that needs JAX fails under it.
  r = _cli([], code=_BLOCKER + "import experiments.train")
  assert r.returncode != 0 and "blocked" in r.stderr


def test_export_refuses_existing_out_and_missing_level(lottery_run,
                                                       tmp_path):
  out = tmp_path / "x.sbn"
  out.write_bytes(b"keep me")
  r = _cli(["-m", "launch.export", f"--workdir={lottery_run['run']}",
            "--level=3", f"--out={out}", "--overwrite"])
  assert r.returncode == 2 and "level_03" in r.stderr, r.stderr
  r = _cli(["-m", "launch.export", f"--workdir={lottery_run['run']}",
            "--level=1", f"--out={out}"])
  assert r.returncode == 2 and "--overwrite" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  assert out.read_bytes() == b"keep me"
  r = _cli(["-m", "launch.export", f"--workdir={lottery_run['run']}",
            f"--out={tmp_path / 'new.sbn'}"])
  assert r.returncode == 2 and "pass --level=N (levels: [0, 1])" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / "new.sbn")


def test_export_run_refuses_nonzero_pruned_weight(lottery_run, tmp_path,
                                                  monkeypatch):
  load = train.load_state

  def tampered(config, workdir):
    state = load(config, workdir)
    params = jax.tree.map(
        lambda p, m: p if m is None else jnp.where(m, p, 1e-6),
        state.params, state.mask, is_leaf=lambda x: x is None)
    return state.replace(params=params)

  from experiments import engine  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(engine, "load_state", tampered)  # what drivers call
  out = str(tmp_path / "bad.sbn")
  with pytest.raises(export.ExportError, match="pruned weight"):
    export.export_run(lottery_run["run"], out, level=1)
  assert not os.path.exists(out)


# ----------------------- BatchNorm read only through a sign: thresholds --
THRESHOLD_ZOO = {
    "bnn_mlp": ("binary_mlp", (8, 8, 1), 0.5,
                dict(hidden=(96, 64), **BINARY_MLPS["bnn"])),
    "bnn_cnn": ("bnn_cnn", CIFAR, 0.5,
                dict(width=1 / 16, kernel_quantizer="ste_sign",
                     input_quantizer="ste_sign", activation="hard_tanh")),
    "nin_xnor_masked": ("nin", CIFAR, 0.6,
                        dict(width=0.1, **NIN_CASES["xnor_all_binary_masked"])),
}


@pytest.mark.parametrize("case", sorted(THRESHOLD_ZOO))
def test_threshold_round_trip(tmp_path, case):
  """bn_threshold=True: JAX logits as before, and logits bit-identical to
  the four-vector file's (every BN read through a sign is a threshold)."""
  name, shape, density, kwargs = THRESHOLD_ZOO[case]
  model = models.get_model(name, 10, **kwargs)
  variables, mask = _random_variables(model, shape, density=density)
  for bn in variables["params"]:  # negative and zero gammas
    if bn.startswith("BatchNorm"):
      scale = variables["params"][bn]["scale"]
      scale[1::3] *= -1
      scale[2::5] = 0.0
  four, _, _ = _round_trip(tmp_path, model, shape, variables, mask, batch=2)
  layers = models.layer_list(model, shape)
  path = str(tmp_path / "thr.sbn")
  export.write_model(path, layers, variables, mask, input_shape=shape,
                     bn_threshold=True)
  thr = export.Model.load(path)
  assert thr.version == 2
  names = export.sign_read_batchnorms(layers)
  kernels = {r["name"]: r["kernel"] for r in thr.plan()}
  assert names and {k for k, v in kernels.items()
                    if v == "sign threshold"} == names
  x = np.random.default_rng(1).standard_normal((2, *shape)).astype(
      np.float32)
  want = model.apply(variables, jnp.asarray(x), train=False)
  got = thr(x)
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got, four(x))


def test_threshold_tie_matches_jax():
  """x exactly at the threshold, and its float32 neighbours, through
  Flax's BatchNorm, hard_tanh and binary.ste_sign (sign(0) = +1): exact
  parameters (var + eps = 4), so XLA's rsqrt is exact too."""
  import binary  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from experiments.export import _ops  # pylint: disable=g-import-not-at-top
  f32 = np.float32
  mean, var = np.full(6, 2.0, f32), np.full(6, 4.0, f32)
  gamma = np.array([2, 4, -2, -4, 0, 0], f32)
  beta = np.array([-1, 1, -1, 0.5, 0, -0.25], f32)
  t, direction = _ops.batchnorm_threshold(mean, var, gamma, beta, 0.0)
  at = np.where(np.isfinite(t), t, f32(7))
  x = np.stack([at, np.nextafter(at, f32(np.inf)),
                np.nextafter(at, f32(-np.inf))])
  bn = nn.BatchNorm(use_running_average=True, epsilon=0.0)
  v = {"params": {"scale": gamma, "bias": beta},
       "batch_stats": {"mean": mean, "var": var}}
  jax_sign = np.asarray(binary.ste_sign(jnp.clip(bn.apply(v, x), -1, 1)))
  assert np.all(jax_sign[0, :4] == 1)  # the ties
  np.testing.assert_array_equal(_ops.threshold_sign(x, t, direction),
                                jax_sign)
