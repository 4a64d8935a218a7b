"""Your own model, exported: `export.export_model` checks the file against
the JAX model on a batch before writing it (the README's example runs
here as written)."""

import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from experiments import export
from experiments import models
from experiments.models import layers as L
from launch import evaluate


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_example() -> str:
  """The README's "Your own model" code block."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  text = text[text.index("**Your own model.**"):]
  text = text[text.index("```python\n") + 10:]
  return text[:text.index("\n```")]


class MyCNN(nn.Module):
  """A user-defined CNN, written with the recording helpers (the
  README's)."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = L.conv(nn.Conv(8, (3, 3), padding="SAME"), x)
    x = L.batchnorm(nn.BatchNorm(use_running_average=not train), x)
    x = L.relu(x)
    x = L.max_pool(x, (2, 2), (2, 2))
    return L.dense(nn.Dense(10), L.flatten(x))


@pytest.fixture(scope="module")
def cnn():
  model = MyCNN()
  variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 1)),
                         train=False)
  # Non-trivial BatchNorm statistics, so a dropped BatchNorm shows.
  stats = variables["batch_stats"]["BatchNorm_0"]
  variables = {"params": variables["params"], "batch_stats": {
      "BatchNorm_0": {"mean": stats["mean"] + 0.5,
                      "var": stats["var"] * 4.0}}}
  return model, variables


def _drop(layers, name):
  """The list without layer `name`, its readers reading its input."""
  src = next(e for e in layers if e["name"] == name)["inputs"][0]
  out = []
  for e in layers:
    if e["name"] != name:
      out.append({**e, "inputs": [src if i == name else i
                                  for i in e["inputs"]]})
  return out


def test_readme_example_exports_and_launch_evaluate_reads_it(
    tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  code = _readme_example()
  assert "class MyCNN" in code and "export.export_model" in code
  exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
  assert evaluate.main(["--model=my_cnn.sbn", "--json"]) == 0
  report = json.loads(capsys.readouterr().out)
  assert report["dataset"] == "digits"
  assert 0.0 <= report["accuracy"] <= 1.0


def test_own_cnn_exports_and_evaluates_equal(cnn, tmp_path):
  model, variables = cnn
  out = str(tmp_path / "m.sbn")
  info = export.export_model(out, model, variables, input_shape=(8, 8, 1),
                             meta={"dataset": "digits"})
  assert info["layers"] == 6 and info["max_abs_diff"] < 1e-4
  x = np.random.default_rng(1).standard_normal((5, 8, 8, 1)).astype(
      np.float32)
  got = export.Model.load(out)(x)
  want = model.apply(variables, x, train=False)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  assert export.Model.load(out).meta["dataset"] == "digits"
  with pytest.raises(FileExistsError):
    export.export_model(out, model, variables, input_shape=(8, 8, 1))
  export.export_model(out, model, variables, input_shape=(8, 8, 1),
                      overwrite=True)


def test_layer_outputs_are_the_models_intermediates(cnn):
  model, variables = cnn
  x = np.ones((2, 8, 8, 1), np.float32)
  outs = models.layer_outputs(model, variables, x)
  names = [e["name"] for e in models.layer_list(model, (8, 8, 1))]
  assert list(outs) == names
  np.testing.assert_allclose(outs[names[-1]],
                             model.apply(variables, x, train=False),
                             atol=1e-6)


@pytest.mark.parametrize("dropped", ["relu_0", "BatchNorm_0"])
def test_a_dropped_layer_is_refused_by_name(cnn, tmp_path, dropped):
  model, variables = cnn
  layers = _drop(models.layer_list(model, (8, 8, 1)), dropped)
  out = tmp_path / "m.sbn"
  with pytest.raises(export.ExportError) as e:
    export.export_model(str(out), model, variables, input_shape=(8, 8, 1),
                        layers=layers)
  msg = str(e.value)
  assert f"layer {dropped!r}" in msg and "not written" in msg, msg
  assert "\n" not in msg
  assert os.listdir(tmp_path) == []  # no file, no temporary left


def test_a_changed_layer_is_named(cnn, tmp_path):
  model, variables = cnn
  layers = models.layer_list(model, (8, 8, 1))
  layers = [{**e, "kind": "avg", "count_include_pad": True}
            if e["op"] == "pool" else e for e in layers]
  with pytest.raises(export.ExportError,
                     match=r"^layer 'pool_0' differs from the JAX model "
                           r"\(max \|diff\| [0-9.e+-]+\); the file was not "
                           "written$"):
    export.export_model(str(tmp_path / "m.sbn"), model, variables,
                        input_shape=(8, 8, 1), layers=layers)
  assert os.listdir(tmp_path) == []


def test_a_wrong_shape_is_refused(cnn, tmp_path):
  model, variables = cnn
  with pytest.raises(ValueError, match="sample of shape"):
    export.export_model(str(tmp_path / "m.sbn"), model, variables,
                        input_shape=(8, 8, 1),
                        sample=np.zeros((2, 9, 9, 1), np.float32))
  # The variables are 8x8's: the 10x10 list's dense kernel does not fit.
  with pytest.raises(export.ExportError, match="Dense_0"):
    export.export_model(str(tmp_path / "m.sbn"), model, variables,
                        input_shape=(10, 10, 1))
  assert os.listdir(tmp_path) == []


def test_a_callable_with_a_hand_written_list(cnn, tmp_path):
  """A callable (e.g. an NNX model) with its layer list by hand."""
  model, variables = cnn
  layers = models.layer_list(model, (8, 8, 1))
  apply = lambda x: model.apply(variables, x, train=False)
  out = str(tmp_path / "m.sbn")
  export.export_model(out, apply, variables, input_shape=(8, 8, 1),
                      layers=layers)
  assert os.path.exists(out)
  with pytest.raises(ValueError, match="layers="):
    export.export_model(str(tmp_path / "n.sbn"), apply, variables,
                        input_shape=(8, 8, 1))
  with pytest.raises(export.ExportError, match="^layer 'Dense_0' .the "
                     "output. differs"):
    export.export_model(str(tmp_path / "n.sbn"), apply, variables,
                        input_shape=(8, 8, 1),
                        layers=_drop(layers, "relu_0"))
  assert not os.path.exists(tmp_path / "n.sbn")
