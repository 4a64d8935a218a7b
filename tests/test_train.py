"""End-to-end tests of the trainer on digits: outputs, resume, errors."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments import config_check
from experiments import data as data_lib
from experiments import drivers
from experiments import train
import _export_check
from helpers import leaves_equal
from helpers import small_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  config = small_config()
  summary = drivers.run(config, workdir)
  return config, workdir, summary


def test_outputs_follow_the_contract(finished_run):
  config, workdir, summary = finished_run
  with open(os.path.join(workdir, "summary.json")) as f:
    stored = json.load(f)
  assert stored == json.loads(json.dumps(summary))
  assert stored["dataset"] == "digits" and stored["model"] == "mlp"
  final = stored["final"]
  assert 0.0 <= final["test_accuracy"] <= 1.0
  assert final["test_accuracy"] > 0.8  # 300 steps on digits
  assert final["step"] == config.num_steps
  assert final["remaining_fraction"] == pytest.approx(0.2, abs=1e-3)
  sizes = {r["name"]: r["size"] for r in stored["layers"]}
  assert sizes == {"Dense_0/kernel": 64 * 64, "Dense_1/kernel": 64 * 32,
                   "Dense_2/kernel": 32 * 10}
  for row in stored["layers"]:  # layer-wise: every layer at 80%
    assert row["remaining"] == round(0.2 * row["size"])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f]
  assert rows and all("step" in r for r in rows)
  assert any("val_accuracy" in r for r in rows)
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["num_steps"] == config.num_steps
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return
  events = os.listdir(os.path.join(workdir, "tensorboard"))
  assert any(e.startswith("events.out.tfevents") for e in events)


def test_pruned_weights_are_exactly_zero(finished_run):
  config, workdir, _ = finished_run
  state = train.load_state(config, workdir)
  for w, m in zip(jax.tree.leaves(state.params["Dense_0"]["kernel"]),
                  jax.tree.leaves(state.mask["Dense_0"]["kernel"])):
    assert np.all(np.asarray(w)[~np.asarray(m)] == 0.0)


def test_export_evaluates_to_the_reported_accuracy(finished_run, tmp_path):
  """launch.export of a finished plain run (its newest checkpoint), then
  launch.evaluate without JAX: the summary's test accuracy exactly."""
  _, workdir, summary = finished_run
  result, _ = _export_check.check(workdir, tmp_path)
  assert result["accuracy"] == summary["final"]["test_accuracy"]
  assert result["meta"]["method"] == "plain"
  # Refused (launch.export: one line, exit 2): --level on a plain run, and
  # an unfinished run (no summary.json).
  with pytest.raises(ValueError, match="--level is not an option of plain runs"):
    _export_check.export(workdir, tmp_path / "x.sbn", level=1)
  unfinished = tmp_path / "unfinished"
  shutil.copytree(workdir, unfinished)
  os.remove(unfinished / "summary.json")
  with pytest.raises(FileNotFoundError,
                     match="no summary.json: the run is unfinished"):
    _export_check.export(str(unfinished), tmp_path / "x.sbn")
  assert not os.path.exists(tmp_path / "x.sbn")


def test_rerun_after_finish_returns_stored_result(finished_run, capsys):
  config, workdir, summary = finished_run
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  again = drivers.run(config, workdir)
  assert again == json.loads(json.dumps(summary))
  assert "already finished" in capsys.readouterr().out
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_interrupted_run_resumes_bit_identically(finished_run, tmp_path,
                                                 monkeypatch):
  config, ref_dir, ref_summary = finished_run
  workdir = str(tmp_path / "run")
  real_batch = data_lib.train_batch

  def interrupt_at_170(source, step, **kw):
    if step == 170:  # after the checkpoint at 100, mid-pruning
      raise KeyboardInterrupt
    return real_batch(source, step, **kw)

  monkeypatch.setattr(data_lib, "train_batch", interrupt_at_170)
  with pytest.raises(KeyboardInterrupt):
    drivers.run(config, workdir)
  monkeypatch.setattr(data_lib, "train_batch", real_batch)
  summary = drivers.run(config, workdir)
  assert summary == json.loads(json.dumps(ref_summary))
  assert leaves_equal(train.load_state(config, workdir),
                       train.load_state(config, ref_dir))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path, monkeypatch):
  config = small_config(num_steps=200, **{"pruning.end_step": 150})
  workdir = str(tmp_path / "nan")
  real_batch = data_lib.train_batch

  def nan_at_130(source, step, **kw):
    batch = real_batch(source, step, **kw)
    if step == 130:
      batch = dict(batch, image=np.full_like(batch["image"], np.nan))
    return batch

  monkeypatch.setattr(data_lib, "train_batch", nan_at_130)
  with pytest.raises(train.NonFiniteLossError, match="step 131"):
    drivers.run(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [
      "100", "125"]
  assert not os.path.exists(os.path.join(workdir, "summary.json"))


def test_workdir_of_another_config_is_refused(finished_run):
  config, workdir, _ = finished_run
  other = small_config(learning_rate=0.5)
  listing = sorted(os.listdir(workdir))
  with pytest.raises(config_check.ConfigError, match="learning_rate"):
    drivers.run(other, workdir)
  assert sorted(os.listdir(workdir)) == listing


@pytest.mark.parametrize("field,value", [
    ("pruning.target_sparsity", 1.0),
    ("pruning.target_sparsity", -0.1),
    ("num_steps", 0),
    ("batch_size", -4),
    ("dataset", "imagenet21k"),
    ("model", "transformer"),
    ("optimizer", "lion"),
])
def test_bad_config_names_the_field(tmp_path, field, value):
  config = small_config(**{field: value})
  with pytest.raises(config_check.ConfigError, match=field.split(".")[-1]):
    drivers.run(config, str(tmp_path / "bad"))
  assert not os.path.exists(tmp_path / "bad")


def test_batchnorm_resnet_with_global_pruning_on_synthetic(tmp_path):
  config = small_config(**{
      "model": "resnet20", "dataset": "synthetic", "optimizer": "momentum",
      "learning_rate": 0.05, "batch_size": 32, "num_steps": 20,
      "log_every": 10, "eval_every": 10, "checkpoint_every": 10,
      "pruning.schedule": "oneshot", "pruning.scope": "global",
      "pruning.begin_step": 10, "model_kwargs": {}})
  config.dataset_kwargs = {"input_shape": (8, 8, 3), "num_train": 256,
                           "num_validation": 64, "num_test": 64}
  summary = drivers.run(config, str(tmp_path))
  assert summary["final"]["remaining_fraction"] == pytest.approx(0.2,
                                                                 abs=1e-3)
  assert np.isfinite(summary["final"]["test_loss"])
  state = train.load_state(config, str(tmp_path))
  stats = jax.tree.leaves(state.batch_stats)
  assert stats and any(np.any(np.asarray(s) != 0) for s in stats)
  # Global pruning: layers end at different sparsities.
  fractions = {r["remaining"] / r["size"] for r in summary["layers"]}
  assert len(fractions) > 1


def test_tfds_mnist_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = small_config(**{"dataset": "mnist", "data_dir": str(tmp_path),
                           "batch_size": 16, "num_steps": 20,
                           "log_every": 10, "eval_every": 10,
                           "checkpoint_every": 10, "pruning.method": "none"})
  config.dataset_kwargs = {"num_validation": 16}
  with tfds.testing.mock_data(num_examples=64,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    summary = drivers.run(config, str(tmp_path / "run"))
  assert summary["dataset"] == "mnist"
  assert summary["layers"][0]["size"] == 784 * 64
  assert 0.0 <= summary["final"]["test_accuracy"] <= 1.0
