"""kill -9 mid-phase and re-run, for the drivers that claim resume: filter
pruning (FPGM, Network Slimming), FBS, the BENN member loop and BENN
boosting.

Each test runs the driver once uninterrupted (the reference), then in a
subprocess (`tests/_fault_runner.py`, fault `call`: SIGKILL at the N-th
batch request) that dies in the middle of a phase, between two
checkpoints, and re-runs it to the end. The summary must be identical and
so must every committed checkpoint of every phase (step, params, batch
stats, optimizer state, mask, rng), compared bit for bit.
"""
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import checkpointing
from helpers import apply_overrides

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "_fault_runner.py")


# ----------------------------------------------------------- the configs --
def fpgm_config(**overrides):
  """FPGM on a conv 4 - pool - conv 8 VGG, 30 steps; events at 0, 12, 24
  and 30, checkpoints every 10 steps (and at the events), Scratch-E/B on."""
  from experiments.configs import fpgm_digits  # pylint: disable=g-import-not-at-top
  config = fpgm_digits.get_config()
  config.model_kwargs = ml_collections.ConfigDict({"cfg": (4, "M", 8)})
  config.num_steps = 30
  config.batch_size = 32
  config.log_every = 10
  config.eval_every = 10
  config.checkpoint_every = 10
  config.keep_checkpoints = 20
  config.lr_decay_steps = (20,)
  config.filterprune.prune_every = 12
  config.filterprune.scratch_b_max_factor = 1.5
  apply_overrides(config, overrides)
  return config


def slimming_config(**overrides):
  """Network Slimming: 20 steps with L1, prune half, 20 fine-tuning steps,
  checkpoints every 10 steps; no scratch baselines (the FPGM test has
  them)."""
  from experiments.configs import slimming_digits  # pylint: disable=g-import-not-at-top
  config = slimming_digits.get_config()
  config.model_kwargs = ml_collections.ConfigDict({"cfg": (4, "M", 8)})
  config.num_steps = 20
  config.batch_size = 32
  config.log_every = 10
  config.eval_every = 10
  config.checkpoint_every = 10
  config.keep_checkpoints = 20
  config.lr_decay_steps = (15,)
  config.filterprune.l1 = 1e-3
  config.filterprune.finetune_steps = 20
  config.filterprune.scratch = False
  apply_overrides(config, overrides)
  return config


def fbs_config(**overrides):
  """FBS at d = 0.5 on a small FBS CNN, 20 steps, checkpoints every 5."""
  from experiments.configs import fbs_digits  # pylint: disable=g-import-not-at-top
  config = fbs_digits.get_config()
  config.model_kwargs.convs = (8, "M", 8)
  config.model_kwargs.density = 0.5
  config.num_steps = 20
  config.batch_size = 32
  config.eval_batch_size = 512
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 5
  config.keep_checkpoints = 20
  apply_overrides(config, overrides)
  return config


def benn_config(**overrides):
  """Two binary-NIN members of 20 steps each, checkpoints every 10 steps,
  one phase per member (`member_NN/`)."""
  from experiments.configs import benn_digits  # pylint: disable=g-import-not-at-top
  config = benn_digits.get_config()
  config.model_kwargs.width = 1 / 16
  config.model_kwargs.dropout = 0.0
  config.num_steps = 20
  config.log_every = 10
  config.eval_every = 10
  config.checkpoint_every = 10
  config.keep_checkpoints = 20
  config.benn.members = 2
  apply_overrides(config, overrides)
  return config


BENN_LOOP = {"benn.ensemble": "bagging", "benn.mode": "sequential",
             "benn.parallel": "loop"}
BENN_BOOST = {"benn.ensemble": "boost_d", "benn.mode": "independent"}


# ----------------------------------------------------------- machinery --
@pytest.fixture(scope="module", autouse=True)
def _compile_cache(tmp_path_factory):
  """A persistent compilation cache shared by this module's subprocesses:
  the reference run compiles, the killed and resumed runs load the same
  executables (about half of each run's time on CPU)."""
  global _CACHE_DIR  # pylint: disable=global-statement
  _CACHE_DIR = str(tmp_path_factory.mktemp("jax_cache"))
  yield


_CACHE_DIR = None


def _run(workdir, make, fault, n, overrides):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if _CACHE_DIR:
    env.update(JAX_COMPILATION_CACHE_DIR=_CACHE_DIR,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  proc = subprocess.run(
      [sys.executable, RUNNER, workdir, fault, str(n),
       json.dumps({"_make": f"test_resume_drivers:{make}", **overrides})],
      capture_output=True, text=True, timeout=300, env=env)
  return proc


def _checkpoints(workdir) -> dict:
  """{phase dir (relative): {step: {leaf path: array}}} of every committed
  checkpoint under `workdir`, restored as saved (no target)."""
  out = {}
  for root, dirs, _ in os.walk(workdir):
    if "checkpoints" not in dirs:
      continue
    mngr = checkpointing.manager(root, keep=1000)
    steps = {}
    for step in mngr.all_steps():
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))
      flat = jax.tree_util.tree_flatten_with_path(restored.state)[0]
      steps[step] = {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}
    mngr.close()
    out[os.path.relpath(root, workdir)] = steps
  return out


def _assert_same_checkpoints(got_dir, ref_dir, masks=False):
  got, ref = _checkpoints(got_dir), _checkpoints(ref_dir)
  assert sorted(got) == sorted(ref)
  for phase in ref:
    assert sorted(got[phase]) == sorted(ref[phase]), phase
    for step, leaves in ref[phase].items():
      assert sorted(got[phase][step]) == sorted(leaves), (phase, step)
      for path, want in leaves.items():
        have = got[phase][step][path]
        assert have.dtype == want.dtype and have.shape == want.shape, (
            phase, step, path)
        assert np.array_equal(have, want), (phase, step, path)
  # The comparison covers the whole TrainState of every phase.
  for phase in ref:
    last = ref[phase][max(ref[phase])]
    for part in ("params", "batch_stats", "opt_state", "rng", "step") + (
        ("mask",) if masks else ()):
      assert any(part in p for p in last), (phase, part)
  return ref


def _load(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def _kill_and_resume(tmp_path, make, kill_at, overrides=None,
                     more_kills=()):
  """The reference run, then the killed run (SIGKILL at batch request
  `kill_at`, then at each of `more_kills` counted from that process's
  start) and its re-run; returns (reference dir, killed dir, the stdout
  of the processes after the first, each of which resumed)."""
  overrides = dict(overrides or {})
  ref_dir = str(tmp_path / "ref")
  proc = _run(ref_dir, make, "none", 0, overrides)
  assert proc.returncode == 0, proc.stderr[-3000:]
  workdir = str(tmp_path / "killed")
  out = []
  for i, n in enumerate((kill_at, *more_kills)):
    proc = _run(workdir, make, "call", n, overrides)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(workdir, "summary.json"))
    if i:
      out.append(proc.stdout)
  proc = _run(workdir, make, "none", 0, overrides)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out.append(proc.stdout)
  assert all("Resuming" in o for o in out), out
  assert _load(workdir, "summary.json") == _load(ref_dir, "summary.json")
  return ref_dir, workdir, "\n".join(out)


# ---------------------------------------------------------------- tests --
def test_fpgm_kill_mid_train_and_mid_scratch(tmp_path):
  # Batch request 17 = train step 16: after the event and checkpoint of
  # step 12 (the mask was recomputed there), before the checkpoint of step
  # 20 and the event of step 24. The second process resumes at 12, then is
  # killed at its request 30 - 12 + 16: scratch_e step 15 (resume at
  # 10).
  ref_dir, workdir, out = _kill_and_resume(
      tmp_path, "fpgm_config", 17, more_kills=(30 - 12 + 16,))
  assert "train from step 12" in out and "scratch_e from step 10" in out
  ckpts = _assert_same_checkpoints(workdir, ref_dir, masks=True)
  assert {"train", "scratch_e", "scratch_b"} <= set(ckpts)
  assert sorted(ckpts["train"]) == [0, 10, 12, 20, 24, 30]


def test_slimming_kill_mid_train_and_mid_finetune(tmp_path):
  # Request 15 = train step 14 (resume at 10); then the second process
  # asks for train steps 10..19 and is killed at its request 10 + 16 =
  # fine-tuning step 35 (resume at 30).
  ref_dir, workdir, out = _kill_and_resume(
      tmp_path, "slimming_config", 15, more_kills=(10 + 16,))
  assert "train from step 10" in out and "finetune from step 30" in out
  ckpts = _assert_same_checkpoints(workdir, ref_dir, masks=True)
  assert sorted(ckpts) == ["finetune", "train"]
  assert sorted(ckpts["finetune"]) == [20, 30, 40]


def test_fbs_kill_mid_run(tmp_path):
  # Request 13 = step 12: resume at the checkpoint of step 10.
  ref_dir, workdir, out = _kill_and_resume(tmp_path, "fbs_config", 13)
  assert "from step 10" in out
  ckpts = _assert_same_checkpoints(workdir, ref_dir)
  assert sorted(ckpts["."]) == [5, 10, 15, 20]


def test_benn_member_loop_kill_mid_member(tmp_path):
  # Sequential bagging, one phase per member. Request 14 = member 0 step
  # 13 (resume at 10); then the second process is killed at its request
  # 10 + 16 = member 1 step 15 (member 1 started from member 0's final
  # weights; resume at 10).
  ref_dir, workdir, out = _kill_and_resume(
      tmp_path, "benn_config", 14, BENN_LOOP, more_kills=(10 + 16,))
  assert "member_00 from step 10" in out and "member_01 from step 10" in out
  ckpts = _assert_same_checkpoints(workdir, ref_dir)
  assert sorted(ckpts) == ["member_00", "member_01"]
  for k in range(2):
    d = f"member_{k:02d}"
    np.testing.assert_array_equal(
        np.load(os.path.join(workdir, d, "scores_test.npy")),
        np.load(os.path.join(ref_dir, d, "scores_test.npy")))
    assert _load(workdir, d, "result.json") == _load(ref_dir, d,
                                                     "result.json")


def test_benn_boosting_kill_mid_member(tmp_path):
  # Boosting (SAMME): member 1 trains on a sample drawn with member 0's
  # boosting weights. Killed at request 20 + 16 = member 1 step 15.
  ref_dir, workdir, out = _kill_and_resume(tmp_path, "benn_config", 20 + 16,
                                           BENN_BOOST)
  assert "member_01 from step 10" in out
  ckpts = _assert_same_checkpoints(workdir, ref_dir)
  assert sorted(ckpts) == ["member_00", "member_01"]
  for k in range(2):
    d = f"member_{k:02d}"
    for name in ("scores_test.npy", "weights_next.npy"):
      np.testing.assert_array_equal(np.load(os.path.join(workdir, d, name)),
                                    np.load(os.path.join(ref_dir, d, name)))
    assert _load(workdir, d, "result.json") == _load(ref_dir, d,
                                                     "result.json")
