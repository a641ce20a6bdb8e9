"""The pure parts of `benchmarks/accelerator/paper_run.py` (the whole script
is rehearsed end to end by `.ci/run`'s dry run)."""

import pytest

from benchmarks.accelerator import paper_run


def test_choose_epochs_fits_the_budget():
  # 100 s per run; 20 s fixed; 5 evals of 10k images at half cost = 2.5 s.
  epochs = paper_run.choose_epochs(
    budget_s=200, num_runs=2, img_per_s=10_000, overhead_s=20, max_epochs=100
  )
  assert epochs == 15  # floor((100 - 20 - 2.5) * 10_000 / 50_000) = 15.
  cost = 20 + 2.5 + epochs * 50_000 / 10_000
  assert 2 * cost <= 200


@pytest.mark.parametrize("budget_s, expected", [(1e6, 100), (10, 1)])
def test_choose_epochs_is_clamped(budget_s, expected):
  assert (
    paper_run.choose_epochs(
      budget_s=budget_s,
      num_runs=2,
      img_per_s=10_000,
      overhead_s=20,
      max_epochs=100,
    )
    == expected
  )


def test_steady_throughput_skips_the_first_record():
  records = [
    {"step": 20, "items_per_second": 10.0},
    {"step": 20, "eval_accuracy": 0.5},
    {"step": 40, "items_per_second": 1000.0},
    {"step": 60, "items_per_second": 1200.0},
    {"step": 80, "items_per_second": 1100.0},
  ]
  assert paper_run.steady_throughput(records) == 1100.0


def test_hardware_is_read_from_the_trainer_output():
  output = (
    "2026-12-05 10:00:00 Workdir: w\n2026-12-05 10:00:04 Data: 49664 "
    "training examples used (97 steps of 512 per epoch), 10000 eval "
    "items; loaded in 3.1s. 60 steps on 1 x NVIDIA H200.\n"
    "2026-12-05 10:00:09 Initialized ViT\n"
  )
  assert paper_run.hardware(output) == "1 x NVIDIA H200"
  assert paper_run.hardware("no such line") == "unknown"
