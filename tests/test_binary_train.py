"""Binary runs through the trainer: BinaryConnect on digits and its twin."""
import json
import os

import jax
import numpy as np
import pytest

from experiments import models
from experiments import drivers
from experiments import train
from experiments.configs import binaryconnect_digits


def _config(**overrides):
  config = binaryconnect_digits.get_config()
  config.num_steps = 200
  config.log_every = 50
  config.eval_every = 100
  config.checkpoint_every = 100
  config.model_kwargs.hidden = (32, 32)
  for k, v in overrides.items():
    node = config
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return config


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("bc"))
  config = _config()
  return config, workdir, drivers.run(config, workdir)


def test_binaryconnect_learns_and_clips(binary_run):
  config, workdir, summary = binary_run
  assert summary["final"]["test_accuracy"] > 0.8
  state = train.load_state(config, workdir)
  kernels = [leaf for path, leaf in
             jax.tree_util.tree_leaves_with_path(state.params)
             if models.is_binary_kernel(tuple(k.key for k in path), leaf)]
  assert len(kernels) == 3  # binary_first and binary_last: all binary
  assert all(np.abs(np.asarray(k)).max() <= 1.0 for k in kernels)
  assert any(np.abs(np.asarray(k)).max() == 1.0 for k in kernels)


def test_flip_ratio_is_logged_per_layer(binary_run):
  _, workdir, _ = binary_run
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f if "train_loss" in l]
  assert [r["step"] for r in rows] == [50, 100, 150, 200]
  for r in rows:
    per_layer = [v for k, v in r.items() if k.startswith("flip_ratio/")]
    assert len(per_layer) == 3 and all(0 <= v <= 1 for v in per_layer)
    assert r["flip_ratio"] == pytest.approx(np.mean(per_layer))
  assert rows[0]["flip_ratio"] > 0  # training flips signs early on


def test_model_summary_counts_bits(binary_run):
  _, _, summary = binary_run
  rows = {r["name"]: r for r in summary["model_summary"]}
  first = rows["BinaryDense_0"]
  assert first["params"] == {"1": 64 * 32, "32": 32}
  assert first["memory_bytes_32"] == 4 * (64 * 32 + 32)
  assert first["memory_bytes_packed"] == 32 * 2 * 4 + 32 * 4  # 2 words/out
  total = rows["total"]
  assert total["params"]["1"] == 64 * 32 + 32 * 32 + 32 * 10
  assert total["memory_bytes_packed"] < total["memory_bytes_32"] / 5


def test_float_twin_has_no_binary_layers(tmp_path):
  config = _config(binarize=False)
  summary = drivers.run(config, str(tmp_path))
  assert summary["model_summary"][-1]["params"]["1"] == 0
  state = train.load_state(config, str(tmp_path))
  names = [k for k in state.params]
  assert names and not any(n.startswith("Binary") for n in names)
  with open(tmp_path / "metrics.jsonl") as f:
    assert not any("flip_ratio" in l for l in f)


def test_stochastic_binaryconnect_runs(tmp_path):
  config = _config(**{"model_kwargs.kernel_quantizer": "stochastic_sign"})
  ref = drivers.run(config, str(tmp_path / "a"))
  assert ref["final"]["test_accuracy"] > 0.5
