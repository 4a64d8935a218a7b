"""The README's main job, as shipped: the issue's accuracy targets.

digits_magnitude.py unchanged (4000 steps): >= 0.95 test accuracy dense and
>= 0.93 with 80% of the weights pruned.
"""
import pytest

from experiments import train
from experiments.configs import digits_magnitude


@pytest.mark.parametrize("method,target", [("none", 0.95),
                                           ("magnitude", 0.93)])
def test_main_job_reaches_target(tmp_path, method, target):
  config = digits_magnitude.get_config()
  config.pruning.method = method
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["final"]["test_accuracy"] >= target
  expected = 1.0 if method == "none" else 0.2
  assert summary["final"]["remaining_fraction"] == pytest.approx(expected,
                                                                 abs=1e-3)
