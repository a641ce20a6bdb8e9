"""`results.md` and plots of a cross-check folder, from its run records.

A run record (`<run>_seed<seed>.json`) holds `run`, `seed`, `eval_accuracy`,
`eval_loss`, `train_loss` (per step), `grad_norms` (per step of the first
`grad_norm_steps`: `{group: norm}`, groups `qk/<layer>`, `vo/<layer>`,
`mlp/<layer>`, `patch_embedding`, `cls_token`, `norms`, `head`) and
`train_seconds`. Everything here is a pure function of those records except
the `write_*` functions.
"""

from collections.abc import Mapping, Sequence
import math
import pathlib
from typing import Any

import numpy as np

from mimetic_jax import compare
from mimetic_jax.metric_logging import format_duration

RUNS = {  # name -> what it is.
  "project_default": "project ViT (Flax), Flax default init",
  "project_trunc_normal": "project ViT (Flax), trunc_normal(0.02) kernels",
  "project_mimetic": "project ViT (Flax), project's mimetic init",
  "timm_default": "timm ViT (PyTorch), timm's init",
  "timm_mimetic": "timm ViT (PyTorch), mimetic from the paper's formulas",
}
# Gradient-norm groups summed over layers, in plot order.
GROUPS = (
  "total",
  "qk",
  "vo",
  "mlp",
  "patch_embedding",
  "cls_token",
  "head",
  "norms",
)


def group_total(norms: Mapping[str, float], group: str) -> float | None:
  """The norm of a group over all layers (`qk` = every `qk/<layer>`; `total`
  = every parameter); None if the model has no such group (e.g.
  `cls_token` with GAP)."""
  squares = [
    v * v for k, v in norms.items() if group in ("total", k.split("/")[0])
  ]
  return math.sqrt(sum(squares)) if squares else None


def _late_train_loss(record: Mapping[str, Any]) -> float:
  losses = record["train_loss"]
  return float(np.mean(losses[-max(1, len(losses) // 10) :]))


def _mean_std(
  values: Sequence[float], scale: float = 1.0, digits: int = 2
) -> str:
  mean, std, n = compare.mean_std(values)
  if mean is None:
    return "—"
  text = f"{mean * scale:.{digits}f}"
  return text + (
    f" ± {std * scale:.{digits}f}" if std is not None else " (n=1)"
  )


def _grad_cell(records: Sequence[Mapping[str, Any]], group: str) -> str:
  """Median over the recorded steps (and the max), mean over seeds."""
  medians, peaks = [], []
  for r in records:
    totals = [
      t
      for t in (group_total(n, group) for n in r["grad_norms"])
      if t is not None
    ]
    if totals:
      medians.append(float(np.median(totals)))
      peaks.append(max(totals))
  if not medians:
    return "—"
  return f"{np.mean(medians):.2f} ({np.mean(peaks):.2f})"


def render_markdown(
  records: Sequence[Mapping[str, Any]],
  *,
  title: str,
  command: str,
  num_eval: int,
  total_steps: int,
  grad_norm_steps: int,
  notes: Sequence[str] = (),
) -> str:
  """The report: one row per run kind (mean ± std over seeds), then per run."""
  by_run: dict[str, list[Mapping[str, Any]]] = {}
  for r in sorted(
    records, key=lambda r: (list(RUNS).index(r["run"]), r["seed"])
  ):
    by_run.setdefault(r["run"], []).append(r)
  lines = [
    f"# Same-batch cross-check: {title}",
    "",
    "Produced by:",
    "",
    "```",
    command,
    "```",
    "",
    f"Every run of a seed trains on the same {total_steps} augmented "
    "batches in the same order (drawn once with the project's "
    "augmentation), with the same AdamW, schedule and loss; the "
    f"eval is the full eval split ({num_eval} images) at the end. "
    "Accuracy and loss are mean ± sample std over seeds. Gradient "
    f"norms are over the first {grad_norm_steps} steps, summed over "
    "layers: median (max), mean over seeds.",
    "",
  ]
  lines += list(notes) + ([""] if notes else [])
  header = (
    [
      "run",
      "what",
      "seeds",
      "eval accuracy (%)",
      "eval loss",
      "train loss, last 10 %",
    ]
    + [f"‖∇{g}‖" for g in GROUPS]
    + ["train time / run"]
  )
  rows = []
  for name, group in by_run.items():
    rows.append(
      [
        name,
        RUNS[name],
        ",".join(str(r["seed"]) for r in group),
        _mean_std([r["eval_accuracy"] for r in group], 100.0),
        _mean_std([r["eval_loss"] for r in group], digits=3),
        _mean_std([_late_train_loss(r) for r in group], digits=3),
      ]
      + [_grad_cell(group, g) for g in GROUPS]
      + [format_duration(np.mean([r["train_seconds"] for r in group]))]
    )
  lines += compare.markdown_table(header, rows) + [""]
  header = [
    "run",
    "seed",
    "eval accuracy (%)",
    "eval loss",
    "train loss, last 10 %",
    "train time",
  ]
  rows = [
    [
      r["run"],
      str(r["seed"]),
      f"{r['eval_accuracy'] * 100:.2f}",
      f"{r['eval_loss']:.3f}",
      f"{_late_train_loss(r):.3f}",
      format_duration(r["train_seconds"]),
    ]
    for group in by_run.values()
    for r in group
  ]
  lines += ["## Per run", ""] + compare.markdown_table(header, rows) + [""]
  lines += [
    "![training loss](training_loss.png)",
    "",
    "![gradient norms](grad_norms.png)",
    "",
    "![QK gradient norms per layer](grad_norms_qk_layers.png)",
    "",
  ]
  return "\n".join(lines)


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _style(record: Mapping[str, Any], seeds: Sequence[int]):
  plt = _pyplot()
  return dict(
    color=plt.get_cmap("tab10")(list(RUNS).index(record["run"])),
    linestyle=("-", "--", ":", "-.")[seeds.index(record["seed"]) % 4],
    linewidth=1.2,
  )


def write_plots(
  records: Sequence[Mapping[str, Any]], folder: pathlib.Path
) -> None:
  """`training_loss.png`, `grad_norms.png`, `grad_norms_qk_layers.png`."""
  plt = _pyplot()
  seeds = sorted({r["seed"] for r in records})
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for r in records:
    losses = np.asarray(r["train_loss"])
    window = min(10, len(losses))
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(
      np.arange(window, len(losses) + 1),
      smooth,
      label=f"{r['run']} seed {r['seed']}",
      **_style(r, seeds),
    )
  ax.set(
    xlabel="step",
    ylabel=f"training loss ({window}-step mean)",
    title="Same batches, same optimizer",
  )
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(folder / "training_loss.png")
  plt.close(fig)

  fig, axes = plt.subplots(
    2, len(GROUPS) // 2, figsize=(10, 6.5), dpi=110, sharex=True
  )
  axes = axes.ravel()
  for ax, group in zip(axes, GROUPS):
    for r in records:
      totals = [group_total(n, group) for n in r["grad_norms"]]
      if None not in totals:
        ax.plot(
          totals, label=f"{r['run']} seed {r['seed']}", **_style(r, seeds)
        )
    ax.set(title=f"‖∇ {group}‖", xlabel="step", yscale="log")
    ax.grid(True, alpha=0.3)
  axes[0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(folder / "grad_norms.png")
  plt.close(fig)

  names = [n for n in RUNS if any(r["run"] == n for r in records)]
  fig, axes = plt.subplots(
    1,
    len(names),
    figsize=(3.2 * len(names), 3.6),
    dpi=110,
    sharey=True,
    squeeze=False,
  )
  for ax, name in zip(axes[0], names):
    for r in (r for r in records if r["run"] == name):
      layers = sorted(
        {k for n in r["grad_norms"] for k in n if k.startswith("qk/")},
        key=lambda k: int(k[3:]),
      )
      colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(layers)))
      for layer, colour in zip(layers, colours):
        ax.plot(
          [n[layer] for n in r["grad_norms"]],
          color=colour,
          linestyle=_style(r, seeds)["linestyle"],
          linewidth=1.0,
          label=f"layer {layer[3:]}" if r["seed"] == seeds[0] else None,
        )
    ax.set(title=name, xlabel="step", yscale="log")
    ax.grid(True, alpha=0.3)
  axes[0][0].set_ylabel("‖∇ W_q, W_k‖ per layer")
  axes[0][0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(folder / "grad_norms_qk_layers.png")
  plt.close(fig)
