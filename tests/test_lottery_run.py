"""The lottery driver end to end on digits: levels, resets, controls,
instability, reports, resume, bad input."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import orbax.checkpoint as ocp

from experiments import checkpointing
from experiments import config_check
from experiments import data as data_lib
from experiments import lottery_run
from experiments import optimizers
from experiments import drivers
from experiments import train
import lottery
import sparsity
import _export_check
from helpers import leaves_equal
from helpers import small_lottery_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _load(workdir, *parts):
  with open(os.path.join(workdir, *parts)) as f:
    return json.load(f)


def _np(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("lottery"))
  config = small_lottery_config(**{"lottery.instability_levels": (1,),
                                   "lottery.instability_points": 5})
  summary = drivers.run(config, workdir)
  return config, workdir, summary


def test_summary_follows_the_contract(finished):
  config, workdir, summary = finished
  assert _load(workdir, "summary.json") == json.loads(json.dumps(summary))
  levels = summary["levels"]
  assert [r["level"] for r in levels] == [0, 1, 2]
  for r in levels:
    for key, typ in [("remaining_fraction", float), ("test_accuracy", float),
                     ("early_stop_step", int),
                     ("early_stop_test_accuracy", float),
                     ("train_accuracy", float)]:
      assert isinstance(r[key], typ), key
    assert 0 < r["early_stop_step"] <= config.num_steps
    assert r["early_stop_step"] % config.eval_every == 0
  # 64*16 weights at 20% per level, 16*10 at 10% (exact counts per layer)
  want = [(64 * 16, 16 * 10)]
  for _ in range(2):
    a, b = want[-1]
    want.append((a - round(0.2 * a), b - round(0.1 * b)))
  for r, (a, b) in zip(levels, want):
    got = {row["name"]: row["remaining"] for row in r["layers"]}
    assert got == {"Dense_0/kernel": a, "Dense_1/kernel": b}
    assert r["remaining_fraction"] == pytest.approx((a + b) / (64 * 16 + 160))
  for name in ("random_reinit", "random_prune"):
    rows = summary["controls"][name]
    assert [r["level"] for r in rows] == [1, 2]
    for r, ticket in zip(rows, levels[1:]):
      assert r["seeds"] == [0] and r["test_accuracy_std"] == 0.0
      assert r["remaining_fraction"] == pytest.approx(
          ticket["remaining_fraction"])
  inst = _load(workdir, "level_01", "instability", "result.json")
  assert len(inst["errors"]) == 5 and inst["alphas"][0] == 0.0
  assert levels[1]["instability"] == inst["instability"]
  assert "instability" not in levels[0] and "instability" not in levels[2]
  assert summary["final"]["test_accuracy"] == levels[-1]["test_accuracy"]
  md = open(os.path.join(workdir, "lottery.md")).read()
  assert md.count("\n| ") == 1 + 3  # header + one row per level
  with open(os.path.join(workdir, "lottery.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_instability_recomputed_from_the_two_copies(finished):
  """The summary's instability is the error barrier between the two stored
  copies: recomputed from their final checkpoints with
  `lottery.instability`, and by hand (max over the path minus the mean of
  the endpoints, the endpoints being each copy's own test error)."""
  config, workdir, summary = finished
  d = os.path.join(workdir, "level_01", "instability")
  inst = _load(d, "result.json")
  engine = train.Engine(config)

  def phase(c):
    mngr, restored = engine.restore(os.path.join(d, f"copy_{c}"))
    first = mngr.restore(mngr.all_steps()[0], args=ocp.args.Composite(
        state=ocp.args.StandardRestore(checkpointing.abstract_like(
            engine.abstract, engine.shardings))))
    return first.state, restored[0]

  (start_a, a), (start_b, b) = phase(0), phase(1)
  # Same start (the level-1 ticket at its reset), same mask, different data
  # orders, hence different weights at the end.
  assert int(start_a.step) == int(start_b.step) < config.num_steps
  assert leaves_equal(start_a.params, start_b.params)
  assert leaves_equal(a.mask, b.mask) and leaves_equal(a.mask, start_a.mask)
  assert int(a.step) == int(b.step) == config.num_steps
  assert len(set(inst["data_seeds"])) == 2
  assert not leaves_equal(a.params, b.params)

  def error(point):
    params, stats = point
    with jax.set_mesh(engine.mesh):
      return 1.0 - engine.evaluate(params, stats, "test")["accuracy"]

  again = lottery.instability((a.params, a.batch_stats),
                              (b.params, b.batch_stats), error,
                              num_points=config.lottery.instability_points)
  assert again["alphas"] == inst["alphas"]
  assert again["errors"] == inst["errors"]
  assert again["instability"] == inst["instability"] == (
      summary["levels"][1]["instability"])
  # By hand: the endpoints are the copies themselves, and the barrier is
  # max over the path minus the mean of the endpoints.
  assert inst["errors"][0] == error((a.params, a.batch_stats))
  assert inst["errors"][-1] == error((b.params, b.batch_stats))
  mid = lottery.interpolate(a.params, b.params, inst["alphas"][2])
  assert inst["errors"][2] == error((mid, lottery.interpolate(
      a.batch_stats, b.batch_stats, inst["alphas"][2])))
  assert summary["levels"][1]["instability"] == pytest.approx(
      max(inst["errors"]) - (inst["errors"][0] + inst["errors"][-1]) / 2,
      abs=1e-12)


def test_early_stop_is_the_min_validation_loss(finished):
  _, workdir, summary = finished
  with open(os.path.join(workdir, "level_01", "metrics.jsonl")) as f:
    evals = [r for r in map(json.loads, f) if "val_loss" in r]
  best = min(evals, key=lambda r: (r["val_loss"], r["step"]))
  assert summary["levels"][1]["early_stop_step"] == best["step"]
  assert summary["levels"][1]["early_stop_test_accuracy"] == best[
      "test_accuracy"]


def test_export_of_a_level_evaluates_to_its_accuracy(finished, tmp_path):
  """launch.export --level=N of the finished run, evaluated without JAX:
  the level's reported test accuracy (the last level's is the summary's)."""
  _, workdir, summary = finished
  last = len(summary["levels"]) - 1
  result, _ = _export_check.check(workdir, tmp_path, level=last)
  assert result["accuracy"] == summary["levels"][last]["test_accuracy"]
  assert result["accuracy"] == summary["final"]["test_accuracy"]
  assert result["meta"]["level"] == last
  with pytest.raises(ValueError, match="--member is not an option of "
                     "lottery runs"):
    _export_check.export(workdir, tmp_path / "x.sbn", member=0)


def test_ticket_and_controls_have_the_right_masks(finished):
  config, workdir, _ = finished
  level0 = train.load_state(config, os.path.join(workdir, "level_00"))
  level1 = train.load_state(config, os.path.join(workdir, "level_01"))
  want = sparsity.prune_layerwise(_np(level0.params), _np(level0.mask),
                                  {"default": 0.2, "Dense_1": 0.1})
  assert leaves_equal(level1.mask, want)
  # random prune: same per-layer counts, other positions
  rp = train.load_state(config, os.path.join(
      workdir, "level_01", "controls", "random_prune_0"))
  assert sparsity.summarize(rp.mask) == sparsity.summarize(level1.mask)
  assert not leaves_equal(rp.mask, level1.mask)
  # random reinit: the ticket's mask
  rr = train.load_state(config, os.path.join(
      workdir, "level_01", "controls", "random_reinit_0"))
  assert leaves_equal(rr.mask, level1.mask)


def _start(config, workdir, level=1):
  driver = lottery_run.build_driver(config, workdir)
  return driver, _np(driver.start_state(level))


@pytest.mark.parametrize("mode", ["init", "rewind", "lr_rewind", "finetune"])
def test_reset_modes(tmp_path, mode):
  """Level 1 starts from m * theta_0 / theta_k / theta_T at step 0 / k."""
  k = 10
  config = small_lottery_config(**{
      "lottery.levels": 1, "lottery.controls": (), "lottery.reset": mode,
      "lottery.rewind_step": 0 if mode == "init" else k,
      "lr_schedule": "step", "lr_decay_steps": (5, 15),
      "lr_decay_factor": 0.5, "optimizer": "momentum",
      "learning_rate": 0.1})
  workdir = str(tmp_path / mode)
  drivers.run(config, workdir)
  driver, start = _start(config, workdir)
  init = _np(driver.init_state())
  final0 = train.load_state(config, os.path.join(workdir, "level_00"))
  mask = _np(train.load_state(config, os.path.join(workdir,
                                                   "level_01")).mask)
  assert leaves_equal(start.mask, mask)
  if mode == "init":
    source, t0 = init.params, 0
  elif mode == "rewind":
    rewind = _np(driver.rewind_state())
    assert int(rewind.step) == k
    source, t0 = rewind.params, k
  else:
    source, t0 = _np(final0.params), k
  assert int(start.step) == t0
  assert leaves_equal(start.params, sparsity.apply_mask(source, mask))
  kernel = start.params["Dense_0"]["kernel"]
  assert np.all(kernel[~mask["Dense_0"]["kernel"]] == 0)
  # the learning rate of the first update: schedule(t0) (lr_rewind replays
  # from k with a fresh optimizer), a constant 1e-3 (finetune)
  tx = driver.tx(mode)
  g = jax.tree.map(np.ones_like, start.params)
  opt = tx.init(start.params) if mode != "rewind" else start.opt_state
  upd, _ = tx.update(g, opt, start.params, mask=start.mask)
  lr = {"init": 0.1, "rewind": 0.05, "lr_rewind": 0.05, "finetune": 1e-3}
  bias_u = np.asarray(upd["Dense_0"]["bias"])
  if mode != "rewind":  # (rewind: momentum carried over from step k)
    np.testing.assert_allclose(bias_u, -lr[mode], rtol=1e-6)
  # the optimizer state: rewind restores step k's, others start fresh
  if mode == "rewind":
    saved = sparsity.mask_opt_state(_np(rewind.opt_state), mask)
    assert leaves_equal(start.opt_state, saved)
  else:
    assert leaves_equal(start.opt_state, tx.init(start.params))


def test_lr_rewind_schedule_offset():
  config = small_lottery_config(**{"lr_schedule": "step",
                                   "lr_decay_steps": (5, 15),
                                   "lr_decay_factor": 0.5})
  sched = optimizers.make_schedule(config, step_offset=10)
  assert [float(sched(t)) for t in (0, 4, 5)] == pytest.approx(
      [config.learning_rate * 0.5] * 2 + [config.learning_rate * 0.25])


def test_oneshot_prunes_level0_weights_straight(tmp_path):
  config = small_lottery_config(**{"lottery.oneshot": True,
                                   "lottery.controls": ()})
  workdir = str(tmp_path / "oneshot")
  drivers.run(config, workdir)
  level0 = train.load_state(config, os.path.join(workdir, "level_00"))
  level2 = train.load_state(config, os.path.join(workdir, "level_02"))
  rates = {"default": lottery.oneshot_rate(2, 0.2),
           "Dense_1": lottery.oneshot_rate(2, 0.1)}
  want = sparsity.prune_layerwise(_np(level0.params), _np(level0.mask),
                                  rates)
  assert leaves_equal(level2.mask, want)


def test_data_order_per_level_is_seeded_and_recorded(tmp_path):
  config = small_lottery_config(**{"lottery.data_order": "per_level",
                                   "lottery.levels": 1,
                                   "lottery.controls": ()})
  workdir = str(tmp_path / "order")
  summary = drivers.run(config, workdir)
  seeds = [r["data_seed"] for r in summary["levels"]]
  assert seeds == [lottery.derive_seed(config.seed, 1, lv) for lv in (0, 1)]
  assert seeds[0] != seeds[1]


@pytest.mark.parametrize("n,where", [
    (40 + 25, "level_01"),                              # mid-level 1
    (40 * 2 + 25, "level_01/controls/random_reinit_0"),  # mid-control
])
def test_interrupted_level_resumes_bit_identically(finished, tmp_path,
                                                   monkeypatch, n, where):
  config, ref_dir, ref_summary = finished
  workdir = str(tmp_path / "run")
  real_batch = data_lib.train_batch
  calls = {"n": 0}

  def interrupt(source, step, **kw):
    calls["n"] += 1
    if calls["n"] == n:  # between the checkpoints at steps 20 and 40
      raise KeyboardInterrupt
    return real_batch(source, step, **kw)

  monkeypatch.setattr(data_lib, "train_batch", interrupt)
  with pytest.raises(KeyboardInterrupt):
    drivers.run(config, workdir)
  assert os.path.exists(os.path.join(workdir, "level_00", "result.json"))
  assert not os.path.exists(os.path.join(workdir, where, "result.json"))
  assert sorted(os.listdir(os.path.join(workdir, where, "checkpoints"))) == [
      "0", "20"]
  monkeypatch.setattr(data_lib, "train_batch", real_batch)
  summary = drivers.run(config, workdir)
  assert summary == json.loads(json.dumps(ref_summary))
  for sub in ("level_01", "level_02", "level_02/controls/random_prune_0"):
    assert leaves_equal(train.load_state(config, os.path.join(workdir, sub)),
                        train.load_state(config, os.path.join(ref_dir, sub)))


def test_controls_later_on_a_finished_trunk(tmp_path):
  config = small_lottery_config(**{"lottery.controls": (),
                                   "lottery.levels": 1})
  workdir = str(tmp_path / "trunk")
  drivers.run(config, workdir)
  level_files = {p: os.path.getmtime(os.path.join(workdir, "level_01", p))
                 for p in ("result.json", "metrics.jsonl")}
  later = small_lottery_config(**{
      "lottery.controls": ("random_reinit",), "lottery.levels": 1,
      "lottery.trunk": "existing", "lottery.control_seeds": 2})
  summary = drivers.run(later, workdir)
  assert summary["controls"]["random_reinit"][0]["seeds"] == [0, 1]
  assert "random_prune" not in summary["controls"]
  for p, t in level_files.items():
    assert os.path.getmtime(os.path.join(workdir, "level_01", p)) == t


@pytest.mark.parametrize("field,value,words", [
    ("lottery.levels", 0, "lottery.levels"),
    ("lottery.rewind_step", 40, "lottery.rewind_step"),
    ("lottery.reset", "reinit", "lottery.reset"),
    ("lottery.rates", {"default": 0.2, "Dense_9": 0.1},
     "lottery.rates.Dense_9"),
    ("lottery.controls", ("random_pruning",), "lottery.controls"),
    ("lottery.trunk", "existing", "lottery.trunk"),
])
def test_bad_lottery_config_names_the_field(tmp_path, field, value, words):
  config = small_lottery_config(**{field: value})
  with pytest.raises(config_check.ConfigError, match=words.replace(".", r"\.")):
    drivers.run(config, str(tmp_path / "bad"))
  assert not os.path.exists(tmp_path / "bad")


def test_launch_refuses_bad_level_count_and_keeps_workdir(finished):
  _, workdir, _ = finished
  listing = sorted(os.listdir(workdir))
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       "--config=experiments/configs/lottery_digits.py",
       f"--workdir={workdir}", "--config.lottery.levels=0"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "lottery.levels" in lines[0]
  assert sorted(os.listdir(workdir)) == listing


def test_trunk_of_another_config_is_refused(finished):
  config, workdir, _ = finished
  other = small_lottery_config(**{"lottery.reset": "lr_rewind",
                                  "lottery.rewind_step": 5})
  with pytest.raises(config_check.ConfigError, match="lottery.re"):
    drivers.run(other, workdir)


def test_kill_9_mid_level_resumes_bit_identically(finished, tmp_path):
  _, _, ref = finished
  runner = os.path.join(HERE, "_fault_runner.py")
  workdir = str(tmp_path / "killed")

  def run(fault, n):
    return subprocess.run(
        [sys.executable, runner, workdir, fault, str(n),
         json.dumps({"_lottery": True})], capture_output=True, text=True,
        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))

  assert run("call", 65).returncode == -9  # mid-level 1
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  proc = run("none", 0)
  assert proc.returncode == 0, proc.stderr[-2000:]
  got = _load(workdir, "summary.json")
  strip = lambda rows: [{k: v for k, v in r.items() if k != "instability"}
                        for r in rows]
  assert strip(got["levels"]) == strip(ref["levels"])
  assert got["controls"] == json.loads(json.dumps(ref["controls"]))


@pytest.mark.parametrize("name,shape", [
    ("lottery_digits", (8, 8, 1)), ("lottery_lenet_mnist", (28, 28, 1)),
    ("lottery_conv2_cifar10", (32, 32, 3)),
    ("lottery_conv4_cifar10", (32, 32, 3)),
    ("lottery_conv6_cifar10", (32, 32, 3)),
    ("lottery_resnet20_rewind", (32, 32, 3)),
    ("lottery_resnet20_lr_rewind", (32, 32, 3)),
    ("lottery_vgg19_cifar10", (32, 32, 3)),
])
def test_paper_configs_are_valid(name, shape):
  import importlib  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  config_check.validate(config)
  model = models.get_model(config.model, 10, **config.model_kwargs.to_dict())
  params = models.abstract_variables(model, shape)["params"]
  mask = sparsity.create_mask(params)
  lottery_run.validate_layers(config, mask)
  if config.lottery.scope == "global":  # output layer unpruned
    names = [n for n, *_ in sparsity.masked_leaves(mask)]
    included = [n for n in names if any(config_check.layer_matches(p, n)
                                        for p in config.lottery.global_include)]
    assert included and all("Conv" in n for n in included)
    assert any("Dense" in n for n in set(names) - set(included))


def test_report_combines_runs(finished, tmp_path):
  _, workdir, _ = finished
  out = tmp_path / "seeds.png"
  cmd = [sys.executable, "-m", "launch.lottery_report",
         f"--workdir={workdir}", f"--workdir={workdir}", f"--out={out}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert out.read_bytes()[:4] == b"\x89PNG"
  assert (tmp_path / "seeds.md").read_text().count("## ") == 2
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
  assert again.returncode == 2 and "--overwrite" in again.stderr
  missing = subprocess.run(cmd[:3] + [f"--workdir={tmp_path}",
                                      f"--out={tmp_path / 'x.png'}"],
                           cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
  assert missing.returncode == 2 and "summary.json" in missing.stderr
