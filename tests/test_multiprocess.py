"""Training as several processes (`jax.distributed`) on one machine.

Two processes with one CPU device each must train exactly what one process
with two devices trains (the same global batch, each device drawing from
the same shard of the data), up to the order of float reductions: final eval
losses agree to float tolerance, for the in-memory image path and for the
language model.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from main_runs import REPO_ROOT

pytestmark = pytest.mark.e2e


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(args, workdir, devices: int, *distributed) -> subprocess.Popen:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return subprocess.Popen(
    [sys.executable, "main.py", *args, f"--workdir={workdir}", *distributed],
    cwd=REPO_ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _finish(process: subprocess.Popen) -> str:
  stdout, stderr = process.communicate(timeout=900)
  assert process.returncode == 0, f"{stdout}\n{stderr}"
  return stdout


def _final_loss(workdir) -> float:
  with open(workdir / "final_metrics.json") as f:
    return json.load(f)["eval_loss"]


def _compare_two_processes_with_two_devices(args, tmp_path) -> None:
  single = _start(args, tmp_path / "one_process", 2)
  _finish(single)
  address = f"localhost:{_free_port()}"
  processes = [
    _start(
      args,
      tmp_path / "two_processes",
      1,
      f"--coordinator_address={address}",
      "--num_processes=2",
      f"--process_id={i}",
    )
    for i in range(2)
  ]
  outputs = [_finish(p) for p in processes]
  assert "2 x cpu" in outputs[0]  # Both processes' devices in one mesh.
  # Only process 0 logs (Gloo, the CPU collectives, prints its own line).
  assert "Workdir" not in outputs[1] and "step " not in outputs[1]
  np.testing.assert_allclose(
    _final_loss(tmp_path / "two_processes"),
    _final_loss(tmp_path / "one_process"),
    rtol=1e-5,
  )
  steps = sorted(os.listdir(tmp_path / "two_processes" / "checkpoints"))
  assert steps == sorted(os.listdir(tmp_path / "one_process" / "checkpoints"))


def test_two_processes_train_the_image_model_as_one_with_two_devices(
  image_folder, tmp_path
):
  args = (
    "--config=configs/cifar10.py:smoke",
    f"--config.dataset.path={image_folder}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.dataset.image_size=16",
    "--config.batch_size=16",
    "--config.eval_batch_size=16",
    "--config.total_steps=8",
    "--config.checkpoint_every_steps=4",
  )
  _compare_two_processes_with_two_devices(args, tmp_path)


def test_two_processes_train_the_language_model_as_one_with_two_devices(
  tinyshakespeare_dir, tmp_path
):
  args = (
    "--config=configs/tiny_shakespeare.py:smoke",
    f"--config.dataset.manual_dir={tinyshakespeare_dir}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.total_steps=8",
    "--config.checkpoint_every_steps=4",
  )
  _compare_two_processes_with_two_devices(args, tmp_path)
