"""A comparison's numbers, as pure functions of `metrics.jsonl` records.

`eval_curve` -> `summarize_run` -> `summarize_inits`: each run's eval curve,
its final and best value and its value at fractions of the step budget,
then mean ± sample std over the seeds of each init. `Metric` says which
eval key a task is judged by and in which direction.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import math
from typing import Any

from mimetic_jax.errors import UserError

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class Metric:
  """The eval metric a comparison is judged by."""

  key: str  # In metrics.jsonl, e.g. 'eval_accuracy'.
  label: str  # For tables and axes.
  higher_is_better: bool
  scale: float  # Displayed value = scale * stored value.
  digits: int  # Decimals shown.
  plot_file: str

  @property
  def direction(self) -> str:
    return "higher is better" if self.higher_is_better else "lower is better"

  def better(self, a: float, b: float) -> bool:
    return a > b if self.higher_is_better else a < b

  def format(self, value: float | None) -> str:
    """The displayed value; '—' for None or a non-finite value."""
    if value is None or not math.isfinite(value):
      return "—"
    return f"{value * self.scale:.{self.digits}f}"


ACCURACY = Metric(
  "eval_accuracy", "eval accuracy (%)", True, 100.0, 2, "accuracy.png"
)
BITS_PER_BYTE = Metric(
  "eval_bits_per_byte", "eval bits per byte", False, 1.0, 4, "bits_per_byte.png"
)


def metric_for_task(task: str) -> Metric:
  """Eval accuracy for 'image', eval bits per byte for 'lm'."""
  if task == "lm":
    return BITS_PER_BYTE
  if task == "image":
    return ACCURACY
  raise UserError(
    f"Unknown task {task!r} in config.json; expected 'image' or 'lm'."
  )


def eval_curve(
  records: Sequence[Mapping[str, Any]], key: str
) -> list[dict[str, float]]:
  """The eval records that carry `key`, one per step, sorted by step.

  Each point is {'step', 'epoch' (NaN if not recorded), 'value'}. A resumed
  run re-logs the steps between its last checkpoint and the interruption;
  the later record of a step (from the attempt that went on) wins.
  """
  by_step = {}
  for record in records:
    value = record.get(key)
    if value is None or "step" not in record:
      continue
    by_step[int(record["step"])] = {
      "step": int(record["step"]),
      "epoch": float(record.get("epoch", math.nan)),
      "value": float(value),
    }
  return [by_step[s] for s in sorted(by_step)]


def budget_steps(
  config: Mapping[str, Any],
  curve: Sequence[Mapping[str, float]],
  final_step: int | None = None,
  records: Sequence[Mapping[str, Any]] = (),
) -> int | None:
  """The run's total number of steps, or None if it cannot be told.

  The `total_steps` the trainer records in `metrics.jsonl` when a run
  starts (the last such record, if the run was resumed). Workdirs written
  before the trainer recorded it fall back to: the finished run's last
  step; else the config's `total_steps` if set; else `num_epochs` x steps
  per epoch, with steps per epoch read off an eval record of `curve`
  (`epoch = step / steps_per_epoch`), rounded up as the trainer does.
  """
  recorded = [r["total_steps"] for r in records if r.get("total_steps")]
  if recorded:
    return int(recorded[-1])
  # Fallback for workdirs from before the trainer recorded `total_steps`.
  if final_step:
    return int(final_step)
  if config.get("total_steps", 0) > 0:
    return int(config["total_steps"])
  for point in curve:
    if point["epoch"] > 0 and math.isfinite(point["epoch"]):
      steps_per_epoch = round(point["step"] / point["epoch"])
      return math.ceil(config.get("num_epochs", 0) * steps_per_epoch - 1e-9)
  return None


def value_at_fraction(
  curve: Sequence[Mapping[str, float]],
  total_steps: int,
  fraction: float,
  *,
  finished: bool,
) -> tuple[float, int] | tuple[None, None]:
  """(value, step) of the eval record nearest `fraction * total_steps`.

  Ties go to the earlier record. An unfinished run that has not yet reached
  the target step gives (None, None) rather than an earlier value.
  """
  if not curve or not total_steps:
    return None, None
  target = fraction * total_steps
  if not finished and curve[-1]["step"] < target:
    return None, None
  point = min(curve, key=lambda p: (abs(p["step"] - target), p["step"]))
  return point["value"], point["step"]


def summarize_run(
  records: Sequence[Mapping[str, Any]],
  metric: Metric,
  *,
  total_steps: int | None,
  finished: bool,
  fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> dict[str, Any]:
  """One run's numbers from its metrics records.

  Returns a dict with `final` (value of the last eval), `best` and
  `best_step` (best eval by `metric`'s direction), `step` and `epoch` of the
  last eval, `num_evals`, `total_steps`, `finished`, and `at`: {fraction:
  value or None} with `at_step`: {fraction: step of the record used}.
  """
  curve = eval_curve(records, metric.key)
  summary = {
    "final": None,
    "best": None,
    "best_step": None,
    "step": None,
    "epoch": None,
    "num_evals": len(curve),
    "total_steps": total_steps,
    "finished": finished,
    "at": {},
    "at_step": {},
  }
  if curve:
    best = curve[0]
    for point in curve[1:]:
      if metric.better(point["value"], best["value"]):
        best = point
    summary.update(
      final=curve[-1]["value"],
      best=best["value"],
      best_step=best["step"],
      step=curve[-1]["step"],
      epoch=curve[-1]["epoch"],
    )
  for fraction in fractions:
    value, step = value_at_fraction(
      curve, total_steps, fraction, finished=finished
    )
    summary["at"][fraction] = value
    summary["at_step"][fraction] = step
  return summary


def mean_std(
  values: Sequence[float | None],
) -> tuple[float | None, float | None, int]:
  """(mean, sample std with n - 1, n) over the values that are not None.

  The std is None for fewer than two values.
  """
  xs = [float(v) for v in values if v is not None]
  n = len(xs)
  if not n:
    return None, None, 0
  mean = sum(xs) / n
  if n < 2:
    return mean, None, n
  return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)), n


def summarize_inits(
  runs: Sequence[Mapping[str, Any]],
  fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> dict[str, dict[str, Any]]:
  """Per init (in order of first appearance), over its seeds.

  Args:
    runs: dicts with `init`, `seed` and `summary` (from `summarize_run`).
    fractions: the fractions of the budget to summarise.

  Returns:
    {init: {'seeds': [...], 'finished': count, 'final': (mean, std, n),
    'best': (mean, std, n), 'at': {fraction: (mean, std, n)}}}.
  """
  groups: dict[str, list[Mapping[str, Any]]] = {}
  for run in runs:
    groups.setdefault(run["init"], []).append(run)
  result = {}
  for init, group in groups.items():
    summaries = [r["summary"] for r in group]
    result[init] = {
      "seeds": [r["seed"] for r in group],
      "finished": sum(bool(s["finished"]) for s in summaries),
      "final": mean_std([s["final"] for s in summaries]),
      "best": mean_std([s["best"] for s in summaries]),
      "at": {
        f: mean_std([s["at"].get(f) for s in summaries]) for f in fractions
      },
    }
  return result
