r"""The paper's CIFAR-10 comparison within a fixed GPU time budget.

    python -m benchmarks.accelerator.paper_run --data DIR --out OUT \
        [--time_budget_s 480] [--config configs/cifar10.py] [--dry_run]

Started by `run.sh` (which installs the carried wheels first). Steps:

1. Probe: `main.py` with the paper's recipe for `--probe_steps` steps,
   to measure this machine's training throughput (img/s, compilation
   excluded) and the fixed cost of a run (start-up, data loading,
   compilation).
2. Choose the epochs: the most (up to the paper's 100) for which the default
   and mimetic runs, each with 5 evaluations on the whole test split, fit
   into `--time_budget_s` together. trunc_normal runs too when all three
   still fit at the paper's full 100 epochs.
3. Train them one after the other with `python -m mimetic_jax.compare`
   (seed 0, bfloat16 compute, warm-up 5 % of the run, as the paper's 5 of
   100 epochs), and after every run write into `--out`: `results.md` (the
   compare table, with epochs, img/s and hardware), `accuracy.png` and
   `runs.tar.gz` (each run's `metrics.jsonl`, `config.json`, ...). So a job
   cut off at its limit still leaves the runs finished so far.

`--dry_run` rehearses the same steps at toy scale on a CPU: the config's
`:smoke` model on at most 1,024 training images, a few steps.
"""

import argparse
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
TRAIN_EXAMPLES = 50_000  # CIFAR-10.
EVAL_EXAMPLES = 10_000
NUM_EVALS = 5
PAPER_EPOCHS = 100
# An eval image costs about a third of a training image (forward only, no
# augmentation); budget half, to be safe.
EVAL_COST = 0.5
# A compared run costs more than the probe's fixed cost (the compare
# process, checkpoints, the report after it): measured in the CPU rehearsal,
# 67 s for an estimated 45 s. Budget the fixed cost this many times, plus:
OVERHEAD_FACTOR, OVERHEAD_EXTRA_S = 1.5, 10.0
RUN_FILES = (
  "metrics.jsonl",
  "config.json",
  "final_metrics.json",
  "compare_wall_time.json",
)


def log(message: str) -> None:
  print(f"[paper_run {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run(command: list[str], *, check: bool = True) -> tuple[int, str]:
  """Runs `command`, streaming its output; returns (exit status, output).
  With `check`, a failure ends this program with a one-line message."""
  log("$ " + " ".join(command))
  process = subprocess.Popen(
    command,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    cwd=REPO,
  )
  lines = []
  for line in process.stdout:
    print(line, end="", flush=True)
    lines.append(line)
  if process.wait() and check:
    sys.exit(
      f"Error: {' '.join(command[:4])} ... failed with exit status "
      f"{process.returncode}; its output is above."
    )
  return process.returncode, "".join(lines)


def _records(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line]


def steady_throughput(records: list[dict]) -> float:
  """Median img/s over the train records after the first (which includes
  the first step's wait for compilation)."""
  rates = [r["items_per_second"] for r in records if "items_per_second" in r]
  if len(rates) < 2:
    sys.exit(
      "Error: the probe logged fewer than two throughput records; "
      "raise --probe_steps."
    )
  return statistics.median(rates[1:])


def choose_epochs(
  *,
  budget_s: float,
  num_runs: int,
  img_per_s: float,
  overhead_s: float,
  max_epochs: float,
) -> float:
  """The most epochs (at most `max_epochs`, at least 1) for which `num_runs`
  runs fit into `budget_s`, each costing `overhead_s` plus its training and
  `NUM_EVALS` evaluations at `img_per_s`."""
  eval_s = NUM_EVALS * EVAL_EXAMPLES * EVAL_COST / img_per_s
  train_s = budget_s / num_runs - overhead_s - eval_s
  return max(
    1.0, min(max_epochs, math.floor(train_s * img_per_s / TRAIN_EXAMPLES))
  )


def hardware(probe_output: str) -> str:
  """'1 x NVIDIA H200' from the trainer's "... steps on N x KIND." line."""
  match = re.search(r"steps on (\d+ x .+?)\.\s*$", probe_output, re.M)
  return match.group(1) if match else "unknown"


def _archive_runs(
  compare_dir: pathlib.Path, probe_dir: pathlib.Path, out: pathlib.Path
) -> None:
  with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
    for run_dir in sorted([probe_dir, *compare_dir.iterdir()]):
      for name in RUN_FILES:
        if (run_dir / name).exists():
          tar.add(run_dir / name, arcname=f"{run_dir.name}/{name}")


def _publish(
  compare_dir: pathlib.Path,
  probe_dir: pathlib.Path,
  out: pathlib.Path,
  header: list[str],
) -> None:
  """Rebuilds the compare report and copies it, the plot and the runs."""
  _run(
    [
      sys.executable,
      "-m",
      "mimetic_jax.compare",
      "--workdir",
      str(compare_dir),
      "--report_only",
    ]
  )
  report = (compare_dir / "results.md").read_text()
  (out / "results.md").write_text("\n".join(header) + "\n\n" + report)
  if (compare_dir / "accuracy.png").exists():
    shutil.copy(compare_dir / "accuracy.png", out / "accuracy.png")
  _archive_runs(compare_dir, probe_dir, out)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--data",
    required=True,
    type=pathlib.Path,
    help="Prepared CIFAR-10 (the folder with dataset_info.json).",
  )
  parser.add_argument("--out", required=True, type=pathlib.Path)
  parser.add_argument(
    "--work",
    type=pathlib.Path,
    default=None,
    help="Workdirs; default: OUT/../paper_run_work.",
  )
  parser.add_argument("--config", default="configs/cifar10.py")
  parser.add_argument("--time_budget_s", type=float, default=480.0)
  parser.add_argument("--probe_steps", type=int, default=60)
  parser.add_argument(
    "--dry_run",
    action="store_true",
    help="Toy scale on a CPU: the :smoke preset, float32.",
  )
  args = parser.parse_args()

  start = time.perf_counter()
  out = args.out
  out.mkdir(parents=True, exist_ok=True)
  work = args.work or out.parent / "paper_run_work"
  work.mkdir(parents=True, exist_ok=True)
  # The runs differ only in their params' values, so they share compiled steps.
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(work / "jax_cache"))

  config = args.config + (":smoke" if args.dry_run else "")
  common = [f"--config.dataset.path={args.data.resolve()}"]
  if not args.dry_run:
    common += ["--config.model.dtype=bfloat16"]
  probe_steps = 6 if args.dry_run else args.probe_steps
  log_every = max(1, probe_steps // 3)

  # 1. Probe; if the default attention (cuDNN where JAX supports it) fails
  # on this GPU, the whole comparison uses XLA's attention instead.
  probe_dir = work / "probe"

  def probe():
    shutil.rmtree(probe_dir, ignore_errors=True)
    return _run(
      [
        sys.executable,
        "main.py",
        "--config",
        config,
        *common,
        "--config.init=default",
        "--config.seed=0",
        f"--config.total_steps={probe_steps}",
        f"--config.log_every_steps={log_every}",
        "--config.eval_every_epochs=1e9",
        "--config.checkpoint_every_steps=0",
        "--config.attention_stats=False",
        "--workdir",
        str(probe_dir),
      ],
      check=False,
    )

  tic = time.perf_counter()
  status, probe_output = probe()
  if status:
    log("The probe failed; trying again with --config.model.attention=xla.")
    common.append("--config.model.attention=xla")
    tic = time.perf_counter()
    status, probe_output = probe()
    if status:
      sys.exit(
        "Error: the probe failed with both attention implementations; "
        "its output is above."
      )
  probe_wall = time.perf_counter() - tic
  img_per_s = steady_throughput(_records(probe_dir))
  batch_size = json.loads((probe_dir / "config.json").read_text())["batch_size"]
  eval_s = EVAL_EXAMPLES * EVAL_COST / img_per_s  # The probe's one eval.
  overhead = max(
    0.0, probe_wall - probe_steps * batch_size / img_per_s - eval_s
  )
  device = hardware(probe_output)
  log(
    f"Probe: {img_per_s:.0f} img/s on {device}; fixed cost per run "
    f"{overhead:.0f}s (start-up, data, compilation)."
  )

  # 2. Epochs.
  budget = args.time_budget_s - (time.perf_counter() - start)
  max_epochs = 2 if args.dry_run else PAPER_EPOCHS
  fit = lambda n: choose_epochs(
    budget_s=budget,
    num_runs=n,
    img_per_s=img_per_s,
    overhead_s=OVERHEAD_FACTOR * overhead + OVERHEAD_EXTRA_S,
    max_epochs=max_epochs,
  )
  inits = ["default", "mimetic"]
  if fit(3) >= max_epochs:
    inits.append("trunc_normal")
  epochs = fit(len(inits))
  log(
    f"Plan: {', '.join(inits)} for {epochs:g} epochs each "
    f"({budget:.0f}s of budget left)."
  )

  # 3. Runs.
  compare_dir = work / "compare"
  header = [
    "# The paper's CIFAR-10 comparison on a GPU"
    + (" (DRY RUN: toy scale on a CPU)" if args.dry_run else ""),
    "",
    f"- Date: {time.strftime('%Y-%m-%d')}; hardware: {device}.",
    f"- Recipe: `{config}`"
    + (
      " (the tiny smoke model on 1,024 images; float32)"
      if args.dry_run
      else " (ViT-Ti/2, class token, RandAugment + Cutout, batch 512, "
      "AdamW 3e-3, wd 0.01, warm-up + cosine; bfloat16 compute, float32 "
      "params and optimizer state)"
    )
    + f"; seed 0; **{epochs:g} epochs** "
    f"(paper: {PAPER_EPOCHS}), chosen to fit a {args.time_budget_s:.0f}s "
    f"budget; evaluated every {epochs / NUM_EVALS:g} epochs on the whole "
    "test split" + (" (the smoke subset)" if args.dry_run else "") + ".",
    f"- Throughput measured by a {probe_steps}-step probe: "
    f"**{img_per_s:.0f} img/s** (compilation excluded).",
    "- Attention: "
    + (
      "XLA (`--config.model.attention=xla`: the probe "
      "failed with JAX's default choice)"
      if "--config.model.attention=xla" in common
      else "`jax.nn.dot_product_attention`, implementation "
      "chosen by JAX (cuDNN where it applies)"
    )
    + ".",
    "- Runs trained one after the other, not concurrently, each by the "
    "command below with its own `--inits=`.",
  ]
  for init in inits:
    _run(
      [
        sys.executable,
        "-m",
        "mimetic_jax.compare",
        "--config",
        config,
        *common,
        f"--config.num_epochs={epochs}",
        "--config.total_steps=0",
        f"--config.warmup_epochs={0.05 * epochs:g}",
        f"--config.eval_every_epochs={epochs / NUM_EVALS:g}",
        "--seeds=0",
        f"--inits={init}",
        "--workdir",
        str(compare_dir),
      ]
    )
    _publish(compare_dir, probe_dir, out, header)
    log(
      f"{init} done; results so far in {out} "
      f"({time.perf_counter() - start:.0f}s elapsed)."
    )


if __name__ == "__main__":
  main()
