r"""Compare initializations: train every (init, seed) pair, then tabulate.

    python -m mimetic_jax.compare --config configs/cifar10.py:cpu \
        --seeds 0,1 --inits default,mimetic --workdir workdirs/compare_cpu \
        [--config.KEY=VALUE ...]
    python -m mimetic_jax.compare --workdir workdirs/compare_cpu --report_only

Every pair trains with otherwise identical settings (the config file, its
preset and the `--config.*` overrides, plus `--config.init=<init>` and
`--config.seed=<seed>`) in its own workdir `DIR/<init>_seed<seed>/`. Then:

* `DIR/results.md`: per-init summary (mean ± sample std over seeds of the
  final and the best eval metric, and the metric at 25/50/75/100 % of the
  step budget), per-run table, the command that produced it and the metric's
  direction.
* A plot of the eval metric against epoch for every run (one colour per init,
  one line style per seed): `DIR/accuracy.png` for image classification
  (eval accuracy, higher is better) and `DIR/bits_per_byte.png` for language
  models (`task='lm'`: eval bits per byte, lower is better). The LM plot gets
  its own name so that a file called "accuracy" never holds bits per byte.

Resuming: rerun the same command. A run whose `final_metrics.json` exists
(the trainer writes it only on completion) and whose recorded `config.json`
matches is skipped; an interrupted one is started again in its workdir, where
the trainer resumes from its last checkpoint. If `DIR` holds a run made with a
different config (ignoring `init` and `seed`), the runner refuses before
training anything: results in one `DIR` come from one config.
`--report_only` rebuilds `results.md` and the plot from the workdirs in `DIR`
without training (by default from every `<init>_seed<seed>` run found there).

Why subprocesses: each run is a fresh `main.py` process, so JAX, XLA and
TensorFlow start from clean state (no compilation caches, device buffers or
tfds state carried from one run into the next, no global RNG or flag leaks),
a crash or out-of-memory in one run cannot take the others with it, and each
run is exactly what `python main.py` would do, with the same flag parsing.
The runner itself never initialises a JAX backend, so it holds no
accelerator memory while the runs train. Each run's output is streamed with
a `[<init>_seed<seed>]` prefix. Ctrl-C (or SIGTERM) is passed on to the
running trainer, which saves a checkpoint before exiting; the next rerun
continues from there. The wall time of each attempt (process start to exit:
imports, data loading, compilation, training and evaluation) is added up in
`DIR/<run>/compare_wall_time.json`.

The table-building logic is pure functions on the records of `metrics.jsonl`
(`eval_curve` -> `summarize_run` -> `summarize_inits` -> `render_markdown`),
so it can be checked on synthetic records.
"""

import dataclasses
import json
import math
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

MAIN_PY = pathlib.Path(__file__).resolve().parents[1] / "main.py"
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
RUN_DIR_PATTERN = re.compile(r"^(?P<init>[A-Za-z0-9_]+)_seed(?P<seed>-?\d+)$")
# Keys that differ between the runs of one comparison by design.
PER_RUN_KEYS = ("init", "seed")
WALL_TIME_FILE = "compare_wall_time.json"
COMMAND_FILE = "compare_command.json"
_OVERRIDE_PATTERN = re.compile(r"^-{1,2}(no)?config\.")


class CompareError(ValueError):
  """A command that cannot run; the message says how to fix it."""


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
    if value is None or not math.isfinite(value):
      return "—"
    return f"{value * self.scale:.{self.digits}f}"


ACCURACY = Metric("eval_accuracy", "eval accuracy (%)", True, 100.0, 2,
                  "accuracy.png")
BITS_PER_BYTE = Metric("eval_bits_per_byte", "eval bits per byte", False, 1.0,
                       4, "bits_per_byte.png")


def metric_for_task(task: str) -> Metric:
  """Eval accuracy for 'image', eval bits per byte for 'lm'."""
  if task == "lm":
    return BITS_PER_BYTE
  if task == "image":
    return ACCURACY
  raise CompareError(f"Unknown task {task!r} in config.json; expected 'image' "
                     "or 'lm'.")


# ----------------------------------------------------------------------------
# Command-line values.


def parse_seeds(text: str) -> list[int]:
  """'0,1,2' -> [0, 1, 2]; empty, non-integer or repeated seeds are errors."""
  parts = [p.strip() for p in text.split(",")] if text.strip() else []
  if not parts:
    raise CompareError("--seeds is empty; give a comma-separated list of "
                       "integers, e.g. --seeds=0,1.")
  seeds = []
  for part in parts:
    try:
      seeds.append(int(part))
    except ValueError:
      raise CompareError(
          f"--seeds={text!r}: {part!r} is not an integer; give a "
          "comma-separated list of integers, e.g. --seeds=0,1.") from None
  if len(set(seeds)) != len(seeds):
    raise CompareError(f"--seeds={text!r} repeats a seed; list each once.")
  return seeds


def parse_inits(text: str, known: Sequence[str]) -> list[str]:
  """'default,mimetic' -> ['default', 'mimetic'], checked against `known`."""
  inits = [p.strip() for p in text.split(",") if p.strip()]
  if not inits:
    raise CompareError(f"--inits is empty; give a comma-separated list of "
                       f"{', '.join(known)}, e.g. --inits=default,mimetic.")
  unknown = [i for i in inits if i not in known]
  if unknown:
    raise CompareError(f"--inits={text!r}: unknown init(s) {unknown}; "
                       f"choose from {', '.join(known)}.")
  if len(set(inits)) != len(inits):
    raise CompareError(f"--inits={text!r} repeats an init; list each once.")
  return inits


def parse_fractions(text: str) -> list[float]:
  """'0.25,0.5,1' -> [0.25, 0.5, 1.0]; each in (0, 1]."""
  try:
    fractions = [float(p) for p in text.split(",") if p.strip()]
  except ValueError:
    fractions = []
  if not fractions or not all(0 < f <= 1 for f in fractions):
    raise CompareError(f"--fractions={text!r} must be a comma-separated list "
                       "of numbers in (0, 1], e.g. 0.25,0.5,0.75,1.")
  return sorted(set(fractions))


def run_name(init: str, seed: int) -> str:
  return f"{init}_seed{seed}"


def config_overrides(argv: Sequence[str],
                     is_bool: Any = lambda path: False) -> list[str]:
  """The `--config.KEY[=VALUE]` tokens of `argv`, to pass on unchanged.

  A `--config.KEY VALUE` override takes the next token as its value unless
  `is_bool(KEY)` (absl booleans: `--config.KEY`, `--noconfig.KEY`).
  """
  tokens, i = [], 0
  while i < len(argv):
    token = argv[i]
    match = _OVERRIDE_PATTERN.match(token)
    if match:
      tokens.append(token)
      key = token[match.end():]
      if ("=" not in token and not match.group(1) and not is_bool(key)
          and i + 1 < len(argv)):
        tokens.append(argv[i + 1])
        i += 1
    i += 1
  return tokens


def overridden_keys(overrides: Sequence[str]) -> list[str]:
  keys = []
  for token in overrides:
    match = _OVERRIDE_PATTERN.match(token)
    if match:
      keys.append(token[match.end():].split("=", 1)[0])
  return keys


# ----------------------------------------------------------------------------
# Configs.


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def config_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any],
                       ignore: Sequence[str] = PER_RUN_KEYS
                       ) -> list[tuple[str, Any, Any]]:
  """(key, recorded value, wanted value) for every key that differs.

  Both are config dicts as `config.json` holds them; missing keys show as
  '<absent>'. Keys in `ignore` (and their sub-keys) are skipped.
  """
  a, b = flatten(recorded), flatten(wanted)
  skip = lambda k: any(k == i or k.startswith(i + ".") for i in ignore)
  return [(k, a.get(k, "<absent>"), b.get(k, "<absent>"))
          for k in sorted(set(a) | set(b))
          if not skip(k) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def format_differences(diffs: Sequence[tuple[str, Any, Any]],
                       names: tuple[str, str]) -> str:
  return "\n".join(f"  {key}: {a!r} ({names[0]}) vs {b!r} ({names[1]})"
                   for key, a, b in diffs)


# ----------------------------------------------------------------------------
# Pure summaries of metrics records.


def eval_curve(records: Sequence[Mapping[str, Any]],
               key: str) -> list[dict[str, float]]:
  """The eval records that carry `key`, one per step, sorted by step.

  A resumed run re-logs the steps between its last checkpoint and the
  interruption; the later record of a step (from the attempt that went on)
  wins.
  """
  by_step = {}
  for record in records:
    value = record.get(key)
    if value is None or "step" not in record:
      continue
    by_step[int(record["step"])] = {
        "step": int(record["step"]),
        "epoch": float(record.get("epoch", math.nan)),
        "value": float(value)}
  return [by_step[s] for s in sorted(by_step)]


def budget_steps(config: Mapping[str, Any],
                 curve: Sequence[Mapping[str, float]],
                 final_step: int | None = None) -> int | None:
  """The run's total number of steps, or None if it cannot be told.

  The finished run's last step; else `total_steps` if set; else
  `num_epochs` x steps per epoch, with steps per epoch read off an eval
  record (`epoch = step / steps_per_epoch`), rounded up as the trainer does.
  """
  if final_step:
    return int(final_step)
  if config.get("total_steps", 0) > 0:
    return int(config["total_steps"])
  for point in curve:
    if point["epoch"] > 0 and math.isfinite(point["epoch"]):
      steps_per_epoch = round(point["step"] / point["epoch"])
      return math.ceil(config.get("num_epochs", 0) * steps_per_epoch - 1e-9)
  return None


def value_at_fraction(curve: Sequence[Mapping[str, float]], total_steps: int,
                      fraction: float, *, finished: bool
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


def summarize_run(records: Sequence[Mapping[str, Any]], metric: Metric, *,
                  total_steps: int | None, finished: bool,
                  fractions: Sequence[float] = DEFAULT_FRACTIONS
                  ) -> dict[str, Any]:
  """One run's numbers from its metrics records.

  Returns a dict with `final` (value of the last eval), `best` and
  `best_step` (best eval by `metric`'s direction), `step` and `epoch` of the
  last eval, `num_evals`, `total_steps`, `finished`, and `at`: {fraction:
  value or None} with `at_step`: {fraction: step of the record used}.
  """
  curve = eval_curve(records, metric.key)
  summary = {"final": None, "best": None, "best_step": None, "step": None,
             "epoch": None, "num_evals": len(curve), "total_steps": total_steps,
             "finished": finished, "at": {}, "at_step": {}}
  if curve:
    best = curve[0]
    for point in curve[1:]:
      if metric.better(point["value"], best["value"]):
        best = point
    summary.update(final=curve[-1]["value"], best=best["value"],
                   best_step=best["step"], step=curve[-1]["step"],
                   epoch=curve[-1]["epoch"])
  for fraction in fractions:
    value, step = value_at_fraction(curve, total_steps, fraction,
                                    finished=finished)
    summary["at"][fraction] = value
    summary["at_step"][fraction] = step
  return summary


def mean_std(values: Sequence[float | None]
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


def summarize_inits(runs: Sequence[Mapping[str, Any]],
                    fractions: Sequence[float] = DEFAULT_FRACTIONS
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
        "at": {f: mean_std([s["at"].get(f) for s in summaries])
               for f in fractions}}
  return result


def _format_mean_std(metric: Metric, stats) -> str:
  mean, std, n = stats
  if mean is None:
    return "—"
  text = metric.format(mean)
  if std is not None:
    text += f" ± {std * metric.scale:.{metric.digits}f}"
  return text if n > 1 else text + " (n=1)"


def _format_seconds(seconds: float | None) -> str:
  if seconds is None:
    return "—"
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def markdown_table(header: Sequence[str],
                   rows: Sequence[Sequence[str]]) -> list[str]:
  """The lines of a GitHub-flavoured markdown table."""
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def render_markdown(*, title: str, metric: Metric,
                    runs: Sequence[Mapping[str, Any]],
                    fractions: Sequence[float] = DEFAULT_FRACTIONS,
                    command: str | None = None,
                    report_command: str | None = None,
                    total_steps: int | None = None,
                    notes: Sequence[str] = ()) -> str:
  """`results.md` from per-run summaries.

  Args:
    title: the heading, e.g. 'default vs mimetic on configs/cifar10.py:cpu'.
    metric: what the tables show.
    runs: dicts with `init`, `seed`, `summary` (from `summarize_run`), and
      optionally `wall_seconds` and `status` (a word or two).
    fractions: columns of budget fractions.
    command: the command that trained the runs.
    report_command: the command that rebuilt this report, if different.
    total_steps: the budget, stated with the fraction columns' meaning.
    notes: extra lines for the end of the header.
  """
  per_init = summarize_inits(runs, fractions)
  lines = [f"# Comparison: {title}", ""]
  if command:
    lines += ["Produced by:", "", "```", command, "```", ""]
  if report_command and report_command != command:
    lines += ["Report rebuilt by:", "", "```", report_command, "```", ""]
  lines += [
      f"Metric: **{metric.label}**, {metric.direction}. *Final* is the last "
      "eval (end of training); *best* is the best eval at any point (picked "
      "with hindsight, so optimistic). Values are mean ± sample standard "
      "deviation (n − 1) over seeds. *At p %* is the eval record nearest to "
      "p % of the step budget" + (f" ({total_steps} steps)" if total_steps
                                  else "") + "; the column header gives the "
      "step of that record, which with sparse evals can be far from p %.", ""]
  lines += list(notes) + ([""] if notes else [])

  def fraction_header(f):
    used = sorted({r["summary"]["at_step"].get(f) for r in runs} - {None})
    head = f"at {f * 100:g} %"
    if len(used) == 1:
      return f"{head} (step {used[0]})"
    return f"{head} (steps {used[0]}–{used[-1]})" if used else head

  baseline = next(iter(per_init), None)
  header = (["init", "seeds", "final", "best"]
            + [fraction_header(f) for f in fractions]
            + [f"final − {baseline}" if baseline else "Δ"])
  rows = []
  for init, stats in per_init.items():
    delta = "—"
    base_mean, own_mean = per_init[baseline]["final"][0], stats["final"][0]
    if init != baseline and base_mean is not None and own_mean is not None:
      delta = f"{(own_mean - base_mean) * metric.scale:+.{metric.digits}f}"
    seeds = ",".join(str(s) for s in stats["seeds"])
    if stats["finished"] < len(stats["seeds"]):
      seeds += f" ({stats['finished']} finished)"
    rows.append([init, seeds, _format_mean_std(metric, stats["final"]),
                 _format_mean_std(metric, stats["best"])]
                + [_format_mean_std(metric, stats["at"][f]) for f in fractions]
                + [delta])
  lines += ["## Per init", ""] + markdown_table(header, rows) + [""]

  header = ["run", "init", "seed", "final", "best (step)", "steps", "epochs",
            "wall time", "status"]
  rows = []
  for run in runs:
    s = run["summary"]
    steps = "—" if s["step"] is None else str(s["step"])
    if s["total_steps"]:
      steps += f" / {s['total_steps']}"
    epoch = s["epoch"]
    rows.append([
        run_name(run["init"], run["seed"]), run["init"], str(run["seed"]),
        metric.format(s["final"]),
        "—" if s["best"] is None else
        f"{metric.format(s['best'])} ({s['best_step']})",
        steps, "—" if epoch is None or not math.isfinite(epoch)
        else f"{epoch:.2f}", _format_seconds(run.get("wall_seconds")),
        run.get("status") or ("finished" if s["finished"] else "incomplete")])
  lines += ["## Per run", ""] + markdown_table(header, rows) + [""]
  lines += [f"![{metric.label} against epoch]({metric.plot_file})", ""]
  return "\n".join(lines)


# ----------------------------------------------------------------------------
# Reading run workdirs.


def read_jsonl(path: os.PathLike[str] | str) -> list[dict[str, Any]]:
  """Records of a `metrics.jsonl`; [] if absent. A torn last line (from a
  killed run) is skipped."""
  records = []
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if not line:
          continue
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  except FileNotFoundError:
    pass
  return records


def _read_json(path: pathlib.Path) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None


@dataclasses.dataclass
class RunDir:
  """What is on disk for one run."""
  path: pathlib.Path
  init: str
  seed: int
  config: dict[str, Any] | None  # config.json, None if never started.
  final: dict[str, Any] | None  # final_metrics.json, None if unfinished.
  wall_seconds: float | None

  @property
  def name(self) -> str:
    return run_name(self.init, self.seed)

  def records(self) -> list[dict[str, Any]]:
    return read_jsonl(self.path / "metrics.jsonl")


def load_run_dir(path: pathlib.Path, init: str, seed: int) -> RunDir:
  wall = _read_json(path / WALL_TIME_FILE)
  return RunDir(path=path, init=init, seed=seed,
                config=_read_json(path / "config.json"),
                final=_read_json(path / "final_metrics.json"),
                wall_seconds=wall.get("wall_seconds") if wall else None)


def find_run_dirs(workdir: pathlib.Path) -> list[RunDir]:
  """Every `<init>_seed<seed>` folder with a `config.json` in `workdir`."""
  runs = []
  if workdir.is_dir():
    for child in sorted(workdir.iterdir()):
      match = RUN_DIR_PATTERN.match(child.name)
      if match and child.is_dir() and (child / "config.json").exists():
        runs.append(load_run_dir(child, match["init"], int(match["seed"])))
  return runs


def check_consistent(runs: Sequence[RunDir],
                     wanted: Mapping[str, Any] | None, workdir: pathlib.Path
                     ) -> None:
  """Refuses a `workdir` whose runs differ from `wanted` (or each other).

  Raises:
    CompareError: naming the run, the keys that differ and the fix.
  """
  started = [r for r in runs if r.config is not None]
  for run in started:
    recorded = {k: run.config.get(k) for k in PER_RUN_KEYS}
    if recorded != {"init": run.init, "seed": run.seed}:
      raise CompareError(
          f"{run.path} was trained with init={recorded['init']!r}, "
          f"seed={recorded['seed']!r}, which its name does not say. Move it "
          f"out of {workdir}, or use a new --workdir.")
  if wanted is not None:
    reference, reference_name, label = wanted, "this command", "wanted"
  elif started:
    reference, reference_name = started[0].config, str(started[0].path)
    label = started[0].path.name
  for run in started:
    diffs = config_differences(run.config, reference)
    if diffs:
      raise CompareError(
          f"{run.path} was made with a different config than "
          f"{reference_name}:\n"
          + format_differences(diffs, (run.path.name, label))
          + f"\nThe runs in one comparison must share every setting but init "
          f"and seed. Use a new --workdir for these settings (or rerun with "
          f"the settings {run.path.name} was made with, or delete "
          f"{run.path} to retrain it).")


def _runs_for_report(runs: Sequence[RunDir],
                     fractions: Sequence[float],
                     status: Mapping[str, str] | None = None
                     ) -> tuple[Metric | None, list[dict[str, Any]],
                                dict[str, list[dict[str, float]]],
                                int | None]:
  """(metric, run dicts for `render_markdown`, curves by name, budget)."""
  started = [r for r in runs if r.config is not None]
  if not started:
    return None, [], {}, None
  metric = metric_for_task(started[0].config.get("task", "image"))
  rows, curves, budgets = [], {}, []
  for run in runs:
    records = run.records()
    curve = eval_curve(records, metric.key)
    total = budget_steps(run.config or {}, curve,
                         (run.final or {}).get("step"))
    budgets.append(total)
    summary = summarize_run(records, metric, total_steps=total,
                            finished=run.final is not None,
                            fractions=fractions)
    rows.append({"init": run.init, "seed": run.seed, "summary": summary,
                 "wall_seconds": run.wall_seconds,
                 "status": (status or {}).get(run.name)})
    curves[run.name] = curve
  known = [b for b in budgets if b]
  budget = known[0] if known and len(set(known)) == 1 else None
  return metric, rows, curves, budget


def plot_curves(curves: Mapping[str, Sequence[Mapping[str, float]]],
                runs: Sequence[Mapping[str, Any]], metric: Metric,
                path: pathlib.Path, title: str) -> None:
  """Eval metric against epoch: one colour per init, one line style per
  seed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  inits = list(dict.fromkeys(r["init"] for r in runs))
  seeds = list(dict.fromkeys(r["seed"] for r in runs))
  colours = plt.get_cmap("tab10")
  styles = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for run in runs:
    name = run_name(run["init"], run["seed"])
    curve = curves.get(name) or []
    if not curve:
      continue
    xs = [p["epoch"] if math.isfinite(p["epoch"]) else p["step"]
          for p in curve]
    ys = [p["value"] * metric.scale for p in curve]
    ax.plot(xs, ys, color=colours(inits.index(run["init"]) % 10),
            linestyle=styles[seeds.index(run["seed"]) % len(styles)],
            marker="o", markersize=2.5, linewidth=1.4,
            label=f"{run['init']} seed {run['seed']}")
  ax.set_xlabel("epoch")
  ax.set_ylabel(f"{metric.label} ({metric.direction})")
  ax.set_title(title, fontsize=10)
  ax.grid(True, alpha=0.3)
  if ax.lines:
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_report(workdir: pathlib.Path, runs: Sequence[RunDir], *,
                 title: str, fractions: Sequence[float],
                 command: str | None, report_command: str | None,
                 status: Mapping[str, str] | None = None
                 ) -> tuple[pathlib.Path, pathlib.Path] | None:
  """Writes `results.md` and the plot; returns their paths (None if no run
  has started)."""
  metric, rows, curves, budget = _runs_for_report(runs, fractions, status)
  if metric is None:
    return None
  notes = []
  if any(not r["summary"]["finished"] for r in rows):
    notes.append("Some runs are not finished: rerun the comparison command "
                 "to finish them; their numbers are so far.")
  markdown = render_markdown(title=title, metric=metric, runs=rows,
                             fractions=fractions, command=command,
                             report_command=report_command,
                             total_steps=budget, notes=notes)
  results = workdir / "results.md"
  results.write_text(markdown, encoding="utf-8")
  plot = workdir / metric.plot_file
  plot_curves(curves, rows, metric, plot, title)
  return results, plot


# ----------------------------------------------------------------------------
# Running.


class _Forwarder:
  """Passes SIGINT / SIGTERM on to the running trainer (its own process
  group, so a terminal's Ctrl-C reaches it only through us, exactly once
  per press)."""

  def __init__(self):
    self.process: subprocess.Popen | None = None
    self.received: str | None = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name
    if self.process is not None and self.process.poll() is None:
      self.process.send_signal(signum)
    else:
      raise KeyboardInterrupt

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def _add_wall_time(run_dir: pathlib.Path, seconds: float) -> None:
  path = run_dir / WALL_TIME_FILE
  previous = _read_json(path) or {}
  data = {"wall_seconds": previous.get("wall_seconds", 0.0) + seconds,
          "attempts": previous.get("attempts", 0) + 1}
  path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def train_run(command: Sequence[str], name: str, run_dir: pathlib.Path,
              forwarder: _Forwarder) -> int:
  """Runs one trainer process, streaming its output prefixed with [name];
  returns its exit code."""
  run_dir.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  prefix = f"[{name}] "
  start = time.perf_counter()
  process = subprocess.Popen(
      command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      errors="replace", env=env, process_group=0)
  forwarder.process = process
  try:
    for line in process.stdout:
      line = line.rstrip()
      if line:
        print(prefix + line, flush=True)
    return process.wait()
  finally:
    if process.poll() is None:  # We are being torn down: do not orphan it.
      process.kill()
      process.wait()
    forwarder.process = None
    _add_wall_time(run_dir, time.perf_counter() - start)


def _command_line(argv: Sequence[str]) -> str:
  return shlex.join(["python", "-m", "mimetic_jax.compare", *argv[1:]])


def compare(*, config, config_arg: str | None, overrides: Sequence[str],
            inits: Sequence[str] | None, seeds: Sequence[int] | None,
            workdir: pathlib.Path, fractions: Sequence[float],
            report_only: bool, argv: Sequence[str]) -> int:
  """The whole command; returns the exit code."""
  command = _command_line(argv)
  saved = _read_json(workdir / COMMAND_FILE) or {}
  wanted = (json.loads(config.to_json_best_effort()) if config is not None
            else None)
  existing = find_run_dirs(workdir)
  check_consistent(existing, wanted, workdir)

  if report_only:
    runs = [r for r in existing
            if (inits is None or r.init in inits)
            and (seeds is None or r.seed in seeds)]
    if not runs:
      raise CompareError(f"No runs to report in {workdir} (looked for "
                         "<init>_seed<seed>/config.json).")
    # The order of the command's --inits (the first is the baseline).
    order = list(inits or saved.get("inits") or [])
    order += sorted({r.init for r in runs} - set(order))
    runs.sort(key=lambda r: (order.index(r.init), r.seed))
    title = saved.get("title") or " vs ".join(dict.fromkeys(r.init
                                                            for r in runs))
    paths = write_report(workdir, runs, title=title, fractions=fractions,
                         command=saved.get("command"), report_command=command)
    print(f"Wrote {paths[0]} and {paths[1]}.", flush=True)
    return 0

  workdir.mkdir(parents=True, exist_ok=True)
  title = f"{' vs '.join(inits)} on {config_arg}"
  (workdir / COMMAND_FILE).write_text(json.dumps(
      {"command": command, "title": title, "config": config_arg,
       "overrides": list(overrides), "inits": list(inits),
       "seeds": list(seeds)}, indent=2), encoding="utf-8")
  pairs = [(init, seed) for init in inits for seed in seeds]
  status = {}
  print(f"Comparing {len(pairs)} runs in {workdir}: "
        + ", ".join(run_name(*p) for p in pairs), flush=True)
  with _Forwarder() as forwarder:
    for index, (init, seed) in enumerate(pairs, 1):
      name = run_name(init, seed)
      run_dir = workdir / name
      run = load_run_dir(run_dir, init, seed)
      tag = f"[{name}] ({index}/{len(pairs)})"
      if run.final is not None and run.config is not None:
        status[name] = "finished"
        print(f"{tag} done, skipping (final_metrics.json at step "
              f"{run.final.get('step')}).", flush=True)
        continue
      resuming = (run_dir / "checkpoints").is_dir()
      print(f"{tag} {'resuming in' if resuming else 'training in'} "
            f"{run_dir}", flush=True)
      code = train_run(
          [sys.executable, str(MAIN_PY), "--config", config_arg, *overrides,
           f"--config.init={init}", f"--config.seed={seed}",
           f"--workdir={run_dir}"], name, run_dir, forwarder)
      if forwarder.received:
        print(f"{tag} stopped by {forwarder.received} (exit code {code}); "
              "rerun the same command to resume.", flush=True)
        return 130 if forwarder.received == "SIGINT" else 143
      if code == 0 and (run_dir / "final_metrics.json").exists():
        status[name] = "finished"
        print(f"{tag} finished.", flush=True)
      else:
        status[name] = f"failed (exit {code})"
        print(f"{tag} FAILED with exit code {code}; see its output above. "
              "Continuing with the other runs; rerun the same command to "
              "retry it (it resumes from its last checkpoint).", flush=True)

  runs = [load_run_dir(workdir / run_name(i, s), i, s) for i, s in pairs]
  paths = write_report(workdir, runs, title=title, fractions=fractions,
                       command=command, report_command=None, status=status)
  if paths:
    print(f"Wrote {paths[0]} and {paths[1]}.", flush=True)
  failed = [n for n, s in status.items() if s != "finished"]
  if failed:
    print(f"{len(failed)} run(s) failed: {', '.join(failed)}.", flush=True)
    return 1
  return 0


def _define_flags():
  """Flags are defined only when run as a program, so importing this module
  (tests, notebooks) never clashes with `main.py`'s flags."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "Config file with optional preset, as for main.py: "
      "configs/cifar10.py:cpu. Optional with --report_only.",
      lock_config=True)
  flags.DEFINE_string("seeds", "0,1", "Comma-separated seeds.")
  flags.DEFINE_string("inits", "default,mimetic",
                      "Comma-separated inits: default, mimetic, trunc_normal.")
  flags.DEFINE_string("workdir", None, "Comparison folder; each run trains in "
                      "<workdir>/<init>_seed<seed>/.")
  flags.DEFINE_bool("report_only", False, "Only rebuild results.md and the "
                    "plot from the runs in --workdir; train nothing.")
  flags.DEFINE_string("fractions", ",".join(f"{f:g}" for f in
                                            DEFAULT_FRACTIONS),
                      "Fractions of the step budget at which to report the "
                      "metric.")
  flags.mark_flags_as_required(["workdir"])


def main(argv: Sequence[str]) -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from mimetic_jax.models import INITS  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    config = f.config
    report_only = f.report_only
    inits = (parse_inits(f.inits, INITS)
             if f["inits"].present or not report_only else None)
    seeds = (parse_seeds(f.seeds)
             if f["seeds"].present or not report_only else None)
    fractions = parse_fractions(f.fractions)
    config_arg = overrides = None
    if config is None and not report_only:
      raise CompareError("--config is required (e.g. --config "
                         "configs/cifar10.py:cpu) unless --report_only.")
    if config is not None:
      config_arg = config_flags.get_config_filename(f["config"])
      overrides = config_overrides(
          sys.argv[1:], lambda key: isinstance(_lookup(config, key), bool))
      fixed = [k for k in overridden_keys(overrides) if k in PER_RUN_KEYS]
      if fixed:
        raise CompareError(
            f"--config.{fixed[0]} is set per run by the runner; use "
            f"--{fixed[0]}s instead.")
      if not MAIN_PY.exists():
        raise CompareError(f"Cannot find the trainer {MAIN_PY}; run the "
                           "comparison from a checkout of the repository.")
    code = compare(config=config, config_arg=config_arg,
                   overrides=overrides or [], inits=inits, seeds=seeds,
                   workdir=pathlib.Path(f.workdir), fractions=fractions,
                   report_only=report_only, argv=sys.argv)
  except CompareError as e:
    sys.exit(f"Error: {e}")
  except KeyboardInterrupt:  # Between runs: nothing is training to stop.
    print("Interrupted between runs; finished runs are kept. Rerun the same "
          "command to go on.", file=sys.stderr, flush=True)
    code = 130
  sys.exit(code)


def _lookup(config, key: str) -> Any:
  value = config
  for part in key.split("."):
    try:
      value = value[part]
    except (KeyError, TypeError):
      return None
  return value


if __name__ == "__main__":
  # Config files import `configs.*` from the repository root, as under
  # main.py (whose folder Python puts on the path).
  if str(MAIN_PY.parent) not in sys.path:
    sys.path.insert(0, str(MAIN_PY.parent))
  from absl import app as _app  # pylint: disable=g-import-not-at-top
  from mimetic_jax import cli  # pylint: disable=g-import-not-at-top
  _define_flags()
  _app.run(main, flags_parser=cli.parse_flags)
