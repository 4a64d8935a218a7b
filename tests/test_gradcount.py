"""Gradient-count sparsity: the transform and events on hand-made arrays,
and tiny driver runs (events, controls, resume after kill, bad config)."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import config_check
from experiments import gradcount_run
from experiments import segmentation
from experiments import drivers
import sparsity
from tests import _export_check
from tests.test_segmentation import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -------------------------------------------------------------- counting --
def test_counts_on_a_hand_made_gradient_sequence():
  params = {"Dense_0": {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}}
  mask = {"Dense_0": {"kernel": jnp.array([[True, True], [True, False]]),
                      "bias": None}}
  tx = sparsity.count_gradients(eps=0.5)
  state = tx.init(params)
  assert state.count["Dense_0"]["bias"] is None
  grads = [
      # kept 1, 0.1, -1: rms sqrt(2.01 / 3) = 0.8185, tau 0.409
      [[1.0, 0.1], [-1.0, 5.0]],
      # kept 0.2, 3, 0.2: rms sqrt(9.08 / 3) = 1.740, tau 0.870
      [[0.2, 3.0], [0.2, 9.0]],
      # all 2: tau 1
      [[2.0, 2.0], [2.0, 2.0]],
  ]
  expected = [[[1, 0], [1, 0]], [[1, 1], [1, 0]], [[2, 2], [2, 0]]]
  update = jax.jit(lambda g, s: tx.update(g, s, params, mask=mask))
  for g, want in zip(grads, expected):
    g = {"Dense_0": {"kernel": jnp.array(g), "bias": jnp.ones(2)}}
    out, state = update(g, state)
    assert out is g or jax.tree.all(jax.tree.map(jnp.array_equal, out, g))
    np.testing.assert_array_equal(state.count["Dense_0"]["kernel"], want)
  assert int(state.steps) == 3
  act = sparsity.activity(state)
  np.testing.assert_allclose(act["Dense_0"]["kernel"],
                             [[2 / 3, 2 / 3], [2 / 3, 0]])
  # Pruning a weight later clears its count.
  mask2 = {"Dense_0": {"kernel": jnp.array([[False, True], [True, False]]),
                       "bias": None}}
  _, state = tx.update({"Dense_0": {"kernel": jnp.ones((2, 2)),
                                    "bias": jnp.ones(2)}}, state, params,
                       mask=mask2)
  np.testing.assert_array_equal(state.count["Dense_0"]["kernel"],
                                [[0, 3], [3, 0]])


def test_count_state_inside_a_chain_and_reset():
  params = {"Conv_0": {"kernel": jnp.ones((1, 1, 2, 2))}}
  tx = optax.chain(sparsity.count_gradients(0.1),
                   sparsity.masked(optax.adam(1e-2)))
  state = tx.init(params)
  mask = sparsity.create_mask(params)
  g = {"Conv_0": {"kernel": jnp.arange(4.0).reshape(1, 1, 2, 2)}}
  _, state = tx.update(g, state, params, mask=mask)
  found = sparsity.find_count_state(state)
  np.testing.assert_array_equal(found.count["Conv_0"]["kernel"].ravel(),
                                [0, 1, 1, 1])
  reset = sparsity.reset_counts(state)
  assert int(sparsity.find_count_state(reset).steps) == 0
  assert not sparsity.find_count_state(reset).count["Conv_0"]["kernel"].any()
  # The Adam moments are untouched by the reset.
  assert jax.tree.all(jax.tree.map(jnp.array_equal, reset[1], state[1]))
  with pytest.raises(ValueError, match="GradCountState"):
    sparsity.find_count_state(optax.adam(1.0).init(params))
  with pytest.raises(ValueError, match="eps"):
    sparsity.count_gradients(0.0)


# ---------------------------------------------------------------- events --
def test_count_weighted_shrink_and_uniform_shrink_by_hand():
  p = {"k": jnp.array([[0.5, -0.5, 0.05, 0.3]]), "b": jnp.array([0.5])}
  a = {"k": jnp.array([[1.0, 0.0, 0.5, 0.0]]), "b": None}
  m = {"k": jnp.array([[True, True, True, False]]), "b": None}
  out = sparsity.count_weighted_shrink(p, a, m, 0.2)
  # thresholds 0, 0.2, 0.1; the pruned weight (0.3 here) is left as is.
  np.testing.assert_allclose(out["k"], [[0.5, -0.3, 0.0, 0.3]], rtol=1e-6)
  assert out["b"] is p["b"]
  params = {"Dense_0": {"kernel": jnp.array([[0.5, -0.05]]),
                        "bias": jnp.array([0.5])}}
  u = sparsity.shrink(params, None, 0.1)
  np.testing.assert_allclose(u["Dense_0"]["kernel"], [[0.4, 0.0]])
  np.testing.assert_allclose(u["Dense_0"]["bias"], [0.5])  # not a kernel


def test_prune_inactive_budget_and_ties():
  w = {"k": jnp.array([[0.1, -0.1, 0.3, 0.05, 0.9, 0.0]])}
  a = {"k": jnp.array([[0.0, 0.1, 0.2, 0.9, 0.0, 0.0]])}
  m = {"k": jnp.array([[True, True, True, True, True, False]])}
  # rho 0.5: candidates 0.1, -0.1, 0.3, 0.9 (0.05 is active; the last is
  # already pruned). Budget 0.4 of 5 alive = 2: the two smallest |w|, a
  # tie between 0.1 and -0.1 broken by index... both go.
  out = sparsity.prune_inactive(w, m, a, rho=0.5, budget=0.4)
  np.testing.assert_array_equal(out["k"],
                                [[False, False, True, True, True, False]])
  # Budget 0.2 -> 1: the tie goes to the lower index.
  out = sparsity.prune_inactive(w, m, a, rho=0.5, budget=0.2)
  np.testing.assert_array_equal(out["k"],
                                [[False, True, True, True, True, False]])
  # The budget is not binding: only the 4 candidates go, never a revival.
  out = sparsity.prune_inactive(w, m, a, rho=0.5, budget=1.0)
  np.testing.assert_array_equal(out["k"],
                                [[False, False, False, True, False, False]])


def test_redundant_filters_greedy():
  # Filters as columns of a (3, 4) dense kernel: f1 nearly duplicates f0.
  k = jnp.array([[1.0, 0.99, 0.0, 0.0],
                 [0.0, 0.10, 1.0, 0.0],
                 [0.0, 0.0, 0.0, 1.0]])
  kept = {"L": jnp.ones(4, bool)}
  out = sparsity.redundant_filters({"L": k}, kept, sparsity.max_cosine_scores,
                                   0.9)
  # f0 and f1 tie (cos 0.995): the lower index goes, then f1 is unique.
  np.testing.assert_array_equal(out["L"], [False, True, True, True])
  # min_keep and budget stop it even at a threshold every filter exceeds.
  flat = jnp.ones((3, 4))
  out = sparsity.redundant_filters({"L": flat}, kept,
                                   sparsity.max_cosine_scores, 0.5,
                                   min_keep=3)
  assert out["L"].sum() == 3
  out = sparsity.redundant_filters({"L": flat}, kept,
                                   sparsity.max_cosine_scores, 0.5,
                                   budget=0.25)
  assert out["L"].sum() == 3
  # A filter mask becomes kernel columns and BatchNorm channels.
  params = {"L": {"kernel": k}, "BN": {"scale": jnp.ones(4),
                                       "bias": jnp.ones(4)}}
  mask = sparsity.filter_mask_update(
      params, sparsity.create_mask(params),
      {"L": jnp.array([False, True, True, True])}, {"L": ["BN"]})
  np.testing.assert_array_equal(mask["L"]["kernel"][:, 0], [False] * 3)
  np.testing.assert_array_equal(mask["BN"]["scale"], [False, True, True,
                                                      True])


def test_composite_schedule():
  ev = sparsity.composite_schedule(warmup=10, joint=25, window=10,
                                   redundancy_every=20)
  assert sorted(ev) == [10, 20, 30, 35]
  assert ev[10] == sparsity.CompositeEvent(True, False, False, False)
  assert ev[20].update and not ev[20].redundancy
  assert ev[30].redundancy and not ev[30].last
  assert ev[35].last and ev[35].update
  with pytest.raises(ValueError):
    sparsity.composite_schedule(0, 0, 10, 10)


# ---------------------------------------------------------------- driver --
def _restore(config, workdir):
  setup = gradcount_run.Setup(config)
  _, restored = setup.engine.restore(workdir)
  return setup, restored[0]


@pytest.fixture(scope="module")
def gradcount_run_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("gc") / "run")
  config = tiny_config(s_max=0.3, rho=0.5, prune_budget=0.3)
  summary = drivers.run(config, workdir)
  return config, workdir, summary


def test_gradcount_driver_prunes_weights_and_filters(gradcount_run_dir):
  config, workdir, summary = gradcount_run_dir
  final = summary["final"]
  assert final["remaining_fraction"] < 1.0
  assert final["filters_remaining_fraction"] < 1.0
  assert final["memory_bytes"] < sum(r["memory_bytes_dense"]
                                     for r in summary["layer_report"])
  events = [json.loads(l) for l in open(os.path.join(workdir,
                                                     "events.jsonl"))]
  assert [e["step"] for e in events] == [10, 20, 30]
  assert events[-1]["weights_kept"] / events[-1]["weights"] == pytest.approx(
      final["remaining_fraction"])
  kept = [e["weights_kept"] for e in events]
  assert kept == sorted(kept, reverse=True)  # never revived
  setup, state = _restore(config, workdir)
  # Pruned weights (and dropped filters' BatchNorm scale/bias) are exactly
  # 0 at the end, and so are their Adam moments.
  for name, m, w in sparsity.masked_leaves(state.mask, state.params):
    assert not np.asarray(w)[~np.asarray(m)].any(), name
  adam = state.opt_state[1].inner_state[0]
  for name, m, mu in sparsity.masked_leaves(state.mask, adam.mu):
    assert not np.asarray(mu)[~np.asarray(m)].any(), name
  alive = sparsity.filters_of(state.mask, state.params)
  dropped = [n for n in setup.removable if not np.asarray(alive[n]).all()]
  assert dropped
  bn = setup.groups[dropped[0]][0].split("/")
  node = state.params
  for k in bn:
    node = node[k]
  off = ~np.asarray(alive[dropped[0]])
  assert not np.asarray(node["scale"])[off].any()


def test_export_of_the_pruned_network_evaluates_to_its_accuracy(
    gradcount_run_dir, tmp_path):
  """launch.export of the finished run (the final mask, filters removed),
  evaluated without JAX: the summary's pixel accuracy. The trainer sums
  per-example pixel accuracies in float32, the evaluator counts pixels, so
  the two fractions are compared as numbers of correct test pixels."""
  _, workdir, summary = gradcount_run_dir
  out = tmp_path / "gc.sbn"
  info = _export_check.export(workdir, out)
  result = _export_check.evaluate_without_jax(out)
  assert result["count"] == 24 * 16 * 16  # pixels of the 24 test images
  reported = summary["final"]["test_accuracy"]
  assert info["reported_test_accuracy"] == reported
  assert round(result["accuracy"] * result["count"]) == round(
      reported * result["count"])
  assert result["accuracy"] == pytest.approx(reported, abs=1e-6)


def test_controls_match_the_final_sparsity(gradcount_run_dir, tmp_path):
  _, workdir, summary = gradcount_run_dir
  for method in ("magnitude", "l1"):
    config = tiny_config(method=method, match_workdir=workdir)
    out = drivers.run(config, str(tmp_path / method))
    assert out["gradcount"]["target_sparsity"] == pytest.approx(
        1 - summary["final"]["remaining_fraction"])
    assert out["final"]["remaining_fraction"] == pytest.approx(
        summary["final"]["remaining_fraction"], abs=1e-9)


def test_scratch_baselines_train_the_final_mask(gradcount_run_dir, tmp_path):
  config, _, summary = gradcount_run_dir
  config = tiny_config(s_max=0.3, rho=0.5, prune_budget=0.3, scratch=True)
  workdir = str(tmp_path / "scratch")
  out = drivers.run(config, workdir)
  assert out["final"] == summary["final"]  # the pruned run is unchanged
  frac = out["final"]["macs_fraction"]
  assert 0.0 < frac < 1.0
  base = out["baselines"]
  assert base["scratch_e"]["steps"] == 40
  # The same MACs, at most twice the steps (scratch_b_max_factor = 2).
  assert base["scratch_b"]["steps"] == math.ceil(
      40 * min(1 / frac, 2.0) - 1e-9)
  for row in base.values():
    assert 0.0 <= row["dice"] <= 1.0
  setup = gradcount_run.Setup(config)
  final = setup.engine.restore(workdir)[1][0]
  _, restored = setup.engine.restore(os.path.join(workdir, "scratch_e"))
  state = restored[0]
  for (name, m, w), (_, m2, _) in zip(
      sparsity.masked_leaves(state.mask, state.params),
      sparsity.masked_leaves(final.mask, final.params)):
    assert np.array_equal(np.asarray(m), np.asarray(m2)), name
    assert not np.asarray(w)[~np.asarray(m)].any(), name


_RUNNER = """
import json, os, signal, sys
sys.path.insert(0, {root!r})
from experiments import data as data_lib, drivers
from tests.test_segmentation import tiny_config
calls = {{"n": 0}}
real = data_lib.train_batch
def batch(source, step, **kw):
  calls["n"] += 1
  if calls["n"] == {kill_at}:
    os.kill(os.getpid(), signal.SIGKILL)
  return real(source, step, **kw)
data_lib.train_batch = batch
drivers.run(tiny_config(**json.loads({kw!r})), {workdir!r})
"""


def _run_sub(workdir, kill_at, **kw):
  code = _RUNNER.format(root=ROOT, kill_at=kill_at, kw=json.dumps(kw),
                        workdir=workdir)
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=600)


def test_resume_after_kill_is_bit_identical(gradcount_run_dir, tmp_path):
  _, _, summary = gradcount_run_dir
  workdir = str(tmp_path / "killed")
  kw = dict(s_max=0.3, rho=0.5, prune_budget=0.3)
  # Killed (SIGKILL) at the 25th batch: after the events of steps 10 and 20
  # and the checkpoint of step 20, in the middle of a window.
  proc = _run_sub(workdir, 25, **kw)
  assert proc.returncode == -9, proc.stderr[-2000:]
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  resumed = drivers.run(tiny_config(**kw), workdir)
  assert resumed["final"] == summary["final"]
  events = [json.loads(l)["step"] for l in open(os.path.join(
      workdir, "events.jsonl"))]
  assert events == [10, 20, 30]


def test_bad_config_exits_2_with_one_line(tmp_path):
  workdir = tmp_path / "w"
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       "--config=experiments/configs/gradcount_shapes.py",
       f"--workdir={workdir}", "--config.gradcount.method=bogus"], cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines()
           if l.strip() and "WARNING" not in l and not l.startswith("W0")]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert "gradcount.method" in lines[0] and "bogus" in lines[0]
  assert not workdir.exists()  # nothing written


@pytest.mark.parametrize("field,value", [
    ("joint_steps", 100000), ("redundancy_every", 15), ("rho", 1.5),
    ("s_max", 0.0), ("redundancy", "fpgm"), ("method", "l1"),
    ("window", 0), ("eps", 0.0)])
def test_bad_gradcount_fields(field, value):
  config = tiny_config(**{field: value})
  want = "target_sparsity" if field == "method" else field
  with pytest.raises(config_check.ConfigError,
                     match=f"config.gradcount.{want}"):
    config_check.validate(config)


def test_match_workdir_without_a_run_is_refused(tmp_path):
  config = tiny_config(method="magnitude",
                       match_workdir=str(tmp_path / "none"))
  with pytest.raises(config_check.ConfigError,
                     match="gradcount.match_workdir"):
    drivers.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("module,shape", [
    ("gradcount_shapes", (32, 32, 3)),
    ("gradcount_mobilenetv3_shapes", (32, 32, 3)),
    ("gradcount_mobilenetv3_pet", (128, 128, 3))])
def test_configs_validate_and_describe_their_model(module, shape):
  import importlib  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{module}"
                                   ).get_config()
  config_check.validate(config)
  num_classes = 3 if config.dataset == "oxford_iiit_pet" else 4
  model = models.get_model(config.model, num_classes,
                           **config.model_kwargs.to_dict())
  layers = models.layer_list(model, shape)
  assert layers[-1]["shape"] == [*shape[:2], num_classes]
  removable = gradcount_run.removable_layers(layers)
  by = {e["name"]: e for e in layers}
  assert removable and all(by[n]["feature_group_count"] == 1
                           for n in removable)
  assert not set(removable) & set(segmentation.output_layers(layers))
