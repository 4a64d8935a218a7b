"""Malformed model files: each is refused by ``launch.evaluate`` with a
one-line error and exit code 2 (no JAX needed)."""
import copy
import hashlib
import os
import subprocess
import sys

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
    "nan_threshold": (_rewrite(_nan_threshold), "NaN in 'threshold'"),
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
    "nan_scale": (_rewrite(_nan_scale), "non-finite values in 'scale'"),
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
