"""Tests for `python -m mimetic_jax.compare` as a command, and its runner.

End to end, one comparison (2 inits x 2 seeds on a tiny generated image
folder, one CPU device per trainer) is taken through its whole life once per
module: interrupted with SIGTERM, resumed, rerun, rerun with a different
config, and its report rebuilt; the tests then read what each stage printed
and left on disk. A two-run comparison on the real Tiny Shakespeare text
checks the language-model path (bits per byte). The numbers themselves are
checked in tests/test_compare_summary.py.
"""

import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import types

import pytest

from mimetic_jax.compare import runner, workdirs

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = ("default_seed0", "default_seed1", "mimetic_seed0", "mimetic_seed1")
# One CPU device per trainer. 96 training images in batches of 16: 6 steps
# per epoch, evals at steps 3, 6, 9 and 12 (exactly 25/50/75/100 % of the
# budget), checkpoints at 4, 8 and 12.
ENV = dict(
  os.environ,
  JAX_PLATFORMS="cpu",
  XLA_FLAGS="--xla_force_host_platform_device_count=1",
)
TINY_OVERRIDES = (
  "--config.dataset.image_size=16",
  "--config.model.patch_size=4",
  "--config.batch_size=16",
  "--config.eval_batch_size=24",
  "--config.total_steps=12",
  "--config.log_every_steps=1",
  "--config.checkpoint_every_steps=4",
  "--config.eval_every_epochs=0.5",
  "--config.dataset.max_train_examples=0",
  "--config.dataset.max_eval_examples=0",
  "--config.learning_rate=1e-3",
)


def _cells(markdown: str, first: str) -> list[str]:
  """The cells of the table row whose first cell is `first`."""
  for line in markdown.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and cells[0] == first:
      return cells
  raise AssertionError(f"No row {first!r} in:\n{markdown}")


class _FakeProcess:
  """The part of `subprocess.Popen` the forwarder uses."""

  def __init__(self, running: bool):
    self.running, self.signals = running, []

  def poll(self):
    return None if self.running else 0

  def send_signal(self, sig):
    self.signals.append(sig)


def test_forwarder_passes_signals_to_the_running_trainer_only():
  previous = signal.getsignal(signal.SIGTERM)
  with runner.Forwarder() as forwarder:
    assert signal.getsignal(signal.SIGTERM) != previous
    forwarder.process = _FakeProcess(running=True)
    forwarder.handle(signal.SIGTERM)
    assert forwarder.process.signals == [signal.SIGTERM]
    assert forwarder.received == "SIGTERM"
    forwarder.process = _FakeProcess(running=False)  # Exited already.
    with pytest.raises(KeyboardInterrupt):
      forwarder.handle(signal.SIGINT)
    assert forwarder.received == "SIGINT"
    forwarder.process = None  # Between runs.
    with pytest.raises(KeyboardInterrupt):
      forwarder.handle(signal.SIGTERM)
  assert signal.getsignal(signal.SIGTERM) == previous


# ----------------------------------------------------------- end to end ---


def _command(*args: str) -> list[str]:
  return [sys.executable, "-m", "mimetic_jax.compare", *args]


def _compare(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    _command(*args),
    cwd=REPO_ROOT,
    env=ENV,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )


def _interrupt(args, run: str, progress: str) -> tuple[int, str]:
  """Runs the comparison, sends SIGTERM once `run`'s output shows
  `progress`; returns (exit code, output)."""
  process = subprocess.Popen(
    _command(*args),
    cwd=REPO_ROOT,
    env=ENV,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  output = []
  for line in process.stdout:
    output.append(line)
    if line.startswith(f"[{run}] ") and progress in line:
      process.send_signal(signal.SIGTERM)
  return process.wait(timeout=60), "".join(output)


def _records(run_dir: pathlib.Path) -> list[dict]:
  return workdirs.read_jsonl(run_dir / "metrics.jsonl")


def _snapshot(workdir: pathlib.Path) -> dict[str, bytes]:
  """The comparison's files and every run's, byte for byte."""
  files = [workdir / "results.md", workdir / workdirs.COMMAND_FILE] + [
    workdir / run / name
    for run in RUNS
    for name in ("metrics.jsonl", "config.json", "final_metrics.json")
  ]
  return {str(f.relative_to(workdir)): f.read_bytes() for f in files}


@pytest.fixture(scope="module")
def comparison(image_folder, tmp_path_factory) -> types.SimpleNamespace:
  """One comparison's life, each stage once, in order:

  interrupted: SIGTERM while the last run (mimetic_seed1) trains.
  resumed: the same command again: skips three, resumes the fourth.
  rerun: the same command again: nothing to train.
  refused: the same command with another learning rate.
  report_only: `--report_only` after deleting results.md and the plot.
  Each `after_<stage>` is a byte snapshot of the comparison's files after
  it.
  """
  root = tmp_path_factory.mktemp("compare")
  workdir = root / "comparison"
  args = (
    "--config",
    "configs/cifar10.py:smoke",
    "--seeds",
    "0,1",
    "--inits",
    "default,mimetic",
    "--workdir",
    str(workdir),
    f"--config.dataset.path={image_folder}",
    f"--config.dataset.data_dir={root / 'tfds'}",
    *TINY_OVERRIDES,
    "--noconfig.augment.flip",
    "--config.model.dropout",
    "0.0",
  )
  stages = types.SimpleNamespace(workdir=workdir, args=args)
  stages.interrupted = _interrupt(args, "mimetic_seed1", " step 2/12 |")
  stages.resumed = _compare(*args)
  stages.after_resumed = _snapshot(workdir)
  stages.rerun = _compare(*args)
  stages.after_rerun = _snapshot(workdir)
  stages.refused = _compare(*args, "--config.learning_rate=0.01")
  stages.after_refused = _snapshot(workdir)
  (workdir / "results.md").unlink()
  (workdir / "accuracy.png").unlink()
  stages.report_only = _compare("--workdir", str(workdir), "--report_only")
  return stages


@pytest.mark.e2e
def test_interrupted_comparison_saves_and_stops(comparison):
  code, output = comparison.interrupted
  assert code == 143, output
  for index, run in enumerate(RUNS[:3], 1):
    assert f"[{run}] ({index}/4) training in" in output
    assert f"[{run}] ({index}/4) finished." in output
  assert re.search(
    r"^\[mimetic_seed1\] .*Received SIGTERM: saved step", output, re.M
  ), output
  assert (
    "[mimetic_seed1] (4/4) stopped by SIGTERM (exit code 0); rerun the "
    "same command to resume."
  ) in output
  assert "Traceback" not in output


@pytest.mark.e2e
def test_rerun_skips_finished_runs_and_resumes_the_interrupted_one(comparison):
  _, first = comparison.interrupted
  stopped = int(first.split("Received SIGTERM: saved step ")[1].split()[0])
  assert 2 <= stopped < 12
  result = comparison.resumed
  assert result.returncode == 0, result.stdout + result.stderr
  for index, run in enumerate(RUNS[:3], 1):
    assert f"[{run}] ({index}/4) done, skipping" in result.stdout
    assert f"[{run}] Workdir" not in result.stdout  # No trainer started.
  assert "[mimetic_seed1] (4/4) resuming in" in result.stdout
  assert f"at step {stopped}." in result.stdout
  assert "[mimetic_seed1] (4/4) finished." in result.stdout
  # Resumed, not restarted: every step logged once, across two attempts.
  records = _records(comparison.workdir / "mimetic_seed1")
  assert [r["step"] for r in records if "train_loss" in r] == list(range(1, 13))
  assert [r["step"] for r in records if "eval_accuracy" in r] == [3, 6, 9, 12]
  for run in RUNS:
    wall = json.loads(
      (comparison.workdir / run / workdirs.WALL_TIME_FILE).read_text()
    )
    assert wall["attempts"] == (2 if run == "mimetic_seed1" else 1)
    assert wall["wall_seconds"] > 0


@pytest.mark.e2e
def test_results_match_the_runs(comparison):
  workdir = comparison.workdir
  text = comparison.after_resumed["results.md"].decode()
  assert text.startswith(
    "# Comparison: default vs mimetic on configs/cifar10.py:smoke\n"
  )
  assert (
    "python -m mimetic_jax.compare --config configs/cifar10.py:smoke" in text
  )
  assert "higher is better" in text and "(12 steps)" in text
  assert "not finished" not in text
  assert _cells(text, "init")[4:8] == [
    "at 25 % (step 3)",
    "at 50 % (step 6)",
    "at 75 % (step 9)",
    "at 100 % (step 12)",
  ]
  finals = {}
  for run in RUNS:
    final = json.loads((workdir / run / "final_metrics.json").read_text())
    evals = [r for r in _records(workdir / run) if "eval_accuracy" in r]
    assert final["step"] == 12 and evals[-1]["step"] == 12
    assert final["eval_accuracy"] == evals[-1]["eval_accuracy"]
    finals[run] = final["eval_accuracy"]
    best = max(evals, key=lambda r: r["eval_accuracy"])["eval_accuracy"]
    cells = _cells(text, run)
    assert cells[3] == f"{100 * final['eval_accuracy']:.2f}"
    assert cells[4].startswith(f"{100 * best:.2f} (")
    assert cells[5:7] == ["12 / 12", "2.00"]
    assert cells[8] == "finished"
  for init in ("default", "mimetic"):
    values = [100 * finals[f"{init}_seed{s}"] for s in (0, 1)]
    cells = _cells(text, init)
    assert cells[1] == "0,1"
    assert cells[2] == (
      f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
    )
    assert cells[7] == cells[2]  # 100 % of the budget is the final eval.
  delta = statistics.mean(
    [finals["mimetic_seed0"], finals["mimetic_seed1"]]
  ) - statistics.mean([finals["default_seed0"], finals["default_seed1"]])
  assert _cells(text, "mimetic")[8] == f"{100 * delta:+.2f}"
  assert not (workdir / "bits_per_byte.png").exists()
  saved = json.loads((workdir / workdirs.COMMAND_FILE).read_text())
  assert saved["inits"] == ["default", "mimetic"] and saved["seeds"] == [0, 1]
  # The overrides each run was given, as absl parsed them.
  assert saved["overrides"] == [
    a.replace("=1e-3", "=0.001") for a in comparison.args[8:-3]
  ] + ["--noconfig.augment.flip", "--config.model.dropout=0.0"]
  for run in RUNS:
    config = json.loads((workdir / run / "config.json").read_text())
    assert config["augment"]["flip"] is False
    assert config["learning_rate"] == 1e-3


@pytest.mark.e2e
def test_rerun_of_a_finished_comparison_trains_nothing(comparison):
  result = comparison.rerun
  assert result.returncode == 0, result.stdout + result.stderr
  for index, run in enumerate(RUNS, 1):
    assert f"[{run}] ({index}/4) done, skipping" in result.stdout
  assert "training in" not in result.stdout
  assert "resuming in" not in result.stdout
  assert comparison.after_rerun == comparison.after_resumed


@pytest.mark.e2e
def test_rerun_with_another_config_is_refused_before_training(comparison):
  result = comparison.refused
  assert result.returncode == 1
  assert "different config than this command" in result.stderr
  assert (
    "learning_rate: 0.001 (default_seed0) vs 0.01 (wanted)" in result.stderr
  )
  assert "Use a new --workdir" in result.stderr
  assert "Traceback" not in result.stderr
  assert "Comparing" not in result.stdout
  assert comparison.after_refused == comparison.after_resumed


@pytest.mark.e2e
def test_report_only_rebuilds_the_report(comparison):
  result = comparison.report_only
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Workdir" not in result.stdout  # Nothing trained.
  workdir = comparison.workdir
  assert (workdir / "accuracy.png").read_bytes().startswith(b"\x89PNG")
  rebuilt = (workdir / "results.md").read_text()
  original = comparison.after_resumed["results.md"].decode()
  assert "Report rebuilt by:" in rebuilt and "--report_only" in rebuilt
  # The training command and every table are as before.
  assert original.split("Metric:")[0] in rebuilt
  assert original.split("## Per init")[1] == rebuilt.split("## Per init")[1]


@pytest.mark.e2e
def test_failed_run_is_reported_and_the_exit_code_says_so(tmp_path):
  result = _compare(
    "--config",
    "configs/cifar10.py:smoke",
    "--inits",
    "default",
    "--seeds",
    "0",
    "--workdir",
    str(tmp_path / "comparison"),
    f"--config.dataset.path={tmp_path / 'nowhere'}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    *TINY_OVERRIDES,
  )
  assert result.returncode == 1
  assert "[default_seed0] (1/1) FAILED with exit code 1" in result.stdout
  assert "1 run(s) failed: default_seed0." in result.stdout
  text = (tmp_path / "comparison" / "results.md").read_text()
  cells = _cells(text, "default_seed0")
  assert cells[3:7] == ["—", "—", "— / 12", "—"]
  assert cells[8] == "failed (exit 1)"
  assert _cells(text, "default")[1:3] == ["0 (0 finished)", "—"]


@pytest.mark.parametrize(
  "args, message",
  [
    (
      ("--config.seed=3",),
      "--config.seed is set per run by the runner; use --seeds instead.",
    ),
    (("--inits", "default,xavier"), "unknown init(s) ['xavier']"),
    (("--seeds", "1,1"), "repeats a seed"),
    (("--config.lerning_rate=1",), 'Did you mean "learning_rate"'),
  ],
)
@pytest.mark.e2e
def test_command_line_errors(args, message, tmp_path):
  result = _compare(
    "--config",
    "configs/cifar10.py:smoke",
    "--workdir",
    str(tmp_path / "comparison"),
    *args,
  )
  assert result.returncode == 1
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "comparison").exists()


@pytest.mark.e2e
def test_config_is_required_unless_report_only(tmp_path):
  result = _compare("--workdir", str(tmp_path))
  assert result.returncode == 1
  assert "--config is required" in result.stderr
  result = _compare("--workdir", str(tmp_path / "empty"), "--report_only")
  assert result.returncode == 1
  assert "No runs to report" in result.stderr


@pytest.mark.e2e
def test_language_model_comparison(tinyshakespeare_dir, tmp_path):
  """Two smoke runs on Tiny Shakespeare: judged by eval bits per byte."""
  workdir = tmp_path / "comparison"
  result = _compare(
    "--config",
    "configs/tiny_shakespeare.py:smoke",
    "--inits",
    "default,mimetic",
    "--seeds",
    "0",
    "--workdir",
    str(workdir),
    f"--config.dataset.manual_dir={tinyshakespeare_dir}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
  )
  assert result.returncode == 0, result.stdout + result.stderr
  assert (workdir / "bits_per_byte.png").read_bytes().startswith(b"\x89PNG")
  assert not (workdir / "accuracy.png").exists()
  text = (workdir / "results.md").read_text()
  assert "**eval bits per byte**, lower is better" in text
  finals = {}
  for init in ("default", "mimetic"):
    final = json.loads(
      (workdir / f"{init}_seed0" / "final_metrics.json").read_text()
    )
    finals[init] = final["eval_bits_per_byte"]
    cells = _cells(text, f"{init}_seed0")
    assert cells[3] == f"{finals[init]:.4f}"
    assert cells[5] == f"{final['step']} / {final['step']}"
    assert _cells(text, init)[2] == f"{finals[init]:.4f} (n=1)"
  assert _cells(text, "mimetic")[-1] == (
    f"{finals['mimetic'] - finals['default']:+.4f}"
  )
