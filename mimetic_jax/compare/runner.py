"""Training each (init, seed) run of a comparison as its own trainer process.

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
"""

from collections.abc import Sequence
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import ml_collections

from mimetic_jax import signals
from mimetic_jax.compare import report, workdirs
from mimetic_jax.errors import UserError

MAIN_PY = pathlib.Path(__file__).resolve().parents[2] / "main.py"


class Forwarder(signals.InterruptHandler):
  """Passes SIGINT / SIGTERM on to the running trainer `process`.

  The trainer runs in its own process group, so a terminal's Ctrl-C reaches
  it only through here, exactly once per press. `received` names the last
  signal; one that arrives while no trainer runs raises KeyboardInterrupt.
  """

  def __init__(self):
    super().__init__()
    self.process: subprocess.Popen | None = None

  def handle(self, sig: signal.Signals) -> None:
    self.received = sig.name
    if self.process is not None and self.process.poll() is None:
      self.process.send_signal(sig)
    else:
      raise KeyboardInterrupt


def train_run(
  command: Sequence[str], name: str, run_dir: pathlib.Path, forwarder: Forwarder
) -> int:
  """Runs one trainer process, streaming its output prefixed with [name];
  returns its exit code. Its wall time is added to `run_dir`'s."""
  run_dir.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  prefix = f"[{name}] "
  start = time.perf_counter()
  process = subprocess.Popen(
    command,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    errors="replace",
    env=env,
    process_group=0,
  )
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
    workdirs.add_wall_time(run_dir, time.perf_counter() - start)


def command_line(argv: Sequence[str]) -> str:
  """The comparison command as typed, for the report: `argv` is sys.argv."""
  return shlex.join(["python", "-m", "mimetic_jax.compare", *argv[1:]])


def _report_only(
  workdir: pathlib.Path,
  existing: Sequence[workdirs.RunDir],
  *,
  inits: Sequence[str] | None,
  seeds: Sequence[int] | None,
  fractions: Sequence[float],
  command: str,
) -> int:
  runs = [
    r
    for r in existing
    if (inits is None or r.init in inits) and (seeds is None or r.seed in seeds)
  ]
  if not runs:
    raise UserError(
      f"No runs to report in {workdir} (looked for "
      "<init>_seed<seed>/config.json)."
    )
  saved = workdirs.read_json(workdir / workdirs.COMMAND_FILE) or {}
  # The order of the command's --inits (the first is the baseline).
  order = list(inits or saved.get("inits") or [])
  order += sorted({r.init for r in runs} - set(order))
  runs.sort(key=lambda r: (order.index(r.init), r.seed))
  title = saved.get("title") or " vs ".join(dict.fromkeys(r.init for r in runs))
  paths = report.write_report(
    workdir,
    runs,
    title=title,
    fractions=fractions,
    command=saved.get("command"),
    report_command=command,
  )
  print(f"Wrote {paths[0]} and {paths[1]}.", flush=True)
  return 0


def compare(
  *,
  config: ml_collections.ConfigDict | None,
  config_arg: str | None,
  overrides: Sequence[str],
  inits: Sequence[str] | None,
  seeds: Sequence[int] | None,
  workdir: pathlib.Path,
  fractions: Sequence[float],
  report_only: bool,
  argv: Sequence[str],
) -> int:
  """The whole command; returns the exit code.

  Trains every (init, seed) pair not yet finished with `config_arg` and
  `overrides` (arguments for `main.py`), then writes the report; with
  `report_only`, only rebuilds the report from the runs in `workdir` (those
  of `inits` and `seeds`, where given). Returns 1 if a run failed, 130 or
  143 if SIGINT or SIGTERM stopped a run.

  Raises:
    UserError: `workdir` holds runs with another config, or (with
      `report_only`) none to report.
  """
  command = command_line(argv)
  wanted = (
    json.loads(config.to_json_best_effort()) if config is not None else None
  )
  existing = workdirs.find_run_dirs(workdir)
  workdirs.check_consistent(existing, wanted, workdir)
  if report_only:
    return _report_only(
      workdir,
      existing,
      inits=inits,
      seeds=seeds,
      fractions=fractions,
      command=command,
    )

  workdir.mkdir(parents=True, exist_ok=True)
  title = f"{' vs '.join(inits)} on {config_arg}"
  (workdir / workdirs.COMMAND_FILE).write_text(
    json.dumps(
      {
        "command": command,
        "title": title,
        "config": config_arg,
        "overrides": list(overrides),
        "inits": list(inits),
        "seeds": list(seeds),
      },
      indent=2,
    ),
    encoding="utf-8",
  )
  pairs = [(init, seed) for init in inits for seed in seeds]
  status = {}
  print(
    f"Comparing {len(pairs)} runs in {workdir}: "
    + ", ".join(workdirs.run_name(*p) for p in pairs),
    flush=True,
  )
  with Forwarder() as forwarder:
    for index, (init, seed) in enumerate(pairs, 1):
      name = workdirs.run_name(init, seed)
      run_dir = workdir / name
      run = workdirs.load_run_dir(run_dir, init, seed)
      tag = f"[{name}] ({index}/{len(pairs)})"
      if run.final is not None and run.config is not None:
        status[name] = "finished"
        print(
          f"{tag} done, skipping (final_metrics.json at step "
          f"{run.final.get('step')}).",
          flush=True,
        )
        continue
      resuming = (run_dir / "checkpoints").is_dir()
      print(
        f"{tag} {'resuming in' if resuming else 'training in'} {run_dir}",
        flush=True,
      )
      code = train_run(
        [
          sys.executable,
          str(MAIN_PY),
          "--config",
          config_arg,
          *overrides,
          f"--config.init={init}",
          f"--config.seed={seed}",
          f"--workdir={run_dir}",
        ],
        name,
        run_dir,
        forwarder,
      )
      if forwarder.received:
        print(
          f"{tag} stopped by {forwarder.received} (exit code {code}); "
          "rerun the same command to resume.",
          flush=True,
        )
        return 130 if forwarder.received == "SIGINT" else 143
      if code == 0 and (run_dir / "final_metrics.json").exists():
        status[name] = "finished"
        print(f"{tag} finished.", flush=True)
      else:
        status[name] = f"failed (exit {code})"
        print(
          f"{tag} FAILED with exit code {code}; see its output above. "
          "Continuing with the other runs; rerun the same command to "
          "retry it (it resumes from its last checkpoint).",
          flush=True,
        )

  runs = [
    workdirs.load_run_dir(workdir / workdirs.run_name(i, s), i, s)
    for i, s in pairs
  ]
  paths = report.write_report(
    workdir,
    runs,
    title=title,
    fractions=fractions,
    command=command,
    report_command=None,
    status=status,
  )
  if paths:
    print(f"Wrote {paths[0]} and {paths[1]}.", flush=True)
  failed = [n for n, s in status.items() if s != "finished"]
  if failed:
    print(f"{len(failed)} run(s) failed: {', '.join(failed)}.", flush=True)
    return 1
  return 0
