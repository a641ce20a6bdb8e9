"""Throughput accounting around evals and saves, on a fake clock; the
TensorBoard tags of the metrics."""

import pytest

from mimetic_jax import metric_logging


class _Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self) -> float:
    return self.now


class _QueuedSteps:
  """A pytree leaf standing for train steps still running on the device:
  waiting for it takes `seconds` of the clock."""

  def __init__(self, clock: _Clock, seconds: float):
    self._clock, self._seconds = clock, seconds

  def block_until_ready(self):
    self._clock.now += self._seconds
    return self


@pytest.fixture
def clock(monkeypatch) -> _Clock:
  clock = _Clock()
  monkeypatch.setattr(metric_logging.time, "perf_counter", clock)
  return clock


def test_queued_steps_count_as_training_and_the_eval_does_not(clock):
  meter = metric_logging.Throughput(
    first_step=0, total_steps=10, items_per_step=64, num_devices=4
  )
  clock.now += 0.5  # Dispatching 4 steps (asynchronous, so fast).
  with meter.excluded({"params": _QueuedSteps(clock, seconds=3.5)}):
    clock.now += 20.0  # The eval.
  rates = meter.update(4)
  assert rates["seconds_per_step"] == pytest.approx(1.0)
  assert rates["items_per_second"] == pytest.approx(64.0)
  assert rates["items_per_second_per_device"] == pytest.approx(16.0)
  assert meter.eta(4) == metric_logging.format_duration(6.0)


def test_an_exception_inside_still_excludes_the_time(clock):
  meter = metric_logging.Throughput(
    first_step=2, total_steps=10, items_per_step=1
  )
  with pytest.raises(RuntimeError), meter.excluded(None):
    clock.now += 7.0
    raise RuntimeError
  clock.now += 2.0
  assert meter.update(4)["seconds_per_step"] == pytest.approx(1.0)


@pytest.mark.parametrize(
  "name, tag",
  [
    ("train_loss", "train/loss"),
    ("train_bits_per_byte", "train/bits_per_byte"),
    ("learning_rate", "train/learning_rate"),
    ("epoch", "train/epoch"),
    ("eval_accuracy", "eval/accuracy"),
    ("eval_seconds", "eval/seconds"),
    ("attn_vo_diag", "attention/vo_diag"),
    ("encoderblock_0/qk_diag", "attention/encoderblock_0/qk_diag"),
    ("items_per_second", "speed/items_per_second"),
    ("items_per_second_per_device", "speed/items_per_second_per_device"),
    ("compile_seconds", "speed/compile_seconds"),
  ],
)
def test_tensorboard_tags_are_grouped(name, tag):
  assert metric_logging.tensorboard_tag(name) == tag


def test_steady_rate_skips_the_first_interval(clock):
  meter = metric_logging.Throughput(
    first_step=0, total_steps=40, items_per_step=10, num_devices=2
  )
  assert meter.steady() == {}
  for step, seconds in ((10, 300.0), (20, 10.0), (30, 20.0), (40, 10.0)):
    clock.now += seconds  # The first interval waits for compilation.
    meter.update(step)
  assert meter.steady() == {
    "steady_items_per_second": 10.0,
    "steady_items_per_second_per_device": 5.0,
  }
