"""The README's result tables are the results files' tables, and the command
that writes them (`python -m launch.results`) works end to end.

* Every `<!-- results/NAME.md -->` block of README.md equals the table of
  `results/NAME.md`, and every `results/*.md` has such a block (cheap: file
  reads only).
* `launch.results --table=tiny_test` (a test-only table: one seed of a
  20-step, 1-level lottery run on digits, into tmp dirs) writes the .md
  (title, table, seeds, commands, machine) and .csv, rewrites a README
  block, and a second invocation skips the finished run.
* An unknown table is one line naming it and the known tables, exit 2.
"""
import csv
import dataclasses
import glob
import json
import os
import subprocess
import sys

import pytest

from experiments import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "launch.results", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)


# ----------------------------------------------------- README == files --
def test_readme_tables_equal_their_results_files():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    blocks = results.readme_blocks(f.read())
  assert blocks, "README.md has no <!-- results/NAME.md --> block"
  for name, block in blocks.items():
    path = os.path.join(ROOT, "results", f"{name}.md")
    assert os.path.exists(path), f"README block of {name}: no {path}"
    assert name in results.TABLES, f"{name}: not a registered table"
    with open(path, encoding="utf-8") as f:
      table = results.table_of(f.read())
    assert table, f"{path} holds no table"
    assert block == table, (
        f"README block of results/{name}.md differs from the file's table; "
        f"run python -m launch.results --table={name} --update_readme")
  files = {os.path.basename(p)[:-3]
           for p in glob.glob(os.path.join(ROOT, "results", "*.md"))}
  assert files <= set(blocks), (
      f"results files with no README block: {sorted(files - set(blocks))}")


def test_results_files_name_their_machine():
  for path in glob.glob(os.path.join(ROOT, "results", "*.md")):
    with open(path, encoding="utf-8") as f:
      text = f.read()
    assert "## Machine" in text and " cores, " in text and "jaxlib " in text, (
        path)
    assert "python -m launch.results --table=" in text, path
    assert os.path.exists(path[:-3] + ".csv"), path


# ------------------------------------------------------------ helpers --
def test_table_of_and_update_readme(tmp_path):
  md = "# T\n\ntext\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nmore\n| x |\n"
  assert results.table_of(md) == "| a | b |\n|---|---|\n| 1 | 2 |\n"
  readme = tmp_path / "README.md"
  readme.write_text("intro\n<!-- results/t.md -->\n| old |\n"
                    "<!-- end results/t.md -->\noutro\n")
  assert results.update_readme("t", "| new |\n", str(readme))
  assert readme.read_text() == ("intro\n<!-- results/t.md -->\n| new |\n"
                                "<!-- end results/t.md -->\noutro\n")
  assert results.readme_blocks(readme.read_text()) == {"t": "| new |\n"}
  assert not results.update_readme("other", "| x |\n", str(readme))


def test_choose_seeds():
  t = results.get("lottery_mnist5k")
  assert results.choose_seeds(t, None) == [0, 1, 2, 3, 4]
  assert results.choose_seeds(t, 3) == [0, 1, 2]
  assert results.choose_seeds(t, 7) == [0, 1, 2, 3, 4, 5, 6]
  with pytest.raises(results.ResultsError, match="--seeds"):
    results.choose_seeds(t, 0)


def test_machine_record():
  m = results.machine()
  assert m["cores"] >= 1 and m["cpu"]
  assert set(m["versions"]) == {"jax", "jaxlib", "flax", "optax"}
  assert "jax " in results.format_machine(m)


# -------------------------------------------------------- end to end --
def assert_one_line_error(proc, *words):
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  for w in words:
    assert w in lines[0], lines[0]


def test_unknown_table_is_one_line():
  proc = launch("--table=no_such_table")
  assert_one_line_error(proc, "no_such_table", "main_job", "lottery_mnist5k")
  proc = launch("--list")
  assert proc.returncode == 0 and "main_job" in proc.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """The tiny table run once: (runs dir, out dir, README, 1st and 2nd
  invocation)."""
  base = tmp_path_factory.mktemp("results")
  runs, out = str(base / "runs"), str(base / "out")
  readme = base / "README.md"
  readme.write_text("# x\n\n<!-- results/tiny_test.md -->\n| stale |\n"
                    "<!-- end results/tiny_test.md -->\n")
  args = ("--table=tiny_test", f"--runs_dir={runs}", f"--out_dir={out}",
          "--update_readme", f"--readme={readme}")
  first = launch(*args)
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  with open(os.path.join(out, "tiny_test.md"), encoding="utf-8") as f:
    md_first = f.read()
  second = launch(*args)
  assert second.returncode == 0, second.stderr[-3000:]
  return runs, out, readme, first, second, md_first


def test_command_writes_the_table_files(tiny):
  runs, out, readme, first, _, _ = tiny
  assert "[1/1] tiny_test seed 0: running python -m launch.train" in (
      first.stdout)
  with open(os.path.join(out, "tiny_test.md"), encoding="utf-8") as f:
    md = f.read()
  assert md.startswith("# A tiny lottery run (tests only)\n")
  table = results.table_of(md)
  lines = table.splitlines()
  assert lines[0].startswith("| level | remaining % | ticket | random re-init")
  assert [l.split(" | ")[0] for l in lines[2:]] == ["| 0", "| 1"]
  assert "indistinguishable at n=1" in lines[3]
  assert "Seeds: 0 (1)." in md
  assert "python -m launch.results --table=tiny_test" in md
  assert (f"python -m launch.train --config=experiments/configs/"
          f"lottery_digits.py --workdir={runs}/seed_0/runs/") in md
  assert "--config.num_steps=20" in md and "--config.seed=0" in md
  m = results.machine()
  machine_line = next(l for l in md.splitlines() if l.startswith("- seeds 0"))
  assert m["cpu"] in machine_line and f"{m['cores']} cores" in machine_line
  for pkg in ("jax", "jaxlib", "flax", "optax"):
    assert f"{pkg} {m['versions'][pkg]}" in machine_line
  assert "last run finished 20" in machine_line
  assert "Wall time of the runs:" in md
  assert "vary slightly between processors" in md
  with open(os.path.join(out, "tiny_test.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["level"] for r in rows] == ["0", "1"]
  assert rows[1]["ticket_n"] == "1" and float(rows[1]["ticket_mean"]) > 0
  assert rows[1]["verdict"] == "indistinguishable at n=1"
  assert results.readme_blocks(readme.read_text()) == {"tiny_test": table}


def test_second_invocation_skips_finished_runs(tiny):
  runs, out, _, _, second, md_first = tiny
  assert "[1/1] tiny_test seed 0: finished earlier" in second.stdout
  assert "running" not in second.stdout
  tries = [json.loads(l) for l in open(
      os.path.join(runs, "seed_0", "attempts.jsonl"))]
  assert len(tries) == 1
  with open(os.path.join(out, "tiny_test.md"), encoding="utf-8") as f:
    assert f.read() == md_first


def test_several_seeds_are_summarized_and_paired(tiny):
  runs = tiny[0]
  run, = results.finished_runs(results.get("tiny_test"), [0], runs)
  twin = results.Run(1, run.workdir, run.summary)
  built = results.lottery_table([run, twin])
  assert len(built.rows) == 2
  level1 = dict(zip(built.csv_header, built.csv_rows[1]))
  assert level1["ticket_n"] == 2 and level1["ticket_std"] == 0.0
  assert level1["diff_n"] == 2 and level1["random_reinit_n"] == 2
  assert "over 2 seeds (0, 1)" in built.notes


def test_plain_and_flags_tables():
  def run(seed, arm, acc, overrides=()):
    summary = {"model": "mlp", "final": {"test_accuracy": acc,
                                         "remaining_fraction": 0.2}}
    return results.Run(seed, "", summary, arm, 10.0 + seed, overrides)
  runs = [run(0, "a", 0.90, (("pruning.method", "none"),)),
          run(1, "a", 0.92, (("pruning.method", "none"),)),
          run(0, "b", 0.95), run(1, "b", 0.95)]
  plain = results.plain_table(runs)
  assert [r[0] for r in plain.rows] == ["a", "b"]
  assert plain.rows[0][1].startswith("0.9100 ± 0.0141 [")
  assert plain.rows[0][2:] == ["20.0%", "10 s"]
  flags = results.flags_table(runs)
  assert flags.rows[0][:2] == ["a", "`--config.pruning.method=none`"]
  assert flags.rows[1][:2] == ["b", ""]
  assert "over the seeds" in flags.notes


# --------------------------------------------------------- sweep tables --
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
  """The tiny sweep table run twice: (runs dir, out dir, 1st, 2nd)."""
  base = tmp_path_factory.mktemp("sweep_results")
  runs, out = str(base / "runs"), str(base / "out")
  args = ("--table=tiny_sweep_test", f"--runs_dir={runs}", f"--out_dir={out}")
  first = launch(*args)
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  second = launch(*args)
  assert second.returncode == 0, second.stderr[-3000:]
  return runs, out, first, second


def test_sweep_table_runs_its_sweep_once(tiny_sweep):
  runs, out, first, second = tiny_sweep
  assert "tiny_sweep_test: 2 runs, 2 to run: python -m launch.sweep " in (
      first.stdout)
  assert "2 runs, 0 to run" in second.stdout
  with open(os.path.join(out, "tiny_sweep_test.md"), encoding="utf-8") as f:
    md = f.read()
  lines = results.table_of(md).splitlines()
  assert lines[0] == "| run | extra flags | test accuracy |"
  assert [l.split(" | ")[:2] for l in lines[2:]] == [
      ["| learning_rate=0.001", "`--config.learning_rate=0.001`"],
      ["| learning_rate=0.003", "`--config.learning_rate=0.003`"]]
  assert (f"    python -m launch.sweep --config=tests/_tiny_sweep.py "
          f"--workdir={runs} --parallel=1") in md
  assert next(l for l in md.splitlines() if l.startswith("- seeds 0: "))
  with open(os.path.join(runs, results.MACHINES)) as f:
    assert set(json.load(f)) == {"learning_rate=0.001,seed=0",
                                 "learning_rate=0.003,seed=0"}
  with open(os.path.join(out, "tiny_sweep_test.csv")) as f:
    assert [r["run"] for r in csv.DictReader(f)] == [
        "learning_rate=0.001", "learning_rate=0.003"]


def test_sweep_table_seeds_are_the_sweep_files():
  proc = launch("--table=tiny_sweep_test", "--seeds=2")
  assert_one_line_error(proc, "tiny_sweep_test", "get_sweep()")


def _fake_runs(table, final):
  """One Run per point of `table`'s sweep, its summary's "final" from
  `final(values, seed)`."""
  return [results.Run(p.seed, "", {"final": final(p.values, p.seed)},
                      results.point_label(p), 1.0, tuple(p.overrides),
                      dict(p.values))
          for p in results.table_sweep(table).points]


def test_ablation_table_on_its_sweeps_points():
  q = "model_kwargs.kernel_quantizer"
  acc = {"sgd": 0.2, "momentum": 0.5, "adam": 0.9}
  built = results.ablation_table(_fake_runs(
      results.get("ablation_digits"), lambda v, s: {
          "test_accuracy": acc[v["optimizer"]] + 0.01 * s
                           + (0.05 if v[q] == "identity" else 0),
          "latent_outside_window": 0.0 if v["clip_weights"] else 0.25,
          "latent_abs_max": 1.0}))
  assert [r[:2] for r in built.rows] == [
      [o, c] for c in ("[-1, 1]", "off") for o in ("sgd", "momentum", "adam")]
  assert built.rows[2][2].startswith("0.9200 ± 0.0158 [")
  assert built.rows[2][4] == "0 / 0" and built.rows[5][4] == "0.25 / 0.25"
  assert built.rows[2][7].startswith("0.9700 ± 0.0158") and not built.rows[5][7]
  assert "Adam − SGD, clipped STE, clip on: +0.7000 ± 0.0000" in built.notes
  assert "binary (clipped STE) − float, Adam: -0.0500" in built.notes
  assert len(built.csv_rows) == 26


def test_fpgm_table_pairs_the_criteria():
  built = results.fpgm_table(_fake_runs(
      results.get("fpgm_digits"), lambda v, s: {
          "test_accuracy": (0.9 if v["filterprune.criterion"] == "l2"
                            else 0.95) + 0.01 * s,
          "macs_fraction": 1 - v["filterprune.rate"], "revived_filters": 3}))
  assert [r[:3] for r in built.rows] == [
      ["FPGM", "0.4", "paper"], ["L2 norm", "0.4", "paper"],
      ["FPGM", "0.7", "paper"], ["L2 norm", "0.7", "paper"],
      ["FPGM", "0.7", "released_cifar"], ["L2 norm", "0.7", "released_cifar"]]
  assert built.rows[0][5] == "0.9500 / 0.9600 / 0.9700"
  assert built.notes.count("+0.0500 ± 0.0000") == 3


# ------------------------------------------------------- matched controls --
def test_run_of_is_the_earlier_arms_run_at_the_same_seed(tmp_path):
  runs = str(tmp_path)
  ref = results.RunOf("a")
  table = results.Table(
      name="ref_test", title="", config="tests/_tiny_sweep.py", seeds=(0, 1),
      build=results.flags_table,
      arms=(("a", (("learning_rate", 3e-3),)), ("b", (("data_dir", ref),))))
  assert (f"--config.data_dir={runs}/a/seed_1/runs/learning_rate=0.003,"
          "seed=1 ") in results.command(table, 1, runs, "b")
  backwards = dataclasses.replace(table, arms=tuple(reversed(table.arms)))
  with pytest.raises(results.ResultsError, match="not an earlier arm"):
    results.command(backwards, 0, runs, "b")


def test_gradcount_table_pairs_each_rho_with_its_controls():
  table = results.get("gradcount_shapes")
  controls = [a for a, o in table.arms
              if any(isinstance(v, results.RunOf) for _, v in o)]
  assert len(controls) == 2 * len(results.GRADCOUNT_RHOS)
  dice = {"gradient": 0.9, "l1": 0.95, "magnitude": 0.92, "dense": 0.93}
  runs = [results.Run(s, "", {"final": {
      "dice": dice[arm.split()[0].rstrip(",")] + 0.01 * s,
      "remaining_fraction": 0.3, "filters_remaining_fraction": 0.8}}, arm)
          for arm, _ in table.arms for s in (0, 1, 2)]
  built = results.gradcount_table(runs)
  assert [r[:2] for r in built.rows] == [["30.0%", "0.2"], ["30.0%", "0.35"],
                                         ["30.0%", "0.5"]]
  assert built.rows[0][2].startswith("0.9100 ± 0.0100 [")
  assert built.rows[0][5] == "80.0% / 80.0% / 80.0%"
  assert built.notes.count("gradient count − L1: -0.0500") == 3
  assert "Dense reference: Dice 0.9400 ± 0.0100" in built.notes


def test_mainsub_table_and_config_argument():
  table = results.get("mainsub_released")
  assert results.command(table, 1, "/r", "released").startswith(
      "python -m launch.train --config=experiments/configs/mainsub_digits.py"
      ":released --workdir=/r/released/seed_1/runs/")
  assert results.seed_sweep(table, 0, "released").base.mainsub.gate_init == 0

  def summary(seed):
    ctrl = lambda acc: {"test_accuracy": acc + 0.01 * seed,
                        "test_accuracy_before_finetune": 0.2}
    return {"filters_remaining_fraction": 0.75,
            "main": {"test_accuracy": 0.90 + 0.01 * seed},
            "final": {"test_accuracy": 0.92 + 0.01 * seed},
            "controls": {"learned": ctrl(0.92), "greedy": ctrl(0.91),
                         "random": ctrl(0.89)}}
  built = results.mainsub_table([results.Run(s, "", summary(s), "a")
                                 for s in (0, 1, 2)])
  assert built.rows[0][:3] == ["a", "25.0", "0.9100 ± 0.0100 [0.8852, "
                                            "0.9348]"]
  assert built.rows[0][-1] == "0.200 / 0.200 / 0.200"
  assert "a: pruned − greedy +0.0100 ± 0.0000" in built.notes
  assert "a: pruned − random +0.0300" in built.notes
