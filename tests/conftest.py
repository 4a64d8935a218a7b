"""Suite-wide setup: one persistent JAX compilation cache per test run.

Most of a small CPU test's time is XLA compilation, and the suite compiles
the same programs many times over: each kill -9 / resume test runs the
same driver in two to four processes, a subprocess often repeats what an
in-process fixture compiled, and the two xdist workers build the same tiny
models. The first pytest process of a run (the xdist controller, or the
only process without -n) creates a fresh, empty cache directory and exports
it through the environment, so the xdist workers and every subprocess
they start (drivers, `_fault_runner.py`, `python -m launch...`, notebook
kernels) read and write the same cache; it is deleted when the run ends.

A cache hit loads the executable XLA compiled for the same program, device
assignment and flags: results are bit-identical to a fresh compile (the
kill/resume tests compare checkpoints bit for bit across processes that
load and processes that compile). Tracing is unaffected, so the tests that
count traces or `_cache_size()` see what they would without the cache.

Set JAX_COMPILATION_CACHE_DIR yourself to choose the directory (it is then
kept), or to an empty string to run without the cache.
"""
import os
import shutil
import sys
import tempfile

_DIR = "JAX_COMPILATION_CACHE_DIR"
_SETTINGS = {
    # Cache every executable, however quick to compile or small: the
    # tests' programs are small and compiled many times over.
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


def pytest_configure(config):
  # The slowest tests are listed at the end of every run (CI's log shows
  # where its 30-minute budget goes); `--durations=N` on the command line
  # still wins.
  if getattr(config.option, "durations", None) is None:
    config.option.durations = 25
  if _DIR not in os.environ and not hasattr(config, "workerinput"):
    os.environ[_DIR] = tempfile.mkdtemp(prefix="sbn-jax-cache-")
    config._sbn_jax_cache = os.environ[_DIR]  # pylint: disable=protected-access
  if not os.environ.get(_DIR):
    return
  for key, value in _SETTINGS.items():
    os.environ.setdefault(key, value)
  if "jax" in sys.modules:  # imported before this file: set it directly
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", os.environ[_DIR])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
  path = getattr(config, "_sbn_jax_cache", None)
  if path:
    shutil.rmtree(path, ignore_errors=True)


# Modules whose tests run longest (training runs in subprocesses, kill -9
# and resume, notebooks), longest first. They are moved to the front of
# the run, in this order, the rest keeping pytest's order: under
# `-n 2 --dist worksteal` the long tests start early, and the other worker
# takes the short ones (stealing from the back of the queue), instead of
# one long test finishing alone while the other worker idles. A module not
# listed here keeps its place; the list only orders, it selects nothing.
LONG_FIRST = (
    "test_sweep_slurm_cluster.py",
    "test_resume_drivers.py", "test_mainsub_run.py", "test_faults.py",
    "test_filterprune.py", "test_repr_run.py", "test_conformance.py",
    "test_lottery_run.py", "test_benn_run.py", "test_sweep.py",
    "test_sweep_submitit.py",
    "test_notebooks.py", "test_gradcount.py", "test_export.py",
    "test_launch.py", "test_results.py", "test_bench_accelerator.py",
    "test_tfds_files.py",
)


def pytest_collection_modifyitems(session, config, items):
  del session, config
  rank = {name: i for i, name in enumerate(LONG_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
