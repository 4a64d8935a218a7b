"""The README's main job, as shipped: the issue's accuracy targets.

digits_magnitude.py unchanged (4000 steps): >= 0.95 test accuracy dense and
>= 0.93 with 80% of the weights pruned.
"""
import pytest

from experiments import drivers
from experiments.configs import digits_magnitude


@pytest.mark.parametrize("method,target", [("none", 0.95),
                                           ("magnitude", 0.93)])
def test_main_job_reaches_target(tmp_path, method, target):
  config = digits_magnitude.get_config()
  config.pruning.method = method
  summary = drivers.run(config, str(tmp_path))
  assert summary["final"]["test_accuracy"] >= target
  expected = 1.0 if method == "none" else 0.2
  assert summary["final"]["remaining_fraction"] == pytest.approx(expected,
                                                                 abs=1e-3)


def test_lottery_main_job_first_levels(tmp_path):
  """lottery_digits.py as shipped, cut to 5 levels and 1 seed per control:
  the ladder is exact and tickets keep >= 0.95 test accuracy at 33%."""
  from experiments.configs import lottery_digits  # pylint: disable=g-import-not-at-top
  import lottery  # pylint: disable=g-import-not-at-top
  config = lottery_digits.get_config()
  config.lottery.levels = 5
  config.lottery.control_seeds = 1
  summary = drivers.run(config, str(tmp_path))
  ladder = [r["remaining_fraction"] for r in summary["levels"]]
  sizes, rates = (64 * 300 + 300 * 100, 100 * 10), (0.2, 0.1)
  for level, got in enumerate(ladder):  # rounding: <= 1 weight per layer
    assert got == pytest.approx(lottery.layered_remaining(level, sizes, rates),
                                abs=2 * (level + 1) / sum(sizes))
  assert summary["levels"][-1]["test_accuracy"] >= 0.95
  assert set(summary["controls"]) == {"random_reinit", "random_prune"}
