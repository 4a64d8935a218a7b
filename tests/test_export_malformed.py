"""Malformed model files: each is refused by ``launch.evaluate`` with a
one-line error and exit code 2 (no JAX needed)."""
import copy
import errno
import hashlib
import json
import os
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

from experiments import export
from launch import evaluate
from tests.test_evaluator import all_ops_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def good(tmp_path):
  layers, variables, mask = all_ops_model(kq="sign", iq="sign", density=0.8)
  path = str(tmp_path / "good.sbn")
  export.write_model(path, layers, variables, mask, input_shape=(8, 8, 3))
  return path


def _resign(blob: bytes) -> bytes:
  body = blob[:-32]
  return body + hashlib.sha256(body).digest()


def _bytes(fn):
  def mutate(path):
    with open(path, "rb") as f:
      blob = f.read()
    with open(path, "wb") as f:
      f.write(fn(blob))
  return mutate


def _rewrite(fn):
  """Mutates (header, tensors) and writes a valid container around them."""
  def mutate(path):
    header, tensors = export.read(path)
    header = copy.deepcopy({k: v for k, v in header.items()
                            if k not in ("tensors", "format", "version")})
    tensors = {k: np.array(v) for k, v in tensors.items()}
    fn(header, tensors)
    export.write(path, header, tensors, overwrite=True)
  return mutate


def _layer(header, name):
  return next(e for e in header["layers"] if e["name"] == name)


def _set(name, key, value):
  def fn(header, tensors):
    del tensors
    _layer(header, name)[key] = value
  return fn


def _bad_padding(header, tensors):
  sign = _layer(header, "c2")["params"]["kernel_sign"]  # C_in 8: 24 pad bits
  tensors[sign][0, 0, 0, 0] |= np.uint32(1 << 31)


def _outside_mask(header, tensors):
  name = _layer(header, "c2")["params"]["kernel"]
  tensors[name].reshape(-1)[:] = 1.0


def _flip_data_byte(blob):
  b = bytearray(blob)
  b[-40] ^= 0xFF
  return bytes(b)


def _float_c2(good_path):
  """The same model with c2 real and 80% dense (a float32 kernel + mask)."""
  layers, variables, mask = all_ops_model(density=0.8)
  export.write_model(good_path, layers, variables, mask,
                     input_shape=(8, 8, 3), overwrite=True)


CASES = {
    "empty": (_bytes(lambda b: b""), "truncated"),
    "truncated": (_bytes(lambda b: b[:-100]), "truncated"),
    "trailing_bytes": (_bytes(lambda b: b + b"\0"), "unexpected bytes"),
    "bad_magic": (_bytes(lambda b: b"NOTAMODL" + b[8:]), "bad magic"),
    "unknown_version": (_bytes(lambda b: _resign(
        b[:8] + (7).to_bytes(4, "little") + b[12:])), "version 7"),
    "bad_checksum": (_bytes(_flip_data_byte), "checksum"),
    "header_not_json": (_bytes(lambda b: _resign(b[:32] + b"X" + b[33:])),
                        "not valid JSON"),
    "unknown_op": (_rewrite(_set("act", "op", "softmax")), "unknown op"),
    "unknown_quantizer": (_rewrite(_set("d1", "kernel_quantizer", "ternary")),
                          "unknown kernel_quantizer"),
    "unknown_activation": (_rewrite(_set("act", "kind", "gelu")),
                           "unknown activation"),
    "recorded_shape_mismatch": (_rewrite(_set("c1", "shape", [8, 8, 9])),
                                "shape mismatch"),
    "kernel_shape_mismatch": (_rewrite(lambda h, t: _layer(h, "out")[
        "storage"].update(kernel_shape=[17, 10])), "shape mismatch"),
    "missing_tensor": (_rewrite(lambda h, t: t.pop("out/bias")),
                       "missing tensor"),
    "wrong_dtype": (_rewrite(lambda h, t: t.update({
        "out/kernel": t["out/kernel"].astype(np.int32)})), "dtype int32"),
    "input_not_earlier": (_rewrite(_set("c1", "inputs", ["out"])),
                          "not earlier layers"),
    "padding_bits": (_rewrite(_bad_padding), "padding bits"),
    "no_layers": (_rewrite(lambda h, t: h.update(layers=[])), "no layers"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_is_refused(good, case, capsys):
  mutate, expected = CASES[case]
  mutate(good)
  with pytest.raises(SystemExit) as e:
    evaluate.main([f"--model={good}", "--dataset=digits"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith("launch.evaluate: error: ") and expected in err, err


def test_weight_outside_mask_is_refused(good):
  _float_c2(good)
  export.Model.load(good)  # valid as written
  _rewrite(_outside_mask)(good)
  with pytest.raises(export.FormatError, match="outside the stored mask"):
    export.Model.load(good)


def test_tensor_outside_data_section(good):
  header, tensors = export.read(good)
  blob = open(good, "rb").read()
  import json  # pylint: disable=g-import-not-at-top
  hlen = int.from_bytes(blob[16:24], "little")
  head = json.loads(blob[32:32 + hlen])
  name = list(head["tensors"])[-1]  # same digits, past the end
  offset = head["tensors"][name]["offset"]
  head["tensors"][name]["offset"] = 10 ** len(str(offset)) - 1
  new = json.dumps(head, separators=(",", ":")).encode()
  assert len(new) <= hlen  # keep the layout: pad the JSON with spaces
  new = new + b" " * (hlen - len(new))
  with open(good, "wb") as f:
    f.write(_resign(blob[:32] + new + blob[32 + hlen:]))
  del header, tensors
  with pytest.raises(export.FormatError, match="outside the data section"):
    export.Model.load(good)


def test_dataset_shape_mismatch(good, capsys):
  with pytest.raises(SystemExit) as e:  # the model takes 8x8x3, digits 8x8x1
    evaluate.main([f"--model={good}", "--dataset=digits"])
  assert e.value.code == 2 and "shape mismatch" in capsys.readouterr().err


def test_exit_code_in_a_real_process(good):
  _bytes(lambda b: b[:-1])(good)
  r = subprocess.run([sys.executable, "-m", "launch.evaluate",
                      f"--model={good}", "--dataset=digits"], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and r.stdout == ""
  assert r.stderr.count("\n") == 1 and "truncated" in r.stderr


@pytest.mark.parametrize("args,expected", [
    (["--dataset=no_such_set"], "dataset 'no_such_set'"),
    ([], "--dataset is required"),  # the file names no dataset
    (["--dataset=digits", "--sparse_max_density=1.5"],
     "--sparse_max_density must be in [0, 1]"),
    (["--dataset=digits", "--batch_size=0"], "--batch_size must be positive"),
    (["--dataset=digits", "--split=dev"], "argument --split"),
    (["--dataset=digits", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_are_refused(good, capsys, args, expected):
  with pytest.raises(SystemExit) as e:
    evaluate.main([f"--model={good}", *args])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and expected in err, err


# ------------------------- the BatchNorm threshold encoding (version 2) --
@pytest.fixture
def good_threshold(tmp_path):
  from tests.test_evaluator import threshold_model  # pylint: disable=g-import-not-at-top
  layers, variables = threshold_model()
  path = str(tmp_path / "thr.sbn")
  export.write_model(path, layers, variables, input_shape=(8, 8, 1),
                     bn_threshold=True)
  return path


def _as_version_1(path):
  header, tensors = export.read(path)
  header = {k: v for k, v in header.items() if k not in ("tensors",
                                                          "format", "version")}
  export.write(path, header, dict(tensors), overwrite=True, version=1)


def _direction_padding(header, tensors):
  tensors[_layer(header, "bn")["params"]["direction"]][0] |= np.uint32(
      1 << 30)  # 24 channels: bits 24..31 are padding


def _nan_threshold(header, tensors):
  tensors[_layer(header, "bn")["params"]["threshold"]][3] = np.nan


def _short_threshold(header, tensors):
  name = _layer(header, "bn")["params"]["threshold"]
  tensors[name] = tensors[name][:-1]


def _drop_direction(header, tensors):
  del _layer(header, "bn2")["params"]["direction"]


THRESHOLD_CASES = {
    "threshold_in_version_1_file": (_as_version_1, "needs format version 2"),
    "direction_padding_bits": (_rewrite(_direction_padding),
                               "nonzero padding bits in 'direction'"),
    "nan_threshold": (_rewrite(_nan_threshold),
                      "tensor 'bn/threshold': NaN at index (3,)"),
    "threshold_shape": (_rewrite(_short_threshold), "shape mismatch"),
    "missing_direction": (_rewrite(_drop_direction),
                          "takes the tensors 'threshold' and 'direction'"),
    "unknown_batchnorm_storage": (_rewrite(_set("bn", "storage", {
        "batchnorm": "lookup_table"})), "unknown batchnorm storage"),
}


@pytest.mark.parametrize("case", sorted(THRESHOLD_CASES))
def test_malformed_threshold_file_is_refused(good_threshold, case, capsys):
  export.Model.load(good_threshold)  # valid as written
  mutate, expected = THRESHOLD_CASES[case]
  mutate(good_threshold)
  with pytest.raises(SystemExit) as e:
    evaluate.main([f"--model={good_threshold}", "--dataset=digits"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith("launch.evaluate: error: ") and expected in err, err


def test_version_1_reader_refuses_version_2(good_threshold, monkeypatch):
  """A version-1 reader (this reader knowing only version 1) stops at the
  version field, before any layer is parsed."""
  from experiments.export import _format  # pylint: disable=g-import-not-at-top
  with open(good_threshold, "rb") as f:
    assert int.from_bytes(f.read(12)[8:12], "little") == 2
  monkeypatch.setattr(_format, "VERSIONS", (1,))
  with pytest.raises(export.FormatError,
                     match="unsupported format version 2"):
    export.Model.load(good_threshold)


# ------------------------ the folded BatchNorm encoding (version 3) --
@pytest.fixture
def good_folded(tmp_path):
  from tests.test_evaluator import folded_model  # pylint: disable=g-import-not-at-top
  layers, variables = folded_model()
  path = str(tmp_path / "fold.sbn")
  export.write_model(path, layers, variables, input_shape=(8, 8, 1),
                     bn_fold=True)
  return path


def _as_version(version):
  def mutate(path):
    header, tensors = export.read(path)
    header = {k: v for k, v in header.items()
              if k not in ("tensors", "format", "version")}
    export.write(path, header, dict(tensors), overwrite=True,
                 version=version)
  return mutate


def _tensor_of(layer, role, fn):
  def mutate(header, tensors):
    name = _layer(header, layer)["params"][role]
    tensors[name] = fn(tensors[name])
  return mutate


def _nan_scale(header, tensors):
  tensors[_layer(header, "d1")["params"]["scale"]][2] = np.nan


def _leftover_bias(header, tensors):
  tensors["c0/bias"] = np.zeros(8, np.float32)
  _layer(header, "c0")["params"]["bias"] = "c0/bias"


def _drop_shift(header, tensors):
  del tensors[_layer(header, "c0")["params"].pop("shift")]


def _bn_with_tensor(header, tensors):
  tensors["bn0/mean"] = np.zeros(8, np.float32)
  _layer(header, "bn0")["params"]["mean"] = "bn0/mean"


def _unfolded_source(header, tensors):
  """bn0 claims to be folded into c0, but c0 holds no fold."""
  del tensors
  del _layer(header, "c0")["storage"]["batchnorm"]


def _second_reader(header, tensors):
  """fl reads c0 directly: c0 is read by bn0 and fl."""
  del tensors
  _layer(header, "fl")["inputs"] = ["c0"]


FOLDED_CASES = {
    "folded_in_version_2_file": (_as_version(2), "needs format version 3"),
    "folded_in_version_1_file": (_as_version(1), "needs format version 3"),
    "scale_shape": (_rewrite(_tensor_of("c0", "scale", lambda a: a[:-1])),
                    "shape mismatch: tensor 'scale'"),
    "shift_dtype": (_rewrite(_tensor_of("d1", "shift",
                                        lambda a: a.astype(np.int32))),
                    "tensor 'shift' has dtype int32"),
    "nan_scale": (_rewrite(_nan_scale), "/scale': NaN at index (2,)"),
    "missing_shift": (_rewrite(_drop_shift),
                      "missing tensor for role 'shift'"),
    "leftover_bias": (_rewrite(_leftover_bias),
                      "takes the tensors 'kernel_sign', 'kernel_nonzero', "
                      "'scale' and 'shift'"),
    "binary_inputs": (_rewrite(_set("d1", "input_quantizer", "sign")),
                      "a folded batchnorm needs a layer with real inputs"),
    "float_kernel": (_rewrite(lambda h, t: _layer(h, "c0")["storage"].update(
        kernel="float32")), "needs a bit-packed kernel"),
    "unknown_fold": (_rewrite(lambda h, t: _layer(h, "c0")["storage"].update(
        batchnorm="fused")), "unknown batchnorm storage 'fused'"),
    "folded_bn_with_tensor": (_rewrite(_bn_with_tensor),
                              "a folded batchnorm takes no tensors"),
    "folded_bn_of_unfolded_layer": (_rewrite(_unfolded_source),
                                    "must read a dense/conv that holds"),
    "folded_layer_read_twice": (_rewrite(_second_reader),
                                "must be read by that batchnorm only"),
}


@pytest.mark.parametrize("case", sorted(FOLDED_CASES))
def test_malformed_folded_file_is_refused(good_folded, case, capsys):
  export.Model.load(good_folded)  # valid as written
  mutate, expected = FOLDED_CASES[case]
  mutate(good_folded)
  with pytest.raises(SystemExit) as e:
    evaluate.main([f"--model={good_folded}", "--dataset=digits"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith("launch.evaluate: error: ") and expected in err, err


def test_version_2_reader_refuses_version_3(good_folded, monkeypatch):
  from experiments.export import _format  # pylint: disable=g-import-not-at-top
  with open(good_folded, "rb") as f:
    assert int.from_bytes(f.read(12)[8:12], "little") == 3
  monkeypatch.setattr(_format, "VERSIONS", (1, 2))
  with pytest.raises(export.FormatError,
                     match="unsupported format version 3"):
    export.Model.load(good_folded)


# ------------- crafted files with a valid checksum (robustness cases) --
def _craft(fn=None, raw=None):
  """Replaces the header JSON (``fn(head)`` edits the parsed dict, or
  ``raw`` gives the bytes) around the same data section, with the lengths,
  padding and SHA-256 recomputed: what a buggy writer or a hostile file
  looks like.  The writer's own checks are bypassed."""
  def mutate(path):
    with open(path, "rb") as f:
      blob = f.read()
    _, version, flags, hlen, dlen = struct.unpack_from("<8sIIQQ", blob)
    data_at = 32 + hlen + (-(32 + hlen) % 64)
    data = blob[data_at:data_at + dlen]
    if raw is None:
      head = json.loads(blob[32:32 + hlen])
      fn(head)
      new = json.dumps(head, separators=(",", ":")).encode()
    else:
      new = raw
    body = (struct.pack("<8sIIQQ", b"SBNMODEL", version, flags, len(new),
                        dlen) + new + b"\0" * (-(32 + len(new)) % 64) + data)
    with open(path, "wb") as f:
      f.write(body + hashlib.sha256(body).digest())
  return mutate


def _tensor_entry(name, **entry):
  def fn(head):
    head["tensors"][name].update(entry)
  return fn


def _meta(**items):
  def fn(head):
    head["meta"] = items["value"] if "value" in items else {
        **head.get("meta", {}), **items}
  return fn


def _nested(depth):
  return (b'{"format":"sbn","version":1,"meta":{"x":' + b"[" * depth +
          b"]" * depth + b"}}")


def _nan_weight(header, tensors):
  tensors[_layer(header, "out")["params"]["kernel"]][0, 3] = np.nan


def _inf_weight(header, tensors):
  tensors[_layer(header, "out")["params"]["bias"]][1] = -np.inf


def _negative_var(header, tensors):
  tensors[_layer(header, "bn1")["params"]["var"]][5] = -5.0


CRAFTED_CASES = {
    # case 111: np.prod wrapped to 0 in int64
    "shape_product_overflows": (_craft(_tensor_entry(
        "out/bias", shape=[2 ** 62, 4, 1], nbytes=0)),
                                "tensor 'out/bias': shape [4611686018427387904"
                                ", 4, 1] needs 73786976294838206464 bytes, "
                                "more than the"),
    "shape_exceeds_data": (_craft(_tensor_entry(
        "out/bias", shape=[10 ** 6], nbytes=4 * 10 ** 6)),
                           "shape [1000000] needs 4000000 bytes, more than"),
    "negative_nbytes": (_craft(_tensor_entry("out/bias", nbytes=-40)),
                        "bad offset/size"),
    # case 112: RecursionError in json.loads
    "deeply_nested_header": (_craft(raw=b'{"a":' * 100000 + b"1" +
                                    b"}" * 100000),
                             "nested 100000 deep, more than the limit of 64"),
    "nested_65_deep": (_craft(raw=_nested(63)),
                       "nested 65 deep, more than the limit of 64"),
    "header_too_long": (_bytes(lambda b: _resign(
        b[:16] + (2 ** 40).to_bytes(8, "little") + b[24:])),
                        "header of 1099511627776 bytes exceeds the limit"),
    "nan_constant_in_header": (_craft(raw=b'{"format":"sbn","version":1,'
                                      b'"meta":{"x":NaN}}'),
                               "NaN is not a JSON number"),
    "overflowing_number": (_craft(
        raw=b'{"format":"sbn","version":1,"meta":{"x":1e999}}'),
                           "the number 1e999 overflows a float"),
    # case 119, 121 and their kin
    "meta_is_a_string": (_craft(_meta(value="just a string")),
                         "'meta' must be a JSON object, not str"),
    "meta_is_null": (_craft(_meta(value=None)),
                     "'meta' must be a JSON object, not NoneType"),
    "meta_seed_not_int": (_craft(_meta(seed="zero")),
                          "meta.seed must be an integer, not 'zero'"),
    "meta_seed_bool": (_craft(_meta(seed=True)),
                       "meta.seed must be an integer, not True"),
    "meta_dataset_not_str": (_craft(_meta(dataset=["digits"])),
                             "meta.dataset must be a string or null"),
    "meta_dataset_kwargs_list": (_craft(_meta(dataset_kwargs=[1, 2])),
                                 "meta.dataset_kwargs must be an object or "
                                 "null"),
    # case 115: accuracy 0.100, exit 0
    "nan_weight": (_rewrite(_nan_weight),
                   "tensor 'out/kernel': NaN at index (0, 3)"),
    "inf_weight": (_rewrite(_inf_weight),
                   "layer 'out': inf in 'bias' (tensor 'out/bias')"),
    # case 139: RuntimeWarning in sqrt, accuracy 0.100, exit 0
    "negative_batchnorm_variance": (_rewrite(_negative_var),
                                    "layer 'bn1': negative variance -5 in "
                                    "'var' (channel 5)"),
}


def _listing(directory):
  return {name: hashlib.sha256(open(os.path.join(directory, name),
                                    "rb").read()).hexdigest()
          for name in os.listdir(directory)}


@pytest.mark.parametrize("case", sorted(CRAFTED_CASES))
def test_crafted_file_is_refused(good, case, capsys):
  """Exit 2, one line naming the tensor / field, no traceback, and the
  directory (the file included) exactly as it was."""
  mutate, expected = CRAFTED_CASES[case]
  mutate(good)
  before = _listing(os.path.dirname(good))
  with pytest.raises(SystemExit) as e:
    evaluate.main([f"--model={good}", "--dataset=digits"])
  assert e.value.code == 2
  out, err = capsys.readouterr()
  assert out == "" and len(err.strip().splitlines()) == 1, err
  assert err.startswith("launch.evaluate: error: ") and expected in err, err
  assert _listing(os.path.dirname(good)) == before
  with pytest.raises(export.FormatError):
    export.Model.load(good)


def test_crafted_file_in_a_real_process(good):
  """Case 112 (like 111 and 119) crashed with a traceback and exit 1."""
  CRAFTED_CASES["deeply_nested_header"][0](good)
  r = subprocess.run([sys.executable, "-m", "launch.evaluate",
                      f"--model={good}", "--dataset=digits"], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and r.stdout == "", r.stderr
  assert r.stderr == (f"launch.evaluate: error: {good}: header JSON is "
                      "nested 100000 deep, more than the limit of 64\n")


@pytest.mark.parametrize("manifest,expected", [
    ({"meta": "just a string"}, "'meta' must be a JSON object, not str"),
    ({"meta": {"seed": "zero"}}, "meta.seed must be an integer"),
    ({"alphas": [float("nan")]}, "'alphas' (finite numbers)"),
    (None, "not an ensemble file (maximum recursion depth exceeded"),
])
def test_crafted_ensemble_file_is_refused(good, capsys, manifest, expected):
  """The ensemble's JSON file: the same checks of its meta, finite vote
  weights, and deep nesting (a RecursionError) in one line."""
  path = os.path.join(os.path.dirname(good), "ens.json")
  with open(path, "w") as f:
    if manifest is None:
      f.write('{"a":' * 100000)
    else:
      json.dump({"format": "sbn-ensemble/1", "members": ["good.sbn"],
                 "alphas": [1.0], **manifest}, f)
  before = _listing(os.path.dirname(good))
  with pytest.raises(SystemExit) as e:
    evaluate.main([f"--model={path}", "--dataset=digits"])
  assert e.value.code == 2
  out, err = capsys.readouterr()
  assert out == "" and len(err.strip().splitlines()) == 1, err
  assert err.startswith("launch.evaluate: error: ") and expected in err, err
  assert _listing(os.path.dirname(good)) == before


def test_infinite_batchnorm_threshold_is_accepted(good_threshold):
  """+-inf is how the threshold encoding stores a constant channel
  (gamma == 0): not refused, unlike inf in any other float tensor."""
  def inf_threshold(header, tensors):
    tensors[_layer(header, "bn")["params"]["threshold"]][[0, 1]] = [
        -np.inf, np.inf]
  _rewrite(inf_threshold)(good_threshold)
  export.Model.load(good_threshold)


def test_meta_accepts_what_the_writer_writes():
  from experiments.export import _format  # pylint: disable=g-import-not-at-top
  _format.check_meta({})
  _format.check_meta({"model": "mlp", "dataset": "digits", "seed": 3,
                      "dataset_kwargs": {"size": [8, 8]}, "step": None,
                      "level": 2, "result": {"accuracy": 0.5},
                      "reported_test_accuracy": 0.98, "ok": True})
  _format.check_meta({"dataset": None, "dataset_kwargs": None})


def test_writer_refuses_meta_the_reader_refuses(tmp_path):
  path = str(tmp_path / "m.sbn")
  for meta, expected in (("x", "'meta' must be a JSON object"),
                         ({"seed": "zero"}, "meta.seed must be an integer"),
                         ({"x": float("nan")}, "meta.x: nan is not a JSON")):
    with pytest.raises(export.FormatError, match=expected):
      export.write(path, {"layers": [], "meta": meta}, {})
    assert os.listdir(tmp_path) == []


# ---------------------- the writer: exclusive, atomic, mode from umask --
def _header(tag):
  return {"input_shape": [4], "layers": [], "meta": {"writer": tag}}


def _tensors():
  return {"w": np.arange(1000, dtype=np.float32)}


def _written_by(path):
  return export.read(path)[0]["meta"]["writer"]


_RACE = """
import json, multiprocessing as mp, os, sys
import numpy as np
from experiments.export import _format
def worker(tag, d, n, barrier, q):
  out = []
  for i in range(n):
    barrier.wait()
    try:
      _format.write(os.path.join(d, f"m{i}.sbn"), {"input_shape": [4],
          "layers": [], "meta": {"writer": tag}},
          {"w": np.arange(1000, dtype=np.float32)})
      out.append("ok")
    except FileExistsError as e:
      out.append(str(e))
  q.put((tag, out))
if __name__ == "__main__":
  d, n = sys.argv[1], int(sys.argv[2])
  ctx = mp.get_context("fork")
  barrier, q = ctx.Barrier(2), ctx.Queue()
  ps = [ctx.Process(target=worker, args=(t, d, n, barrier, q)) for t in "ab"]
  for p in ps:
    p.start()
  results = dict(q.get() for _ in ps)
  for p in ps:
    p.join()
  print(json.dumps(results))
"""


def test_concurrent_processes_exactly_one_wins(tmp_path):
  """Case 96: with exists() then os.replace, 2 of 200 races of two
  processes had both writers "succeed" (one file silently replaced)."""
  n = 50
  r = subprocess.run([sys.executable, "-c", _RACE, str(tmp_path), str(n)],
                     cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  results = json.loads(r.stdout)
  for i, (a, b) in enumerate(zip(results["a"], results["b"])):
    path = str(tmp_path / f"m{i}.sbn")
    assert sorted([a, b]) == sorted(["ok", f"{path} exists (pass "
                                     "--overwrite to replace it)"]), (i, a, b)
    assert _written_by(path) == ("a" if a == "ok" else "b")
  assert sorted(os.listdir(tmp_path)) == sorted(f"m{i}.sbn" for i in range(n))


def test_concurrent_threads_exactly_one_wins(tmp_path):
  """Two threads of one process: the same guarantee."""
  for attempt in range(50):
    path = str(tmp_path / f"m{attempt}.sbn")
    barrier = threading.Barrier(2)
    results = {}
    def writer(tag, path=path, barrier=barrier, results=results):
      barrier.wait()
      try:
        export.write(path, _header(tag), _tensors())
        results[tag] = "ok"
      except FileExistsError as e:
        results[tag] = str(e)
    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    winners = [t for t, r in results.items() if r == "ok"]
    assert len(winners) == 1, (attempt, results)
    loser = "b" if winners == ["a"] else "a"
    assert results[loser] == (f"{path} exists (pass --overwrite to replace "
                              "it)")
    assert _written_by(path) == winners[0]  # never replaced by the loser
  assert sorted(os.listdir(tmp_path)) == sorted(f"m{i}.sbn"
                                                for i in range(50))


def _race(monkeypatch, rival_tag):
  """Makes a rival writer create the target after the early check (the
  window of case 96), then lets write go on."""
  from experiments.export import _format  # pylint: disable=g-import-not-at-top
  real = _format.tempfile.mkstemp
  def mkstemp(*args, **kwargs):
    monkeypatch.setattr(_format.tempfile, "mkstemp", real)
    export.write(racing_path[0], _header(rival_tag), _tensors())
    return real(*args, **kwargs)
  racing_path = []
  monkeypatch.setattr(_format.tempfile, "mkstemp", mkstemp)
  return racing_path


def test_rival_between_check_and_link_is_not_replaced(tmp_path, monkeypatch):
  path = str(tmp_path / "m.sbn")
  _race(monkeypatch, "rival").append(path)
  with pytest.raises(FileExistsError, match=r"m\.sbn exists \(pass "
                     r"--overwrite to replace it\)$"):
    export.write(path, _header("late"), _tensors())
  assert _written_by(path) == "rival" and os.listdir(tmp_path) == ["m.sbn"]


def test_without_hard_links_still_exclusive(tmp_path, monkeypatch):
  """A file system without hard links: the name is reserved with
  O_CREAT | O_EXCL instead."""
  def no_link(src, dst):
    raise PermissionError(errno.EPERM, "Operation not permitted")
  monkeypatch.setattr(os, "link", no_link)
  path = str(tmp_path / "m.sbn")
  export.write(path, _header("first"), _tensors())
  assert _written_by(path) == "first"
  _race(monkeypatch, "rival").append(str(tmp_path / "n.sbn"))
  with pytest.raises(FileExistsError, match="n.sbn exists"):
    export.write(str(tmp_path / "n.sbn"), _header("late"), _tensors())
  assert _written_by(str(tmp_path / "n.sbn")) == "rival"
  assert sorted(os.listdir(tmp_path)) == ["m.sbn", "n.sbn"]


def test_overwrite_replaces(tmp_path):
  path = str(tmp_path / "m.sbn")
  export.write(path, _header("a"), _tensors())
  export.write(path, _header("b"), _tensors(), overwrite=True)
  assert _written_by(path) == "b" and os.listdir(tmp_path) == ["m.sbn"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600),
                                        (0o002, 0o664)])
def test_mode_follows_the_umask(tmp_path, umask, mode):
  """Case 80: the file was 0600 (mkstemp's) whatever the umask."""
  old = os.umask(umask)
  try:
    export.write(str(tmp_path / "m.sbn"), _header("a"), _tensors())
    export.write(str(tmp_path / "m.sbn"), _header("b"), _tensors(),
                 overwrite=True)
    export.write(str(tmp_path / "n.sbn"), _header("c"), _tensors())
  finally:
    os.umask(old)
  for name in ("m.sbn", "n.sbn"):
    assert os.stat(tmp_path / name).st_mode & 0o777 == mode


def test_export_cli_race_is_one_line_exit_2(tmp_path):
  """launch.export when another writer creates --out after its early
  check: one line, exit 2, the rival's file untouched, no temporary file."""
  out = str(tmp_path / "m.sbn")
  script = (
      "import sys\n"
      "import numpy as np\n"
      "from experiments import export\n"
      "def export_run(workdir, out, **kw):\n"
      "  h = {'input_shape': [4], 'layers': [], 'meta': {'writer': 'rival'}}\n"
      "  export.write(out, h, {})\n"  # the rival wins the race
      "  h['meta']['writer'] = 'cli'\n"
      "  export.write(out, h, {}, overwrite=kw['overwrite'])\n"
      "export.export_run = export_run\n"
      "from absl import app\n"
      "from launch import export as cli\n"
      "sys.argv = ['launch.export', '--workdir=RUN', '--out=' + sys.argv[1]]\n"
      "app.run(cli.main, flags_parser=cli.parse_flags)\n")
  r = subprocess.run([sys.executable, "-c", script, out], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
  assert r.stderr == (f"launch.export: error: {out} exists (pass "
                      "--overwrite to replace it)\n")
  assert _written_by(out) == "rival" and os.listdir(tmp_path) == ["m.sbn"]
