"""What survives a fault: kill -9 at any moment, damaged checkpoints, a
changed config, divergence, a disk that refuses writes.

Each test runs `main.py` in subprocesses on the tiny 16-step config of
`main_runs` (checkpoints every 4 steps, 2 kept) and compares with one
uninterrupted run (`finished_run`): a resumed run must end with exactly its
params.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from main_runs import (
  REPO_ROOT,
  checkpoint_params,
  main_command,
  run_main,
)

pytestmark = pytest.mark.e2e


def _checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  return sorted(
    int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit()
  )


def _assert_same_params_as(reference: pathlib.Path, workdir: pathlib.Path):
  jax.tree.map(
    np.testing.assert_array_equal,
    checkpoint_params(workdir, 16),
    checkpoint_params(reference, 16),
  )


def _run_patched(workdir, args, patch: str) -> subprocess.CompletedProcess:
  """`main.py` with `patch` (Python source) executed first: how a test puts
  a fault at an exact point of a real run."""
  driver = textwrap.dedent(patch) + textwrap.dedent(
    f"""
    import runpy, sys
    sys.argv = {main_command(workdir, *args)[1:]!r}
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
  )
  return subprocess.run(
    [sys.executable, "-c", driver],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )


# Kills the process (SIGKILL: no handler runs) right after the save of
# step KILL_AT_SAVE was started: its files are being written in the
# background, so the kill lands in the middle of the checkpoint write.
KILL_DURING_SAVE = """
import os, signal
from mimetic_jax import checkpointing
save = checkpointing.Checkpointer.maybe_save
def maybe_save(self, step, state, **kwargs):
  saved = save(self, step, state, **kwargs)
  if saved and step == {step}:
    os.kill(os.getpid(), signal.SIGKILL)
  return saved
checkpointing.Checkpointer.maybe_save = maybe_save
"""


def _kill_at_line(workdir, args, marker: str) -> None:
  """Runs `main.py` and SIGKILLs it when a stdout line contains `marker`."""
  process = subprocess.Popen(
    main_command(workdir, *args),
    cwd=REPO_ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  for line in process.stdout:
    if marker in line:
      process.send_signal(signal.SIGKILL)
      break
  process.wait(timeout=600)
  assert process.returncode == -signal.SIGKILL


def test_kill_9_at_several_points_resumes_to_identical_params(
  finished_run, tiny_args, tmp_path
):
  """Killed before the first save, in the middle of a save, and between
  saves; each rerun resumes from the newest complete checkpoint, and the
  run ends with exactly the params of an uninterrupted one."""
  reference, _ = finished_run
  workdir = tmp_path / "killed"

  _kill_at_line(workdir, tiny_args, " step 3/16 |")  # Nothing saved yet.
  assert not _checkpoint_steps(workdir)

  killed = _run_patched(workdir, tiny_args, KILL_DURING_SAVE.format(step=8))
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  assert "Resumed" not in killed.stdout  # Nothing to resume from above.
  assert 4 in _checkpoint_steps(workdir)

  _kill_at_line(workdir, tiny_args, " step 10/16 |")
  result = run_main(workdir, *tiny_args)
  resumed_at = int(result.stdout.split(" at step ")[1].split(".")[0])
  assert resumed_at in (4, 8), result.stdout
  _assert_same_params_as(reference, workdir)
  leftovers = [n for n in os.listdir(workdir / "checkpoints") if "tmp" in n]
  assert not leftovers  # Half-written checkpoints are cleaned up.


def _copy_of(finished: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
  workdir = tmp_path / "copy"
  shutil.copytree(finished, workdir)
  (workdir / "final_metrics.json").unlink()  # Not finished: train again.
  return workdir


def _damage(checkpoint: pathlib.Path) -> None:
  """Truncates every file of a checkpoint to half its size."""
  for path in checkpoint.rglob("*"):
    if path.is_file() and path.stat().st_size:
      with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(
  finished_run, tiny_args, tmp_path
):
  reference, _ = finished_run
  workdir = _copy_of(reference, tmp_path)
  _damage(workdir / "checkpoints" / "16")
  result = run_main(workdir, *tiny_args)
  assert "Warning: the checkpoint of step 16 could not be read" in result.stdout
  assert "Resumed from" in result.stdout and "at step 12" in result.stdout
  assert (workdir / "unreadable_checkpoints" / "16").is_dir()
  _assert_same_params_as(reference, workdir)


def test_no_readable_checkpoint_stops_instead_of_starting_over(
  finished_run, tiny_args, tmp_path
):
  workdir = _copy_of(finished_run[0], tmp_path)
  for step in (12, 16):
    _damage(workdir / "checkpoints" / str(step))
  result = run_main(workdir, *tiny_args, check=False)
  assert result.returncode == 1
  assert "None of the 2 checkpoints" in result.stderr
  assert "step 16:" in result.stderr and "step 12:" in result.stderr
  assert "Traceback" not in result.stderr
  assert _checkpoint_steps(workdir) == [12, 16]  # Left where they were.


@pytest.mark.parametrize(
  "override, changed_key",
  [
    ("--config.model.width=48", "model.width: 32 -> 48"),
    ("--config.model.depth=3", "model.depth: 2 -> 3"),
    ("--config.grad_clip_norm=1.0", "grad_clip_norm: 0.0 -> 1.0"),
  ],
)
def test_resuming_with_an_incompatible_config_names_the_keys(
  finished_run, tiny_args, tmp_path, override, changed_key
):
  workdir = _copy_of(finished_run[0], tmp_path)
  result = run_main(workdir, *tiny_args, override, check=False)
  assert result.returncode == 1, result.stdout
  assert changed_key in result.stderr
  assert "another --workdir" in result.stderr
  assert "Traceback" not in result.stderr
  assert _checkpoint_steps(workdir) == [12, 16]


def test_divergence_stops_at_the_step_and_keeps_the_last_good_checkpoint(
  tiny_args, tmp_path
):
  workdir = tmp_path / "diverged"
  run_main(workdir, *tiny_args, "--config.total_steps=4")  # Saves step 4.
  result = run_main(
    workdir,
    *tiny_args,
    "--config.total_steps=16",
    "--config.learning_rate=1e35",
    check=False,
  )
  assert result.returncode == 1, result.stdout
  message = result.stderr
  assert "Training diverged at step " in message, message
  step = int(message.split("Training diverged at step ")[1].split()[0])
  assert 5 <= step <= 16
  assert "Nothing after step 4 was saved" in message
  assert "Traceback" not in message
  assert _checkpoint_steps(workdir) == [4]
  params = checkpoint_params(workdir, 4)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))

  rerun = run_main(workdir, *tiny_args, "--config.total_steps=16")
  assert "learning_rate: 1e+35 -> 0.003" in rerun.stdout
  assert "at step 4" in rerun.stdout and "step 16/16" in rerun.stdout


# Every write of step 8 fails as on a full disk.
DISK_FULL_AT_STEP_8 = """
import errno
import orbax.checkpoint as ocp
save = ocp.CheckpointManager.save
def failing_save(self, step, *args, **kwargs):
  if step == 8:
    raise OSError(errno.ENOSPC, "No space left on device")
  return save(self, step, *args, **kwargs)
ocp.CheckpointManager.save = failing_save
"""


def test_full_disk_at_save_time_keeps_the_previous_checkpoint(
  finished_run, tiny_args, tmp_path
):
  workdir = tmp_path / "disk_full"
  result = _run_patched(workdir, tiny_args, DISK_FULL_AT_STEP_8)
  assert result.returncode == 1, result.stderr
  assert "Could not save step 8" in result.stderr
  assert "No space left on device" in result.stderr
  assert "step 4, is intact" in result.stderr
  assert "Traceback" not in result.stderr
  assert _checkpoint_steps(workdir) == [4]
  run_main(workdir, *tiny_args)  # The disk has room again: resume.
  _assert_same_params_as(finished_run[0], workdir)
