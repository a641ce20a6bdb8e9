"""Where metrics go: progress lines, `metrics.jsonl` and TensorBoard.

`metrics.jsonl` has one JSON object per logged step (train records carry
`train_loss`, eval records `eval_loss`, `eval_accuracy`, ...), appended across
resumed runs. TensorBoard event files go to `workdir/tensorboard`, written
with the `tensorboard` package's own event writer (no TensorFlow needed),
with tags grouped by `tensorboard_tag` (`train/loss`, `eval/accuracy`,
`attention/qk_diag`, `speed/items_per_second`, ...); without that package
they are off, and the run says so once. Progress lines start with the time.
"""

from collections.abc import Iterator
import contextlib
import json
import math
import os
import statistics
import time
from typing import Any

from absl import logging
import jax


def format_duration(seconds: float) -> str:
  """'1m05s' under an hour, '1h02m' from an hour on; to the nearest second."""
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class MetricWriter:
  """Appends metric records to `metrics.jsonl` and TensorBoard (process 0)."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self._enabled = enabled
    if not enabled:
      return
    self._jsonl = open(  # noqa: SIM115 (closed by `close`)
      os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8"
    )
    self._events = _tensorboard_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self._enabled or not metrics:
      return
    record = {"step": int(step)}
    record.update({k: float(v) for k, v in metrics.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._events is not None:
      self._events.add_event(_scalars_event(step, record))
      self._events.flush()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      if self._events is not None:
        self._events.close()


def _tensorboard_writer(logdir: str):
  """An event-file writer for `logdir`, or None (with one line) without the
  `tensorboard` package."""
  try:
    from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
  except ImportError:
    log(
      "TensorBoard summaries are off (the tensorboard package is not "
      "installed); metrics.jsonl has every metric."
    )
    return None
  return event_file_writer.EventFileWriter(logdir)


_GROUPS = {"train_": "train/", "eval_": "eval/", "attn_": "attention/"}
_SPEED = (
  "items_per_second",
  "items_per_second_per_device",
  "steady_items_per_second",
  "steady_items_per_second_per_device",
  "seconds_per_step",
  "compile_seconds",
)


def tensorboard_tag(name: str) -> str:
  """The TensorBoard tag of a metrics.jsonl key: `train_loss` ->
  `train/loss`, `eval_accuracy` -> `eval/accuracy`, `attn_vo_diag` ->
  `attention/vo_diag`, per-layer `block0/qk_diag` -> `attention/block0/qk_diag`,
  throughput and compile time under `speed/`, the rest under `train/`."""
  for prefix, group in _GROUPS.items():
    if name.startswith(prefix):
      return group + name[len(prefix) :]
  if "/" in name:
    return "attention/" + name
  return ("speed/" if name in _SPEED else "train/") + name


def _scalars_event(step: int, record: dict[str, float]):
  """One TensorBoard event holding the finite scalars of `record`."""
  from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top

  values = [
    summary_pb2.Summary.Value(tag=tensorboard_tag(name), simple_value=value)
    for name, value in record.items()
    if name != "step" and math.isfinite(value)
  ]
  return event_pb2.Event(
    wall_time=time.time(),
    step=int(step),
    summary=summary_pb2.Summary(value=values),
  )


class Throughput:
  """Items/s between log points and an ETA, excluding eval/checkpoint time."""

  def __init__(
    self,
    first_step: int,
    total_steps: int,
    items_per_step: int,
    num_devices: int = 1,
  ):
    self._total = total_steps
    self._items = items_per_step
    self._devices = num_devices
    self._step = first_step
    self._time = time.perf_counter()
    self._paused = 0.0
    self._step_time = math.nan
    self._rates = []  # items/s of each interval since the start.

  @contextlib.contextmanager
  def excluded(self, pending: Any) -> Iterator[None]:
    """Leaves the time inside the block (an eval, a save) out of the rate.

    Waits first for `pending` (the train state): JAX dispatches steps
    asynchronously, so steps queued before the block are still running when
    it starts, and their time belongs to training, not to the block.
    """
    jax.block_until_ready(pending)
    tic = time.perf_counter()
    try:
      yield
    finally:
      self._paused += time.perf_counter() - tic

  def update(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    elapsed = now - self._time - self._paused
    steps = step - self._step
    self._step, self._time, self._paused = step, now, 0.0
    if steps <= 0 or elapsed <= 0:
      return {}
    self._step_time = elapsed / steps
    rate = steps * self._items / elapsed
    self._rates.append(rate)
    return {
      "items_per_second": rate,
      "items_per_second_per_device": rate / self._devices,
      "seconds_per_step": self._step_time,
    }

  def steady(self) -> dict[str, float]:
    """Median items/s over the intervals after the first (which waits for
    the first step's compilation), total and per device; {} before two."""
    if len(self._rates) < 2:
      return {}
    rate = statistics.median(self._rates[1:])
    return {
      "steady_items_per_second": rate,
      "steady_items_per_second_per_device": rate / self._devices,
    }

  def eta(self, step: int) -> str:
    if math.isnan(self._step_time):
      return "?"
    return format_duration((self._total - step) * self._step_time)


def progress_line(
  step: int, total: int, epoch: float, metrics: dict, unit: str, eta: str
) -> str:
  parts = [f"step {step}/{total}", f"epoch {epoch:.2f}"]
  for name, label, fmt in (
    ("train_loss", "loss", ".4f"),
    ("train_accuracy", "acc", ".3f"),
    ("train_perplexity", "ppl", ".2f"),
    ("train_bits_per_byte", "bpb", ".3f"),
    ("learning_rate", "lr", ".2e"),
    ("items_per_second", f"{unit}/s", ".0f"),
  ):
    if name in metrics:
      parts.append(f"{label} {metrics[name]:{fmt}}")
  parts.append(f"ETA {eta}")
  return " | ".join(parts)


def log(message: str) -> None:
  """Prints a progress line with the local time (stdout, flushed) and logs
  it (absl adds its own time)."""
  print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)
  logging.info(message)
