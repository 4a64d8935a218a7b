"""experiments.stats on hand-computed samples (no JAX; milliseconds).

The t quantiles come from their closed forms, not from SciPy: with p = 0.975,
t(p, 1) = tan(pi (p - 1/2)) = 12.706204736174696, t(p, 2) = (2p - 1)
sqrt(2 / (4 p (1 - p))) = 4.302652729749461 (printed tables round it to
4.303; 4.302652729911275, a value that circulates, is off by 4e-11), and
t(p, 4) = 2 sqrt(q - 1) with a = 4 p (1 - p), q = cos(arccos(sqrt a) / 3) /
sqrt a: 2.7764451051977934.
"""
import doctest
import math
import os

import pytest

from experiments import stats

_P = 0.975
T_1 = math.tan(math.pi * (_P - 0.5))
T_2 = (2 * _P - 1) * math.sqrt(2 / (4 * _P * (1 - _P)))
_A = 4 * _P * (1 - _P)
T_4 = 2 * math.sqrt(math.cos(math.acos(math.sqrt(_A)) / 3) / math.sqrt(_A)
                    - 1)


def test_t_quantiles_are_the_table_values():
  assert (T_1, T_2, T_4) == pytest.approx(
      (12.706204736174696, 4.302652729749461, 2.7764451051977934), rel=1e-15)
  assert stats.t_quantile(2) == pytest.approx(T_1, rel=1e-12)
  assert stats.t_quantile(3) == pytest.approx(T_2, rel=1e-12)
  assert stats.t_quantile(5) == pytest.approx(T_4, rel=1e-12)
  with pytest.raises(ValueError, match="n >= 2"):
    stats.t_quantile(1)


def test_summarize_three_values_by_hand():
  # mean 0.92; deviations -0.02, 0, 0.02: sum of squares 0.0008, / (n - 1)
  # = 0.0004, std 0.02; half-width t(0.975, 2) * 0.02 / sqrt(3).
  s = stats.summarize([0.90, 0.92, 0.94])
  half = T_2 * 0.02 / math.sqrt(3)  # 0.0496827...
  assert s["n"] == 3
  assert s["mean"] == pytest.approx(0.92, abs=1e-15)
  assert s["std"] == pytest.approx(0.02, rel=1e-12)
  assert s["ci95"] == pytest.approx((0.92 - half, 0.92 + half), rel=1e-12)
  assert s["ci95"][0] == pytest.approx(0.8703172457649935, abs=1e-12)
  assert stats.format_mean_std_ci(s) == "0.9200 ± 0.0200 [0.8703, 0.9697], n=3"
  assert stats.format_mean_std_ci(s, 2, with_n=False) == (
      "0.92 ± 0.02 [0.87, 0.97]")


def test_summarize_five_values_by_hand():
  # 1, 2, 3, 4, 10: mean 4; squares 9 + 4 + 1 + 0 + 36 = 50, / 4 = 12.5.
  s = stats.summarize([1, 2, 3, 4, 10])
  std = math.sqrt(12.5)
  half = T_4 * std / math.sqrt(5)
  assert (s["n"], s["mean"]) == (5, 4.0)
  assert s["std"] == pytest.approx(std, rel=1e-12)
  assert s["ci95"] == pytest.approx((4 - half, 4 + half), rel=1e-12)


def test_two_values_use_t_with_one_degree_of_freedom():
  s = stats.summarize([0.5, 0.7])  # mean 0.6, std sqrt(0.02)
  half = T_1 * math.sqrt(0.02) / math.sqrt(2)  # = 12.706 * 0.1
  assert s["std"] == pytest.approx(math.sqrt(0.02), rel=1e-12)
  assert s["ci95"] == pytest.approx((0.6 - half, 0.6 + half), rel=1e-12)


def test_one_value_has_std_zero_and_no_interval():
  s = stats.summarize([0.93])
  assert s == {"n": 1, "mean": 0.93, "std": 0.0, "ci95": None}
  assert stats.format_mean_std_ci(s) == "0.9300 ± 0.0000 [no CI], n=1"
  assert stats.t_interval(0.93, 0.0, 1) is None


def test_equal_values_give_a_zero_width_interval():
  s = stats.summarize([0.8, 0.8, 0.8])
  assert s["std"] == pytest.approx(0.0, abs=1e-15)  # rounding only
  assert s["ci95"] == pytest.approx((0.8, 0.8), abs=1e-14)


@pytest.mark.parametrize("bad, says", [([], "no values"),
                                       ([0.5, float("nan")], "non-finite")])
def test_summarize_refuses_empty_and_non_finite(bad, says):
  with pytest.raises(ValueError, match=says):
    stats.summarize(bad)


def test_t_interval_from_stored_mean_std_n():
  half = T_2 * 0.02 / math.sqrt(3)
  assert stats.t_interval(0.92, 0.02, 3) == pytest.approx(
      (0.92 - half, 0.92 + half), rel=1e-12)


def test_paired_difference_by_hand_indistinguishable():
  # d = 0.02, 0.01, 0.03: mean 0.02, std 0.01, half 4.3027 * 0.01 / sqrt 3
  # = 0.02484 < 0.02 + ... : the interval (-0.0048, 0.0448) holds 0.
  p = stats.paired([0.92, 0.93, 0.95], [0.90, 0.92, 0.92])
  half = T_2 * 0.01 / math.sqrt(3)
  assert p["n"] == 3
  assert p["mean_diff"] == pytest.approx(0.02, rel=1e-12)
  assert p["std"] == pytest.approx(0.01, rel=1e-9)
  assert p["ci95"] == pytest.approx((0.02 - half, 0.02 + half), rel=1e-9)
  assert p["verdict"] == "indistinguishable at n=3"
  assert stats.format_paired(p) == (
      "+0.0200 ± 0.0100 [-0.0048, +0.0448], indistinguishable at n=3")


def test_paired_ahead_and_behind_by_hand():
  # d = 0.03, 0.04, 0.05: mean 0.04, std 0.01, half 0.02484: (0.0152, 0.0648)
  a, b = [0.93, 0.94, 0.95], [0.90, 0.90, 0.90]
  half = T_2 * 0.01 / math.sqrt(3)
  ahead = stats.paired(a, b)
  assert ahead["ci95"] == pytest.approx((0.04 - half, 0.04 + half), rel=1e-9)
  assert ahead["verdict"] == "ahead"
  behind = stats.paired(b, a)
  assert behind["mean_diff"] == pytest.approx(-0.04, rel=1e-12)
  assert behind["verdict"] == "behind"


def test_paired_is_not_the_difference_of_unpaired_intervals():
  # Each side varies a lot between seeds, the difference hardly: paired
  # says ahead although the two unpaired intervals overlap.
  a, b = [0.80, 0.90, 0.70], [0.79, 0.885, 0.69]
  sa, sb = stats.summarize(a), stats.summarize(b)
  assert sa["ci95"][0] < sb["ci95"][1]  # overlapping
  assert stats.paired(a, b)["verdict"] == "ahead"


def test_paired_one_seed_and_mismatched_lengths():
  p = stats.paired([0.9], [0.8])
  assert p["ci95"] is None and p["std"] == 0.0
  assert p["verdict"] == "indistinguishable at n=1"
  with pytest.raises(ValueError, match="one pair per seed"):
    stats.paired([0.9, 0.8], [0.8])


def test_docstring_examples_run():
  failed, attempted = doctest.testmod(stats)
  assert attempted > 0 and failed == 0


# ------------------------------------------------ the reports that use it --


def _control_runs(accs, level=1):
  return [{"level": level, "remaining_fraction": 0.5, "test_accuracy": a,
           "early_stop_step": 10, "early_stop_test_accuracy": a,
           "train_accuracy": 1.0, "seed": i} for i, a in enumerate(accs)]


def _lottery_summary(rows, ticket=0.95):
  return {"model": "mlp", "dataset": "mnist5k", "reset": "init",
          "levels": [{"level": 1, "remaining_fraction": 0.5,
                      "test_accuracy": ticket, "early_stop_step": 10,
                      "early_stop_test_accuracy": ticket,
                      "train_accuracy": 1.0}],
          "controls": {"random_reinit": rows}}


def test_lottery_control_rows_carry_the_interval():
  import json  # pylint: disable=g-import-not-at-top
  from experiments import lottery_report  # pylint: disable=g-import-not-at-top
  half = T_2 * 0.02 / math.sqrt(3)
  row = lottery_report.mean_over_seeds(_control_runs([0.90, 0.92, 0.94]))
  assert row["test_accuracy"] == pytest.approx(0.92, abs=1e-15)
  assert row["test_accuracy_std"] == pytest.approx(0.02, rel=1e-12)
  assert row["test_accuracy_ci95"] == pytest.approx(
      [0.92 - half, 0.92 + half], rel=1e-12)
  assert row["seeds"] == [0, 1, 2]
  one = lottery_report.mean_over_seeds(_control_runs([0.9]))
  assert one["test_accuracy_std"] == 0.0 and one["test_accuracy_ci95"] is None
  json.dumps([row, one])  # summary.json stores them

  table = lottery_report.format_table(_lottery_summary([row]), markdown=True)
  assert "| random_reinit acc (mean ± sample std [95% CI], n) |" in table
  assert "| 0.9200 ± 0.0200 [0.8703, 0.9697], n=3 |" in table, table
  # A row written before the interval was stored gets it from std and n.
  old = {k: v for k, v in row.items() if k != "test_accuracy_ci95"}
  assert lottery_report.format_table(_lottery_summary([old]), True) == table
  assert "0.9000 ± 0.0000 [no CI], n=1" in lottery_report.format_table(
      _lottery_summary([one]))


def test_lottery_plot_bands_are_the_95_percent_interval():
  from experiments import lottery_report  # pylint: disable=g-import-not-at-top
  row = lottery_report.mean_over_seeds(_control_runs([0.90, 0.92, 0.94]))
  half = T_2 * 0.02 / math.sqrt(3)
  one = [_lottery_summary([row])]
  controls = lambda s: s["controls"]["random_reinit"]
  _, mean, lo, hi = lottery_report.series(one, controls)
  assert (lo[0], hi[0]) == pytest.approx((0.92 - half, 0.92 + half))
  _, mean, lo, hi = lottery_report.series(one, lambda s: s["levels"])
  assert lo[0] == hi[0] == mean[0] == 0.95  # one ticket: no interval
  # Three runs (seeds): the interval over the runs' values.
  runs = [_lottery_summary([row], ticket=t) for t in (0.90, 0.92, 0.94)]
  _, mean, lo, hi = lottery_report.series(runs, lambda s: s["levels"])
  assert (mean[0], lo[0], hi[0]) == pytest.approx(
      (0.92, 0.92 - half, 0.92 + half))


def test_sweep_tables_and_csv_carry_the_interval(tmp_path):
  import csv  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  from experiments import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  path = tmp_path / "sweep.py"
  path.write_text(
      "from experiments.configs import digits_magnitude\n"
      "get_config = digits_magnitude.get_config\n"
      "def get_sweep():\n"
      "  return {'seeds': [0, 1, 2], 'grids': [{'optimizer': ['sgd', "
      "'adam']}]}\n")
  s = sweep_lib.load(str(path), check_build=False)
  workdir = tmp_path / "w"
  # sgd: three seeds finished; adam: one finished, two not run.
  accs = {("sgd", 0): 0.90, ("sgd", 1): 0.92, ("sgd", 2): 0.94,
          ("adam", 0): 0.70}
  for p in s.points:
    acc = accs.get((p.values["optimizer"], p.seed))
    if acc is not None:
      os.makedirs(workdir / "runs" / p.name)
      (workdir / "runs" / p.name / "summary.json").write_text(json.dumps(
          {"final": {"test_accuracy": acc, "test_loss": 0.1, "step": 5}}))
  md = sweep_lib.write_results(s, str(workdir))
  assert (workdir / "results.png").read_bytes()[:4] == b"\x89PNG"
  assert "mean ± sample std [95% CI, Student t]" in md
  assert "| sgd | 0.9200 ± 0.0200 [0.8703, 0.9697] | 3 |" in md, md
  assert "| adam | 0.7000 ± 0.0000 [no CI] | 1 of 3 |" in md, md

  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  # The old columns first, in their order; the seeds' statistics appended.
  assert list(rows[0]) == ["name", "optimizer", "seed", "test_accuracy",
                           "test_loss", "step", "wall_seconds", "status",
                           "test_accuracy_n", "test_accuracy_mean",
                           "test_accuracy_std", "test_accuracy_ci95_lo",
                           "test_accuracy_ci95_hi"]
  half = T_2 * 0.02 / math.sqrt(3)
  by = {(r["optimizer"], r["seed"]): r for r in rows}
  for seed in "012":
    r = by[("sgd", seed)]
    assert r["test_accuracy_n"] == "3"
    assert float(r["test_accuracy_mean"]) == pytest.approx(0.92)
    assert float(r["test_accuracy_std"]) == pytest.approx(0.02)
    assert (float(r["test_accuracy_ci95_lo"]),
            float(r["test_accuracy_ci95_hi"])) == pytest.approx(
                (0.92 - half, 0.92 + half))
  unfinished = by[("adam", "2")]
  assert unfinished["status"] == "not run" and unfinished["test_accuracy"] == ""
  assert (unfinished["test_accuracy_n"], unfinished["test_accuracy_mean"],
          unfinished["test_accuracy_std"], unfinished["test_accuracy_ci95_lo"]
          ) == ("1", "0.7", "0.0", "")
