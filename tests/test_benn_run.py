"""The BENN driver end to end on tiny digits runs (stacked vmap members,
a member loop, boosting, kill -9 and resume, bad configs)."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import binary
from experiments import benn_run
from experiments import config_check
from experiments import data as data_lib
from experiments import drivers
from experiments import train
from experiments.configs import benn_digits
from tests import _export_check

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# A run whose train_batch SIGKILLs the process at its N-th call.
_KILLER = """
import json, os, signal, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
from experiments import data as data_lib, drivers
import test_benn_run as t
n, calls, real = int(sys.argv[2]), [0], data_lib.train_batch
def batch(*a, **kw):
  calls[0] += 1
  if calls[0] == n:
    os.kill(os.getpid(), signal.SIGKILL)
  return real(*a, **kw)
data_lib.train_batch = batch
drivers.run(t.tiny(**json.loads(sys.argv[3])), sys.argv[1])
"""


def tiny(**overrides):
  config = benn_digits.get_config()
  config.model_kwargs.width = 1 / 16
  config.model_kwargs.dropout = 0.0   # fewer ops to compile
  config.num_steps = 20
  config.log_every = 10
  config.eval_every = 10
  config.checkpoint_every = 10
  config.keep_checkpoints = 5
  config.benn.members = 3
  for k, v in overrides.items():
    node = config
    *path, last = k.split(".")
    for p in path:
      if p not in node:  # pruning: a BENN config has no pruning section
        node[p] = {}
      node = node[p]
    node[last] = v
  return config


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("benn") / "stacked")
  return d, drivers.run(tiny(), d)


def _load(d, name="summary.json"):
  with open(os.path.join(d, name)) as f:
    return json.load(f)


def test_summary_follows_the_contract(stacked):
  d, s = stacked
  assert s == _load(d)
  assert set(s["single"]) == {"test_accuracy"}
  assert [e["size"] for e in s["ensemble"]] == [1, 2, 3]
  for e in s["ensemble"]:
    assert set(e) == {"size", "hard_vote_accuracy", "soft_vote_accuracy"}
    assert 0.0 <= e["hard_vote_accuracy"] <= 1.0
  assert s["ensemble"][0]["soft_vote_accuracy"] == \
      s["single"]["test_accuracy"] == s["members"][0]["test_accuracy"]
  assert s["benn"]["parallel"] == "vmap"
  scores = np.load(os.path.join(d, "stacked", "scores_test.npy"))
  assert scores.shape == (3, 360, 10)
  labels = np.asarray(train.build(tiny()).dataset.splits["test"]
                      .arrays["label"])
  assert s["ensemble"] == binary.ensemble_curve(scores, labels)
  for f in ("benn.md", "benn.png", "config.json"):
    assert os.path.getsize(os.path.join(d, f)) > 0
  # Members differ (own init, own bootstrap sample).
  assert not np.array_equal(scores[0], scores[1])


def test_export_of_a_member_and_of_the_ensemble(stacked, tmp_path):
  """launch.export --member=K (row K of the stacked state) and the whole
  ensemble (member files + vote weights), evaluated without JAX: member
  K's and the ensemble's (soft vote) reported test accuracies exactly."""
  d, s = stacked
  result, _ = _export_check.check(d, tmp_path, "m1.sbn", member=1)
  assert result["accuracy"] == s["members"][1]["test_accuracy"]
  assert result["meta"]["member"] == 1
  result, info = _export_check.check(d, tmp_path, "ensemble.json")
  assert result["accuracy"] == s["final"]["test_accuracy"]
  assert info["members"] == 3 and len(result["layers"]) % 3 == 0
  assert os.path.exists(tmp_path / "ensemble.member_02.sbn")
  with pytest.raises(ValueError, match="no member 3"):
    _export_check.export(d, tmp_path / "x.sbn", member=3)
  # The text report lists each member's layers; a missing member file is
  # one line and exit 2.
  code = _export_check.NO_JAX
  r = subprocess.run([sys.executable, "-c", code,
                      f"--model={tmp_path / 'ensemble.json'}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  assert f"accuracy {s['final']['test_accuracy']:.4f}" in r.stdout
  assert "member_02/" in r.stdout
  os.remove(tmp_path / "ensemble.member_02.sbn")
  r = subprocess.run([sys.executable, "-c", code,
                      f"--model={tmp_path / 'ensemble.json'}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 2
  assert "ensemble member ensemble.member_02.sbn does not exist" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1


def test_stacked_step_is_each_members_step(tmp_path):
  """vmap over the stacked state = each member alone: same init, same
  bootstrap batch, same loss. (Adam's first step is about lr * sign(g), so
  one-ulp differences of near-zero gradients make later params differ:
  members trained by vmap and by a loop are not bit-identical.)"""
  driver = benn_run.Driver(tiny(), str(tmp_path))
  jstep, init, keys, _, _, _ = driver.stacked_setup()
  stacked = init(keys)
  stacked_params = jax.device_get(stacked.params)  # the step donates
  batches = [data_lib.train_batch(driver.source(k), 0, batch_size=64,
                                  seed=benn_run.member_seed(0, k, 1))
             for k in range(3)]
  _, m = jstep(stacked, {key: np.stack([b[key] for b in batches])
                         for key in batches[0]})

  @jax.jit
  def loss_alone(state, batch):  # the train step's forward, no update
    rng = jax.random.fold_in(state.rng, state.step)
    losses, (logits, _) = train.loss_fn(
        driver.model, state.params, state.batch_stats, batch, True,
        driver.engine.loss, rng)
    return {"loss": losses.mean(),
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

  for k in range(3):
    alone = driver.start(k)
    # Same keys; the normal draw under vmap may differ by one ulp.
    assert all(np.allclose(a, b[k], rtol=0, atol=1e-7) for a, b in zip(
        jax.tree.leaves(alone.params), jax.tree.leaves(stacked_params)))
    mk = loss_alone(alone, batches[k])
    assert float(mk["loss"]) == pytest.approx(float(m["loss"][k]), rel=1e-5)
    assert float(mk["accuracy"]) == float(m["accuracy"][k])
  # Members see different bootstrap samples.
  assert not np.array_equal(batches[0]["label"], batches[1]["label"])


def test_boosting_sequential_members(tmp_path):
  d = str(tmp_path / "boost")
  config = tiny(**{"benn.ensemble": "boost_d", "benn.mode": "sequential",
                   "benn.members": 2})
  s = drivers.run(config, d)
  m0, m1 = s["members"]
  # Member 0 trains with uniform weights: eps is its training error.
  assert m0["eps"] == pytest.approx(m0["train_error"])
  assert m0["alpha"] == pytest.approx(binary.member_alpha(
      m0["eps"], "d", num_classes=10))
  w1 = np.load(os.path.join(d, "member_00", "weights_next.npy"))
  assert w1.shape == (1257,) and w1.sum() == pytest.approx(1.0)
  assert len(np.unique(np.round(w1, 12))) == 2  # up-weighted misses
  driver = benn_run.Driver(config, d)
  np.testing.assert_array_equal(
      driver.indices(1), binary.resample_indices(config.seed, 1, w1))
  # Sequential: member 1 starts from member 0's final weights.
  start = driver.start(1)
  _, (final0, _) = driver.engine.restore(os.path.join(d, "member_00"))
  assert all(np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(start.params), jax.tree.leaves(final0.params)))
  assert s["benn"]["parallel"] == "loop"
  assert [e["size"] for e in s["ensemble"]] == [1, 2]
  # The exported ensemble (member phases, boosting alphas) votes as the
  # run did.
  result, _ = _export_check.check(d, tmp_path, "boost.json")
  assert result["accuracy"] == s["final"]["test_accuracy"]


def test_kill_9_in_the_stacked_phase_resumes_bit_identically(stacked,
                                                             tmp_path):
  d, _ = stacked
  workdir = str(tmp_path / "killed")

  def run(n):
    return subprocess.run(
        [sys.executable, "-c", _KILLER.format(root=ROOT, here=HERE), workdir,
         str(n), "{}"], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))

  # 3 members -> 3 batch calls per step: call 45 is step 15 (after the
  # checkpoint of step 10).
  assert run(45).returncode == -9
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  proc = run(10**9)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Resuming" in proc.stdout or "steps 10..20" in proc.stdout
  np.testing.assert_array_equal(
      np.load(os.path.join(workdir, "stacked", "scores_test.npy")),
      np.load(os.path.join(d, "stacked", "scores_test.npy")))


def test_one_member_per_device_with_shard_map(tmp_path):
  workdir = str(tmp_path / "sharded")
  code = (f"import sys; sys.path[:0] = [{ROOT!r}, {HERE!r}]\n"
          "import jax, json, test_benn_run as t\n"
          "from experiments import drivers\n"
          "assert jax.device_count() == 4\n"
          "s = drivers.run(t.tiny(**{'benn.members': 4}), "
          f"{workdir!r})\n"
          "print('PARALLEL', s['benn']['parallel'])\n")
  proc = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True,
      timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=
                            "--xla_force_host_platform_device_count=4"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "PARALLEL shard_map" in proc.stdout
  assert "shard_map over 4 devices" in proc.stdout
  scores = np.load(os.path.join(workdir, "stacked", "scores_test.npy"))
  assert scores.shape == (4, 360, 10) and np.isfinite(scores).all()


@pytest.mark.parametrize("field,value", [
    ("benn.ensemble", "boost_e"), ("benn.mode", "parallel"),
    ("benn.members", 0), ("benn.soft_vote", "mean"), ("benn.shrinkage", 0.0),
    ("pruning.method", "magnitude")])
def test_bad_config_names_the_field(field, value, tmp_path):
  with pytest.raises(config_check.ConfigError, match=field.replace(".", r"\.")):
    drivers.run(tiny(**{field: value}), str(tmp_path / "w"))
  assert not os.path.exists(str(tmp_path / "w"))


def test_launch_exits_2_on_a_bad_benn_config(tmp_path):
  workdir = str(tmp_path / "w")
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       "--config=experiments/configs/benn_digits.py",
       "--config.benn.ensemble=boost_z", f"--workdir={workdir}"],
      capture_output=True, text=True, timeout=120, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr[-1000:]
  assert "benn.ensemble" in proc.stderr
  assert not os.path.exists(workdir)


@pytest.mark.parametrize("name,shape", [
    ("benn_digits", (8, 8, 1)), ("benn_cifar10_nin", (32, 32, 3)),
    ("benn_imagenet_resnet18", (224, 224, 3))])
def test_configs_validate_and_build(name, shape):
  import importlib  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  if "imagenet" in name:  # no imagenet2012 in the data registry yet
    benn_run.validate(config)
    config.dataset = "cifar10"
  config_check.validate(config, device_count=1)
  kwargs = config.model_kwargs.to_dict()
  model = models.get_model(config.model, 10 if "imagenet" not in name
                           else 1000, **kwargs)
  v = models.abstract_variables(model, shape)
  assert jax.tree.leaves(v["params"])
