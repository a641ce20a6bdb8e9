"""A comparison's report: `results.md` (tables) and the plot of its curves.

`render_markdown` is a pure function of per-run summaries; `write_report`
reads the run folders, summarises them and writes both files into the
comparison folder (the plot under the metric's `plot_file` name).
"""

from collections.abc import Mapping, Sequence
import math
import pathlib
from typing import Any

from mimetic_jax.compare import summary, workdirs
from mimetic_jax.metric_logging import format_duration


def markdown_table(
  header: Sequence[str], rows: Sequence[Sequence[str]]
) -> list[str]:
  """The lines of a GitHub-flavoured markdown table."""
  lines = [
    "| " + " | ".join(header) + " |",
    "|" + "|".join("---" for _ in header) + "|",
  ]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def _format_mean_std(
  metric: summary.Metric, stats: tuple[float | None, float | None, int]
) -> str:
  mean, std, n = stats
  if mean is None:
    return "—"
  text = metric.format(mean)
  if std is not None:
    text += f" ± {std * metric.scale:.{metric.digits}f}"
  return text if n > 1 else text + " (n=1)"


def render_markdown(
  *,
  title: str,
  metric: summary.Metric,
  runs: Sequence[Mapping[str, Any]],
  fractions: Sequence[float] = summary.DEFAULT_FRACTIONS,
  command: str | None = None,
  report_command: str | None = None,
  total_steps: int | None = None,
  notes: Sequence[str] = (),
) -> str:
  """`results.md` from per-run summaries.

  Args:
    title: the heading, e.g. 'default vs mimetic on configs/cifar10.py:cpu'.
    metric: what the tables show.
    runs: dicts with `init`, `seed`, `summary` (from `summarize_run`), and
      optionally `wall_seconds` and `status` (a word or two). The first
      init is the baseline of the difference column.
    fractions: columns of budget fractions.
    command: the command that trained the runs.
    report_command: the command that rebuilt this report, if different.
    total_steps: the budget, stated with the fraction columns' meaning.
    notes: extra lines for the end of the header.
  """
  per_init = summary.summarize_inits(runs, fractions)
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
    "p % of the step budget"
    + (f" ({total_steps} steps)" if total_steps else "")
    + "; the column header gives the "
    "step of that record, which with sparse evals can be far from p %.",
    "",
  ]
  lines += list(notes) + ([""] if notes else [])

  def fraction_header(f):
    used = sorted({r["summary"]["at_step"].get(f) for r in runs} - {None})
    head = f"at {f * 100:g} %"
    if len(used) == 1:
      return f"{head} (step {used[0]})"
    return f"{head} (steps {used[0]}–{used[-1]})" if used else head

  baseline = next(iter(per_init), None)
  header = (
    ["init", "seeds", "final", "best"]
    + [fraction_header(f) for f in fractions]
    + [f"final − {baseline}" if baseline else "Δ"]
  )
  rows = []
  for init, stats in per_init.items():
    delta = "—"
    base_mean, own_mean = per_init[baseline]["final"][0], stats["final"][0]
    if init != baseline and base_mean is not None and own_mean is not None:
      delta = f"{(own_mean - base_mean) * metric.scale:+.{metric.digits}f}"
    seeds = ",".join(str(s) for s in stats["seeds"])
    if stats["finished"] < len(stats["seeds"]):
      seeds += f" ({stats['finished']} finished)"
    rows.append(
      [
        init,
        seeds,
        _format_mean_std(metric, stats["final"]),
        _format_mean_std(metric, stats["best"]),
      ]
      + [_format_mean_std(metric, stats["at"][f]) for f in fractions]
      + [delta]
    )
  lines += ["## Per init", ""] + markdown_table(header, rows) + [""]

  header = [
    "run",
    "init",
    "seed",
    "final",
    "best (step)",
    "steps",
    "epochs",
    "wall time",
    "status",
  ]
  rows = []
  for run in runs:
    s = run["summary"]
    steps = "—" if s["step"] is None else str(s["step"])
    if s["total_steps"]:
      steps += f" / {s['total_steps']}"
    epoch, wall = s["epoch"], run.get("wall_seconds")
    rows.append(
      [
        workdirs.run_name(run["init"], run["seed"]),
        run["init"],
        str(run["seed"]),
        metric.format(s["final"]),
        "—"
        if s["best"] is None
        else f"{metric.format(s['best'])} ({s['best_step']})",
        steps,
        "—" if epoch is None or not math.isfinite(epoch) else f"{epoch:.2f}",
        "—" if wall is None else format_duration(wall),
        run.get("status") or ("finished" if s["finished"] else "incomplete"),
      ]
    )
  lines += ["## Per run", ""] + markdown_table(header, rows) + [""]
  lines += [f"![{metric.label} against epoch]({metric.plot_file})", ""]
  return "\n".join(lines)


def plot_curves(
  curves: Mapping[str, Sequence[Mapping[str, float]]],
  runs: Sequence[Mapping[str, Any]],
  metric: summary.Metric,
  path: pathlib.Path,
  title: str,
) -> None:
  """Eval metric against epoch (step where no epoch is recorded): one
  colour per init, one line style per seed."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  inits = list(dict.fromkeys(r["init"] for r in runs))
  seeds = list(dict.fromkeys(r["seed"] for r in runs))
  colours = plt.get_cmap("tab10")
  styles = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for run in runs:
    curve = curves.get(workdirs.run_name(run["init"], run["seed"])) or []
    if not curve:
      continue
    xs = [p["epoch"] if math.isfinite(p["epoch"]) else p["step"] for p in curve]
    ys = [p["value"] * metric.scale for p in curve]
    ax.plot(
      xs,
      ys,
      color=colours(inits.index(run["init"]) % 10),
      linestyle=styles[seeds.index(run["seed"]) % len(styles)],
      marker="o",
      markersize=2.5,
      linewidth=1.4,
      label=f"{run['init']} seed {run['seed']}",
    )
  ax.set_xlabel("epoch")
  ax.set_ylabel(f"{metric.label} ({metric.direction})")
  ax.set_title(title, fontsize=10)
  ax.grid(True, alpha=0.3)
  if ax.lines:
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _runs_for_report(
  runs: Sequence[workdirs.RunDir],
  fractions: Sequence[float],
  status: Mapping[str, str] | None = None,
) -> tuple[
  summary.Metric | None,
  list[dict[str, Any]],
  dict[str, list[dict[str, float]]],
  int | None,
]:
  """(metric, run dicts for `render_markdown`, curves by name, budget).

  The metric follows the first started run's task; the budget is the one
  step budget all runs agree on, else None.
  """
  started = [r for r in runs if r.config is not None]
  if not started:
    return None, [], {}, None
  metric = summary.metric_for_task(started[0].config.get("task", "image"))
  rows, curves, budgets = [], {}, []
  for run in runs:
    records = run.records()
    curve = summary.eval_curve(records, metric.key)
    total = summary.budget_steps(
      run.config or {}, curve, (run.final or {}).get("step"), records
    )
    budgets.append(total)
    run_summary = summary.summarize_run(
      records,
      metric,
      total_steps=total,
      finished=run.final is not None,
      fractions=fractions,
    )
    rows.append(
      {
        "init": run.init,
        "seed": run.seed,
        "summary": run_summary,
        "wall_seconds": run.wall_seconds,
        "status": (status or {}).get(run.name),
      }
    )
    curves[run.name] = curve
  known = [b for b in budgets if b]
  budget = known[0] if known and len(set(known)) == 1 else None
  return metric, rows, curves, budget


def write_report(
  workdir: pathlib.Path,
  runs: Sequence[workdirs.RunDir],
  *,
  title: str,
  fractions: Sequence[float],
  command: str | None,
  report_command: str | None,
  status: Mapping[str, str] | None = None,
) -> tuple[pathlib.Path, pathlib.Path] | None:
  """Writes `results.md` and the plot; returns their paths (None, writing
  nothing, if no run has started).

  `status` maps run names to what this command's attempt did ('finished',
  'failed (exit 1)'); runs without one show finished or incomplete.
  """
  metric, rows, curves, budget = _runs_for_report(runs, fractions, status)
  if metric is None:
    return None
  notes = []
  if any(not r["summary"]["finished"] for r in rows):
    notes.append(
      "Some runs are not finished: rerun the comparison command "
      "to finish them; their numbers are so far."
    )
  markdown = render_markdown(
    title=title,
    metric=metric,
    runs=rows,
    fractions=fractions,
    command=command,
    report_command=report_command,
    total_steps=budget,
    notes=notes,
  )
  results = workdir / "results.md"
  results.write_text(markdown, encoding="utf-8")
  plot = workdir / metric.plot_file
  plot_curves(curves, rows, metric, plot, title)
  return results, plot
