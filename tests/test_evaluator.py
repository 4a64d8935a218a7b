"""The CPU reference evaluator without JAX: bit planes, XNOR-popcount
kernels against a float reference, every layer-list op against
tests/_layer_list_ref.py, kernel choice, and numba vs pure NumPy."""
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import export
from experiments.export import _kernels
from experiments.export import _ops
from experiments.export import _pack
from tests import _layer_list_ref as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_numba = pytest.mark.skipif(not export.numba_available(),
                                 reason="numba is not installed")


def _view(w):
  return np.where(w == 0, 0.0, np.where(w >= 0, 1.0, -1.0))


def _q(x, mode):
  return np.where(x >= 0, 1.0, -1.0) if mode == _kernels.SIGN else (
      np.where(x > 0, 1.0, 0.0))


def _bits(x, mode):
  return _pack.pack(x < 0 if mode == _kernels.SIGN else x > 0)


def _ref_conv(x, w, strides, padding):
  (pt, pb), (pl, pr) = padding
  xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  win = np.lib.stride_tricks.sliding_window_view(
      xp, w.shape[:2], axis=(1, 2))[:, ::strides[0], ::strides[1]]
  return np.einsum("nhwcij,ijco->nhwo", win, w)


# ------------------------------------------------------------- bit planes --
@pytest.mark.parametrize("k", [1, 31, 32, 33, 64, 100])
def test_pack_little_bit_order_and_zero_padding(k):
  rng = np.random.default_rng(k)
  bits = rng.random((3, k)) < 0.5
  words = _pack.pack(bits)
  assert words.dtype == np.uint32 and words.shape == (3, -(-k // 32))
  assert np.array_equal(_pack.unpack(words, k), bits)
  assert _pack.padding_is_zero(words, k)
  one = np.zeros(k, bool)
  one[k - 1] = True
  assert _pack.pack(one)[-1] == np.uint32(1) << np.uint32((k - 1) % 32)


# ---------------------------------------------------------------- kernels --
MODES = [(_kernels.SIGN, False), (_kernels.SIGN, True),
         (_kernels.HEAVISIDE, False), (_kernels.HEAVISIDE, True)]


@pytest.mark.parametrize("mode,ternary", MODES)
@pytest.mark.parametrize("use_numba", [True, False])
def test_xnor_dense_is_exact(mode, ternary, use_numba):
  if use_numba and not export.numba_available():
    pytest.skip("numba is not installed")
  rng = np.random.default_rng(0)
  w = rng.standard_normal((70, 300))  # 300 outputs: several output blocks
  if ternary:
    w[rng.random(w.shape) < 0.4] = 0.0
  for n in (3, 9):  # small batches split the outputs, larger ones the rows
    x = rng.standard_normal((n, 70))
    x[0, :3] = 0.0  # sign(0) = +1, heaviside(0) = 0
    want = (_q(x, mode) @ _view(w)).astype(np.int32)
    got = _kernels.xnor_dense(_bits(x, mode), _pack.pack(w.T < 0),
                              _pack.pack(w.T != 0) if ternary else None, 70,
                              mode, use_numba=use_numba)
    assert got.dtype == np.int32 and np.array_equal(got, want)


@pytest.mark.parametrize("words", [1, 2, 3])
def test_widen_keeps_the_little_bit_order(words):
  rng = np.random.default_rng(words)
  bits = rng.random((4, 32 * words - 5)) < 0.5
  wide = _kernels.widen(_pack.pack(bits))
  assert wide.dtype == np.uint64 and wide.shape == (4, -(-words // 2))
  k = bits.shape[1]
  got = (wide[:, np.arange(k) // 64] >> (np.arange(k) % 64).astype(
      np.uint64)) & np.uint64(1)
  assert np.array_equal(got.astype(bool), bits)
  x = np.where(bits, -1.0, 1.0).astype(np.float32)
  x[0, 0] = np.nan  # JAX's sign: -1 where x >= 0 is false
  want = _pack.pack(bits | np.isnan(x))
  assert np.array_equal(_kernels.pack_input(x, _kernels.SIGN),
                        _kernels.widen(want))


CONV_GEOMETRY = [((1, 1), ((1, 1), (1, 1))), ((2, 2), ((0, 1), (2, 0))),
                 ((1, 2), ((0, 0), (0, 0))), ((1, 1), ((3, 3), (3, 3)))]


@pytest.mark.parametrize("mode,ternary", MODES)
@pytest.mark.parametrize("use_numba", [True, False])
def test_xnor_conv_is_exact_with_zero_padding(mode, ternary, use_numba):
  if use_numba and not export.numba_available():
    pytest.skip("numba is not installed")
  rng = np.random.default_rng(1)
  cin = 37  # two words, the second one padded
  x = rng.standard_normal((2, 6, 7, cin))
  w = rng.standard_normal((3, 3, cin, 5))
  if ternary:
    w[rng.random(w.shape) < 0.5] = 0.0
  wt = np.transpose(w, (3, 0, 1, 2))
  for strides, padding in CONV_GEOMETRY:
    want = _ref_conv(_q(x, mode), _view(w), strides, padding)
    got = _kernels.xnor_conv(_bits(x, mode), _pack.pack(wt < 0),
                             _pack.pack(wt != 0) if ternary else None, cin,
                             strides, padding, want.shape[1:3], mode,
                             use_numba=use_numba)
    assert np.array_equal(got, want.astype(np.int32)), (strides, padding)


# ------------------------------------------------- handcrafted layer lists --
def _conv_entry(name, x, cin, cout, *, ks=(3, 3), strides=(1, 1),
                padding=((1, 1), (1, 1)), groups=1, shape, **attrs):
  return {"name": name, "op": "conv", "inputs": [x],
          "params": {"kernel": ["params", name, "kernel"],
                     "bias": ["params", name, "bias"]},
          "kernel_size": list(ks), "strides": list(strides),
          "padding": [list(p) for p in padding],
          "feature_group_count": groups, "shape": shape, **attrs}


def all_ops_model(seed=0, kq=None, iq=None, density=1.0):
  """A small layer list using every op, with variables and a mask."""
  rng = np.random.default_rng(seed)
  L = [
      _conv_entry("c1", "input", 3, 8, shape=[8, 8, 8]),
      {"name": "bn1", "op": "batchnorm", "inputs": ["c1"], "epsilon": 1e-3,
       "params": {"mean": ["batch_stats", "bn1", "mean"],
                  "var": ["batch_stats", "bn1", "var"],
                  "scale": ["params", "bn1", "scale"],
                  "bias": ["params", "bn1", "bias"]}, "shape": [8, 8, 8]},
      {"name": "act", "op": "activation", "kind": "hard_tanh",
       "inputs": ["bn1"], "params": {}, "shape": [8, 8, 8]},
      _conv_entry("c2", "act", 8, 8, shape=[8, 8, 8], kernel_quantizer=kq,
                  input_quantizer=iq),
      _conv_entry("c3", "act", 8, 8, ks=(1, 1), padding=((0, 0), (0, 0)),
                  groups=4, shape=[8, 8, 8]),
      {"name": "add", "op": "add", "inputs": ["c2", "c3"], "params": {},
       "shape": [8, 8, 8]},
      {"name": "mp", "op": "pool", "kind": "max", "global": False,
       "window": [3, 3], "strides": [2, 2], "padding": [[1, 1], [1, 1]],
       "inputs": ["add"], "params": {}, "shape": [4, 4, 8]},
      {"name": "ap", "op": "pool", "kind": "avg", "global": False,
       "window": [3, 3], "strides": [1, 1], "padding": [[1, 1], [1, 1]],
       "count_include_pad": False, "inputs": ["mp"], "params": {},
       "shape": [4, 4, 8]},
      {"name": "up", "op": "upsample", "method": "nearest", "scale": [2, 2],
       "inputs": ["ap"], "params": {}, "shape": [8, 8, 8]},
      {"name": "cat", "op": "concat", "axis": -1, "inputs": ["up", "add"],
       "params": {}, "shape": [8, 8, 16]},
      {"name": "gp", "op": "pool", "kind": "avg", "global": True,
       "inputs": ["cat"], "params": {}, "shape": [16]},
      {"name": "sg", "op": "activation", "kind": "sigmoid", "inputs": ["gp"],
       "params": {}, "shape": [16]},
      {"name": "gate", "op": "gate", "inputs": ["cat", "sg"], "params": {},
       "shape": [8, 8, 16]},
      {"name": "gm", "op": "pool", "kind": "max", "global": True,
       "inputs": ["gate"], "params": {}, "shape": [16]},
      {"name": "sgn", "op": "sign", "inputs": ["gate"], "params": {},
       "shape": [8, 8, 16]},
      {"name": "fl", "op": "flatten", "inputs": ["sgn"], "params": {},
       "shape": [1024]},
      {"name": "d1", "op": "dense", "inputs": ["fl"], "params": {
          "kernel": ["params", "d1", "kernel"]}, "shape": [16],
       "kernel_quantizer": kq, "input_quantizer": iq},
      {"name": "sum", "op": "add", "inputs": ["d1", "gm"], "params": {},
       "shape": [16]},
      {"name": "hs", "op": "activation", "kind": "hard_swish",
       "inputs": ["sum"], "params": {}, "shape": [16]},
      {"name": "out", "op": "dense", "inputs": ["hs"], "params": {
          "kernel": ["params", "out", "kernel"],
          "bias": ["params", "out", "bias"]}, "shape": [10]},
  ]
  shapes = {"c1": (3, 3, 3, 8), "c2": (3, 3, 8, 8), "c3": (1, 1, 2, 8),
            "d1": (1024, 16), "out": (16, 10)}
  params, mask = {}, {}
  for name, shape in shapes.items():
    w = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
    m = rng.random(shape) < density if name in ("c2", "d1") else (
        np.ones(shape, bool))
    params[name] = {"kernel": (w * m).astype(np.float32)}
    mask[name] = {"kernel": m}
    if name != "d1":
      params[name]["bias"] = rng.normal(0, 0.1, shape[-1]).astype(np.float32)
      mask[name]["bias"] = None
  params["bn1"] = {"scale": rng.uniform(0.5, 1.5, 8).astype(np.float32),
                   "bias": rng.normal(0, 0.3, 8).astype(np.float32)}
  mask["bn1"] = {"scale": None, "bias": None}
  stats = {"bn1": {"mean": rng.normal(0, 0.3, 8).astype(np.float32),
                   "var": rng.uniform(0.5, 2, 8).astype(np.float32)}}
  return L, {"params": params, "batch_stats": stats}, mask


def _write(tmp_path, layers, variables, mask, name="m.sbn"):
  path = str(tmp_path / name)
  export.write_model(path, layers, variables, mask, input_shape=(8, 8, 3))
  return path


@pytest.mark.parametrize("kq,iq,density", [
    (None, None, 1.0), (None, None, 0.05), ("sign", None, 1.0),
    ("sign", "sign", 0.5), ("magnitude_aware_sign", "sign", 1.0),
    ("sign", "heaviside", 0.5)])
def test_every_op_matches_the_reference_interpreter(tmp_path, kq, iq,
                                                    density):
  layers, variables, mask = all_ops_model(kq=kq, iq=iq, density=density)
  model = export.Model.load(_write(tmp_path, layers, variables, mask))
  x = np.random.default_rng(5).standard_normal((3, 8, 8, 3)).astype(
      np.float32)
  np.testing.assert_allclose(model(x), ref.run(layers, variables, x),
                             rtol=1e-5, atol=1e-5)
  kernels = {r["name"]: r["kernel"] for r in model.plan()}
  if kq and iq:
    assert kernels["d1"].startswith("xnor"), kernels
    assert ("ternary" in kernels["d1"]) == (density < 1)
  elif density < min(export.SPARSE_MAX_DENSITY.values()):
    assert kernels["d1"].startswith("csr") and kernels["c2"].startswith("csr")
  else:
    assert kernels["d1"] == "blas"


def test_sparse_file_is_smaller_and_csr_equals_blas(tmp_path):
  layers, variables, mask = all_ops_model(density=0.05)
  sparse = _write(tmp_path, layers, variables, mask, "s.sbn")
  header, _ = export.read(sparse)
  storage = {e["name"]: e.get("storage", {}).get("kernel")
             for e in header["layers"]}
  assert storage["d1"] == "csr" and storage["c1"] == "float32"
  x = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(
      np.float32)
  a = export.Model.load(sparse)
  b = export.Model.load(sparse, sparse_max_density=0.0)
  kernel = lambda m: {r["name"]: r["kernel"] for r in m.plan()}["d1"]
  assert kernel(a).startswith("csr") and kernel(b) == "blas"
  np.testing.assert_allclose(a(x), b(x), rtol=1e-5, atol=1e-6)


def test_binary_file_stores_bit_planes(tmp_path):
  layers, variables, mask = all_ops_model(kq="sign", iq="sign", density=0.5)
  header, tensors = export.read(_write(tmp_path, layers, variables, mask))
  d1 = next(e for e in header["layers"] if e["name"] == "d1")
  assert d1["storage"]["kernel"] == "bits"
  sign = tensors[d1["params"]["kernel_sign"]]
  assert sign.dtype == np.uint32 and sign.shape == (16, 32)
  w = variables["params"]["d1"]["kernel"]
  assert np.array_equal(_pack.unpack(sign, 1024), w.T < 0)
  assert np.array_equal(
      _pack.unpack(tensors[d1["params"]["kernel_nonzero"]], 1024), w.T != 0)


@needs_numba
def test_numba_and_numpy_paths_give_identical_logits(tmp_path):
  layers, variables, mask = all_ops_model(kq="sign", iq="sign", density=0.5)
  path = _write(tmp_path, layers, variables, mask)
  x = np.random.default_rng(2).standard_normal((4, 8, 8, 3)).astype(
      np.float32)
  fast, slow = export.Model.load(path), export.Model.load(path,
                                                          use_numba=False)
  assert fast.use_numba and not slow.use_numba
  assert "(numpy)" in dict((r["name"], r["kernel"])
                           for r in slow.plan())["d1"]
  assert np.array_equal(fast(x), slow(x))


def test_sbn_no_numba_env_selects_numpy():
  code = ("from experiments.export import _kernels; "
          "print(_kernels.numba_available())")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                       capture_output=True, text=True,
                       env={**os.environ, "SBN_NO_NUMBA": "1"})
  assert out.stdout.strip() == "False"


def test_package_imports_no_jax():
  code = ("import sys; import experiments, launch, experiments.export, "
          "experiments.data, launch.evaluate; "
          "bad = [m for m in sys.modules if m.split('.')[0] in "
          "('jax', 'flax', 'optax', 'orbax', 'tensorflow')]; print(bad)")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                       capture_output=True, text=True)
  assert out.stdout.strip() == "[]"


# ------------------------------------ BatchNorm -> sign as a threshold --
def _bn_sign(x, mean, var, scale, bias, eps):
  """The four-vector path: sign of the evaluator's float32 BatchNorm."""
  mul, add = _ops.batchnorm_affine(mean, var, scale, bias, eps)
  return _ops.sign((x - mean) * mul + add)


def test_batchnorm_threshold_hand_computed():
  """eps = 0 and var = 4 make every step exact: mul = gamma / 2,
  f(x) = (x - 2) * gamma / 2 + beta, so t = 2 - 2 beta / gamma."""
  f32 = np.float32
  mean, var = np.full(7, 2.0, f32), np.full(7, 4.0, f32)
  gamma = np.array([2, 4, -2, 2, 0, 0, 0], f32)
  beta = np.array([-1, 1, -1, 0, -1, 0, 0.5], f32)
  t, direction = _ops.batchnorm_threshold(mean, var, gamma, beta, 0.0)
  # gamma 2, beta -1: x >= 3; gamma 4, beta 1: x >= 1.5; gamma -2, beta
  # -1: -(x - 2) - 1 >= 0 iff x <= 1; gamma 2, beta 0: x >= 2 (= mean);
  # gamma 0: the constant sign(beta), sign(0) = +1.
  np.testing.assert_array_equal(
      t, np.array([3, 1.5, 1, 2, np.inf, -np.inf, -np.inf], f32))
  np.testing.assert_array_equal(direction, [0, 0, 1, 0, 0, 0, 0])
  at = np.where(np.isfinite(t), t, f32(5))  # x == t (finite channels)
  above, below = np.nextafter(at, f32(np.inf)), np.nextafter(at, f32(-np.inf))
  x = np.stack([at, above, below, np.full(7, -1e30, f32),
                np.full(7, 1e30, f32)])
  want = np.array([
      [1, 1, 1, 1, -1, 1, 1],    # the tie x == t is +1 in both directions
      [1, 1, -1, 1, -1, 1, 1],
      [-1, -1, 1, -1, -1, 1, 1],
      [-1, -1, 1, -1, -1, 1, 1],
      [1, 1, -1, 1, -1, 1, 1]], f32)
  got = _ops.threshold_sign(x, t, direction)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(_bn_sign(x, mean, var, gamma, beta, 0.0),
                                want)


def test_batchnorm_threshold_is_exact_for_every_float32():
  """Random float32 parameters (a seventh of gamma 0, some negative):
  the threshold reproduces sign(BN(x)) of the float32 formula at x == t
  and its float32 neighbours, where the real threshold rounded to float32
  (computed in float64) does not."""
  rng = np.random.default_rng(0)
  c, f32, eps = 3000, np.float32, 1e-4
  mean = rng.normal(0, 3, c).astype(f32)
  var = rng.uniform(0.5, 2.0, c).astype(f32)
  gamma = rng.normal(0, 1, c).astype(f32)
  gamma[::7] = 0
  beta = rng.normal(0, 0.3, c).astype(f32)
  beta[::14] = 0
  t, direction = _ops.batchnorm_threshold(mean, var, gamma, beta, eps)
  assert direction.any() and not direction.all()
  fin = np.where(np.isfinite(t), t, f32(0))
  xs = [fin, np.nextafter(fin, f32(np.inf)), np.nextafter(fin, f32(-np.inf)),
        rng.normal(0, 3, c).astype(f32), np.round(fin)]
  with np.errstate(divide="ignore", invalid="ignore"):
    t64 = mean.astype(np.float64) - beta.astype(np.float64) * np.sqrt(
        var.astype(np.float64) + eps) / gamma.astype(np.float64)
  naive = np.where(gamma != 0, t64, np.where(beta >= 0, -np.inf, np.inf)
                   ).astype(f32)
  naive_wrong = 0
  for x in xs:
    want = _bn_sign(x, mean, var, gamma, beta, eps)
    np.testing.assert_array_equal(_ops.threshold_sign(x, t, direction),
                                  want)
    naive_wrong += np.sum(np.where(np.where(gamma < 0, x <= naive,
                                            x >= naive), 1, -1) != want)
  assert naive_wrong > 0
  # Non-finite mul (var + eps == 0): no threshold, the caller keeps BN.
  assert _ops.batchnorm_threshold(mean[:2], np.zeros(2, f32), gamma[:2],
                                  beta[:2], 0.0) is None


def threshold_model(seed=0):
  """flatten -> d0 -> bn -> hard_tanh -> d1 (binary, sign inputs) -> bn2 ->
  sign op -> d2 (binary) -> bn3 (the output): bn and bn2 are read only
  through a sign, bn3 is not.  bn has negative and zero gammas."""
  rng = np.random.default_rng(seed)

  def bn(name, x, c):
    return {"name": name, "op": "batchnorm", "inputs": [x], "epsilon": 1e-3,
            "params": {"mean": ["batch_stats", name, "mean"],
                       "var": ["batch_stats", name, "var"],
                       "scale": ["params", name, "scale"],
                       "bias": ["params", name, "bias"]}, "shape": [c]}

  def dense(name, x, c, **attrs):
    return {"name": name, "op": "dense", "inputs": [x],
            "params": {"kernel": ["params", name, "kernel"]}, "shape": [c],
            **attrs}

  layers = [
      {"name": "fl", "op": "flatten", "inputs": ["input"], "params": {},
       "shape": [64]},
      dense("d0", "fl", 24), bn("bn", "d0", 24),
      {"name": "ht", "op": "activation", "kind": "hard_tanh",
       "inputs": ["bn"], "params": {}, "shape": [24]},
      dense("d1", "ht", 16, kernel_quantizer="sign", input_quantizer="sign"),
      bn("bn2", "d1", 16),
      {"name": "sg", "op": "sign", "inputs": ["bn2"], "params": {},
       "shape": [16]},
      dense("d2", "sg", 10, kernel_quantizer="sign"), bn("bn3", "d2", 10)]
  params, stats = {}, {}
  for name, shape in (("d0", (64, 24)), ("d1", (24, 16)), ("d2", (16, 10))):
    params[name] = {"kernel": rng.standard_normal(shape).astype(np.float32)}
  for name, c in (("bn", 24), ("bn2", 16), ("bn3", 10)):
    scale = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)
    params[name] = {"scale": scale.astype(np.float32),
                    "bias": rng.normal(0, 0.5, c).astype(np.float32)}
    stats[name] = {"mean": rng.normal(0, 2, c).astype(np.float32),
                   "var": rng.uniform(0.5, 4, c).astype(np.float32)}
  params["bn"]["scale"][:4] = 0.0  # constant channels: sign(beta)
  params["bn"]["bias"][:2] = 0.0   # ... sign(0) = +1
  return layers, {"params": params, "batch_stats": stats}


def test_threshold_file_gives_the_same_logits(tmp_path):
  layers, variables = threshold_model()
  assert export.sign_read_batchnorms(layers) == {"bn", "bn2"}
  assert export.sign_read_batchnorms(all_ops_model()[0]) == set()  # c3
  paths = {}
  for thr in (False, True):
    paths[thr] = str(tmp_path / f"m{int(thr)}.sbn")
    export.write_model(paths[thr], layers, variables, input_shape=(8, 8, 1),
                       bn_threshold=thr)
  assert export.read(paths[False])[0]["version"] == 1
  header, tensors = export.read(paths[True])
  assert header["version"] == 2
  assert set(tensors) >= {"bn/threshold", "bn/direction", "bn3/mean"}
  assert "bn/mean" not in tensors and "bn2/var" not in tensors
  assert os.path.getsize(paths[True]) < os.path.getsize(paths[False])
  four, thr = export.Model.load(paths[False]), export.Model.load(paths[True])
  kernels = {r["name"]: r["kernel"] for r in thr.plan()}
  assert kernels["bn"] == kernels["bn2"] == "sign threshold"
  assert kernels["bn3"] == "numpy"
  x = np.random.default_rng(1).standard_normal((16, 8, 8, 1)).astype(
      np.float32)
  out4, out_t = {}, {}
  np.testing.assert_array_equal(thr.run(x, outputs=out_t),
                                four.run(x, outputs=out4))
  np.testing.assert_array_equal(out_t["bn"], _ops.sign(out4["bn"]))
  const = np.where(variables["params"]["bn"]["bias"][:4] >= 0, 1, -1)
  assert np.all(out_t["bn"][:, :4] == const) and np.all(const[:2] == 1)
  folded = export.Model.load(paths[True], fold_batchnorm=True)
  kernels = {r["name"]: r["kernel"] for r in folded.plan()}
  assert kernels["bn"] == "sign threshold"
  assert kernels["bn3"] == "folded into d2"
  np.testing.assert_allclose(folded(x), thr(x), rtol=1e-5, atol=1e-5)


# ------------- BatchNorm folded into a binary layer with real inputs (v3) --
def folded_model(seed=0):
  """c0 (binary conv, real inputs, bias) -> bn0 -> relu -> fl -> d1
  (magnitude-aware binary, ternary, no bias) -> bn1 (the output), all BNs
  foldable; plus d2 (binary, sign inputs) -> bn2, which is not (XNOR)."""
  rng = np.random.default_rng(seed)

  def bn(name, x, shape):
    return {"name": name, "op": "batchnorm", "inputs": [x], "epsilon": 1e-3,
            "params": {"mean": ["batch_stats", name, "mean"],
                       "var": ["batch_stats", name, "var"],
                       "scale": ["params", name, "scale"],
                       "bias": ["params", name, "bias"]}, "shape": shape}

  layers = [
      _conv_entry("c0", "input", 1, 8, shape=[8, 8, 8],
                  kernel_quantizer="sign"),
      bn("bn0", "c0", [8, 8, 8]),
      {"name": "relu", "op": "activation", "kind": "relu", "inputs": ["bn0"],
       "params": {}, "shape": [8, 8, 8]},
      {"name": "fl", "op": "flatten", "inputs": ["relu"], "params": {},
       "shape": [512]},
      {"name": "d1", "op": "dense", "inputs": ["fl"],
       "params": {"kernel": ["params", "d1", "kernel"]}, "shape": [24],
       "kernel_quantizer": "magnitude_aware_sign"},
      bn("bn1", "d1", [24]),
      {"name": "d2", "op": "dense", "inputs": ["bn1"],
       "params": {"kernel": ["params", "d2", "kernel"]}, "shape": [10],
       "kernel_quantizer": "sign", "input_quantizer": "sign"},
      bn("bn2", "d2", [10])]
  params = {"c0": {"kernel": rng.uniform(-1, 1, (3, 3, 1, 8)),
                   "bias": rng.normal(0, 0.3, 8)},
            "d1": {"kernel": rng.uniform(-1, 1, (512, 24)) *
                             (rng.random((512, 24)) < 0.6)},
            "d2": {"kernel": rng.uniform(-1, 1, (24, 10))}}
  stats = {}
  for name, c in (("bn0", 8), ("bn1", 24), ("bn2", 10)):
    params[name] = {"scale": rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1],
                                                                   c),
                    "bias": rng.normal(0, 0.5, c)}
    stats[name] = {"mean": rng.normal(0, 2, c), "var": rng.uniform(0.5, 4, c)}
  params["bn1"]["scale"][:3] = 0.0
  f32 = lambda tree: {k: {r: np.asarray(a, np.float32) for r, a in v.items()}
                      for k, v in tree.items()}
  return layers, {"params": f32(params), "batch_stats": f32(stats)}


def test_folded_batchnorm_file(tmp_path):
  layers, variables = folded_model()
  assert export.foldable_batchnorms(layers) == {"bn0": "c0", "bn1": "d1"}
  paths = {}
  for fold in (False, True):
    paths[fold] = str(tmp_path / f"m{int(fold)}.sbn")
    export.write_model(paths[fold], layers, variables, input_shape=(8, 8, 1),
                       bn_fold=fold)
  assert export.read(paths[False])[0]["version"] == 1
  header, tensors = export.read(paths[True])
  assert header["version"] == 3
  entries = {e["name"]: e for e in header["layers"]}
  assert entries["c0"]["storage"]["batchnorm"] == "folded"
  assert set(entries["d1"]["params"]) == {"kernel_sign", "kernel_nonzero",
                                          "scale", "shift"}
  assert entries["bn1"]["storage"] == {"batchnorm": "folded"}
  assert not entries["bn1"]["params"] and "bn2/mean" in tensors
  assert os.path.getsize(paths[True]) < os.path.getsize(paths[False])
  # a = gamma / sqrt(var + eps) * alpha, b = beta + gamma / sqrt(var + eps)
  # * (bias - mean), here by hand in float64.
  p, s = variables["params"], variables["batch_stats"]
  m = p["bn0"]["scale"] / np.sqrt(s["bn0"]["var"] + np.float32(1e-3))
  np.testing.assert_allclose(tensors["c0/scale"], m, rtol=1e-7)
  np.testing.assert_allclose(
      tensors["c0/shift"],
      p["bn0"]["bias"] + m * (p["c0"]["bias"] - s["bn0"]["mean"]),
      rtol=1e-6)
  unfolded, folded = (export.Model.load(paths[False]),
                      export.Model.load(paths[True]))
  kernels = {r["name"]: r["kernel"] for r in folded.plan()}
  assert kernels["c0"] == kernels["d1"] == "blas+bn"
  assert kernels["bn0"] == "folded into c0" and kernels["bn2"] == "numpy"
  assert kernels["d2"].startswith("xnor")
  x = np.random.default_rng(1).standard_normal((6, 8, 8, 1)).astype(
      np.float32)
  want = ref.run(layers, variables, x)
  np.testing.assert_allclose(folded(x), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(folded(x), unfolded(x), rtol=1e-5, atol=1e-5)
  # The evaluator's own folding leaves a stored fold alone (and folds bn2).
  again = export.Model.load(paths[True], fold_batchnorm=True)
  kernels = {r["name"]: r["kernel"] for r in again.plan()}
  assert kernels["bn0"] == "folded into c0" and kernels["d1"] == "blas+bn"
  assert kernels["bn2"] == "folded into d2"
  np.testing.assert_allclose(again(x), want, rtol=1e-5, atol=1e-5)


def test_fold_is_skipped_where_not_exact():
  """No fold after a float layer, an XNOR layer, a pool, or a binary layer
  read by more than its BatchNorm; none with a non-finite result."""
  layers, variables = folded_model()
  layers = [dict(e) for e in layers]
  by = {e["name"]: e for e in layers}
  by["c0"]["kernel_quantizer"] = None  # a float conv
  by["d1"]["input_quantizer"] = "heaviside"  # an XNOR layer
  assert export.foldable_batchnorms(layers) == {}
  layers, variables = folded_model()
  by = {e["name"]: e for e in layers}
  by["fl"]["inputs"] = ["c0"]  # c0 read by bn0 and fl; bn0 unused
  layers = [e for e in layers if e["name"] not in ("bn0", "relu")]
  assert export.foldable_batchnorms(layers) == {"bn1": "d1"}
  layers, variables = folded_model()
  variables["batch_stats"]["bn1"]["var"][0] = -1e-3  # var + eps == 0
  header, _ = export.encode(layers, variables, input_shape=(8, 8, 1),
                            bn_fold=True)
  storage = {e["name"]: e.get("storage") for e in header["layers"]}
  assert storage["bn0"] == {"batchnorm": "folded"} and storage["bn1"] is None
