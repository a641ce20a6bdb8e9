r"""Same-batch cross-check: the project's ViT against timm's, on identical data.

    python -m benchmarks.crosscheck --config configs/cifar10.py:cpu \
        --seeds 0,1 --workdir DIR [--runs NAME,...] [--config.KEY=VALUE ...]
    python -m benchmarks.crosscheck --config ... --workdir DIR --report_only

For each seed, every training batch is drawn once with the project's own
augmentation, then each run trains on exactly those arrays in the same order
with the same AdamW settings, schedule and loss:

* `project_default`, `project_trunc_normal`, `project_mimetic`: the project's
  ViT, init and compiled train step (`project_side`);
* `timm_default`, `timm_mimetic`: timm's `VisionTransformer` of the same
  architecture, with timm's init or with mimetic init written from the
  paper's formulas in PyTorch (`timm_side`).

Each run is evaluated once at the end on the **full** eval split (the
preset's `dataset.max_eval_examples` is ignored unless given as an
override), and records the gradient norm of each parameter group (QK, VO,
MLP per layer; patch embedding; head) for the first `--grad_norm_steps`
steps. `DIR/results.md` has the table, `DIR/*.png` the training losses and
gradient norms, `DIR/<run>_seed<seed>.json` each run's record.

Known difference between the two ViTs: the project's GELU is the tanh
approximation (Flax's default), timm's the exact erf (tests/test_reference.py
shows the architectures are otherwise the same to 1e-4 when the GELU is
matched). Resuming: rerun the same command; finished runs are skipped, and a
`DIR` made with another config is refused. Needs the `reference` extra
(torch, timm).
"""

from collections.abc import Sequence
import json
import pathlib
import shlex
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from benchmarks.crosscheck import report
from mimetic_jax import cli
from mimetic_jax.compare import options, workdirs
from mimetic_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Image config with optional preset, as for main.py: configs/cifar10.py:cpu.",
  lock_config=False,
)
_SEEDS = flags.DEFINE_string("seeds", "0,1", "Comma-separated seeds.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_RUNS = flags.DEFINE_string(
  "runs",
  ",".join(report.RUNS),
  f"Comma-separated subset of {list(report.RUNS)}.",
)
_GRAD_NORM_STEPS = flags.DEFINE_integer(
  "grad_norm_steps",
  100,
  "Record per-group gradient norms for this many first steps.",
)
_REPORT_ONLY = flags.DEFINE_bool(
  "report_only", False, "Only rebuild results.md and the plots from DIR."
)
flags.mark_flags_as_required(["config", "workdir"])


def _check_config(config, runs: Sequence[str]) -> None:
  problems = []
  if config.task != "image":
    problems.append(
      f"task={config.task!r}: the cross-check is for the ViT "
      "(use an image config such as configs/cifar10.py:cpu)"
    )
  if not config.dataset.in_memory:
    problems.append(
      "dataset.in_memory=False: the batches are drawn from an "
      "in-memory training split"
    )
  if config.model.dropout:
    problems.append(
      f"model.dropout={config.model.dropout}: dropout draws "
      "different masks in each framework; set it to 0"
    )
  if config.model.posemb != "sincos2d" and any(
    r.startswith("timm") for r in runs
  ):
    problems.append(
      f"model.posemb={config.model.posemb!r}: the timm port "
      "has the fixed 2-D sin-cos embedding only"
    )
  if config.mimetic.distribution != "normal" and "timm_mimetic" in runs:
    problems.append("mimetic.distribution must be 'normal' for timm_mimetic")
  if problems:
    raise UserError("; ".join(problems) + ".")


def _seed_records(workdir: pathlib.Path) -> list[dict]:
  records = []
  for path in sorted(workdir.glob("*_seed*.json")):
    with open(path) as f:
      records.append(json.load(f))
  return records


def _run_seed(
  config,
  seed: int,
  runs: Sequence[str],
  workdir: pathlib.Path,
  grad_norm_steps: int,
) -> None:
  """Trains the unfinished runs of one seed (imports JAX and torch)."""
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks.crosscheck import project_side  # pylint: disable=g-import-not-at-top
  from mimetic_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from mimetic_jax import optim, tasks  # pylint: disable=g-import-not-at-top
  from mimetic_jax.models import factory  # pylint: disable=g-import-not-at-top

  todo = [r for r in runs if not (workdir / f"{r}_seed{seed}.json").exists()]
  if not todo:
    return
  task = tasks.get_task(config)
  data = data_lib.load(
    config, process_index=0, process_count=1, workdir=str(workdir)
  )
  steps_per_epoch = data.info.num_train // config.batch_size
  if not steps_per_epoch:
    raise UserError(
      f"{data.info.num_train} training examples do not fill one batch of "
      f"{config.batch_size}; lower --config.batch_size."
    )
  total_steps, _ = optim.step_budget(config, steps_per_epoch)
  tic = time.perf_counter()
  batches, labels = project_side.make_batches(
    task, data, seed=seed, total_steps=total_steps, batch_size=config.batch_size
  )
  eval_images, eval_labels = project_side.eval_inputs(task, data)
  print(
    f"seed {seed}: {total_steps} batches of {config.batch_size} drawn in "
    f"{time.perf_counter() - tic:.1f}s; {len(eval_labels)} eval images; "
    f"{jax.device_count()} x {jax.devices()[0].device_kind}.",
    flush=True,
  )
  for name in todo:
    log = lambda line, name=name: print(
      f"[{name} seed{seed}] {line}", flush=True
    )
    framework, init = name.split("_", 1)
    tic = time.perf_counter()
    model = factory.make_model(config, data.info)
    if framework == "project":
      record = project_side.run(
        task,
        model,
        init=init,
        seed=seed,
        batches=batches,
        labels=labels,
        eval_data=(eval_images, eval_labels),
        config=config,
        steps_per_epoch=steps_per_epoch,
        grad_norm_steps=grad_norm_steps,
        log=log,
      )
    else:
      from benchmarks.crosscheck import timm_side  # pylint: disable=g-import-not-at-top

      _, schedule = optim.make_optimizer(
        config, *optim.step_budget(config, steps_per_epoch)
      )
      record = timm_side.run(
        model,
        init=init,
        seed=seed,
        batches=batches,
        labels=labels,
        eval_data=(eval_images, eval_labels),
        config=config,
        learning_rates=[float(schedule(i)) for i in range(total_steps)],
        grad_norm_steps=grad_norm_steps,
        log=log,
      )
    record = {
      "run": name,
      "seed": seed,
      "num_eval": len(eval_labels),
      **record,
      "wall_seconds": time.perf_counter() - tic,
    }
    log(
      f"eval accuracy {record['eval_accuracy']:.4f}, eval loss "
      f"{record['eval_loss']:.4f} on {len(eval_labels)} images."
    )
    path = workdir / f"{name}_seed{seed}.json"
    path.with_suffix(".tmp").write_text(json.dumps(record))
    path.with_suffix(".tmp").replace(path)  # Whole records only.


def _write_report(
  workdir: pathlib.Path, meta: dict, grad_norm_steps: int
) -> None:
  records = _seed_records(workdir)
  if not records:
    print(f"No finished runs in {workdir} yet; no report.", flush=True)
    return
  overrides = " ".join(meta["overrides"]) or "none"
  text = report.render_markdown(
    records,
    title=meta["config_arg"],
    command=meta["command"],
    num_eval=records[0]["num_eval"],
    total_steps=len(records[0]["train_loss"]),
    grad_norm_steps=grad_norm_steps,
    notes=[f"Overrides on top of the config file: `{overrides}`."],
  )
  (workdir / "results.md").write_text(text)
  report.write_plots(records, workdir)
  print(
    f"Wrote {workdir / 'results.md'} and its plots ({len(records)} runs).",
    flush=True,
  )


def _parse_runs(text: str) -> list[str]:
  runs = [r for r in text.split(",") if r]
  unknown = [r for r in runs if r not in report.RUNS]
  if unknown or not runs:
    raise UserError(
      f"--runs={text!r}: use a comma-separated subset "
      f"of {', '.join(report.RUNS)}."
    )
  return runs


def _open_workdir(workdir: pathlib.Path, config, meta: dict) -> None:
  """Records the config in `DIR/crosscheck.json`, or refuses a `DIR` made
  with another one."""
  path = workdir / "crosscheck.json"
  if path.exists():
    recorded = json.loads(path.read_text())["config"]
    diffs = workdirs.config_differences(recorded, meta["config"], ignore=())
    if diffs:
      raise UserError(
        f"{workdir} holds a cross-check made with another config:\n"
        + workdirs.format_differences(diffs, ("recorded", "this command"))
        + "\nUse a new --workdir, or the recorded settings."
      )
    return
  workdir.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(meta, indent=2))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = pathlib.Path(_WORKDIR.value)
  config = _CONFIG.value
  seeds = options.parse_seeds(_SEEDS.value)
  runs = _parse_runs(_RUNS.value)
  overrides = options.override_args(flags.FLAGS, "config")
  if "dataset.max_eval_examples" not in config_flags.get_override_values(
    flags.FLAGS["config"]
  ):
    config.dataset.max_eval_examples = 0  # The full eval split.
  _check_config(config, runs)
  meta = {
    "config_arg": config_flags.get_config_filename(flags.FLAGS["config"]),
    "overrides": overrides,
    "command": "python -m benchmarks.crosscheck "
    + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    "config": json.loads(config.to_json_best_effort()),
  }
  _open_workdir(workdir, config, meta)
  meta = json.loads((workdir / "crosscheck.json").read_text())
  for seed in [] if _REPORT_ONLY.value else seeds:
    _run_seed(config, seed, runs, workdir, _GRAD_NORM_STEPS.value)
    _write_report(workdir, meta, _GRAD_NORM_STEPS.value)  # As runs land.
  if _REPORT_ONLY.value:
    _write_report(workdir, meta, _GRAD_NORM_STEPS.value)


if __name__ == "__main__":
  cli.run(main)
