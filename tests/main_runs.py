"""Running `main.py` in a subprocess on a tiny config, and reading what it
left in its workdir (shared by the end-to-end tests)."""

import json
import pathlib
import subprocess
import sys
from typing import Any

import orbax.checkpoint as ocp

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# 8 devices x 2 images per step; 96 training images = 6 steps per epoch.
TINY_OVERRIDES = (
  "--config.dataset.image_size=16",
  "--config.model.patch_size=4",
  "--config.batch_size=16",
  "--config.eval_batch_size=16",
  "--config.total_steps=16",
  "--config.log_every_steps=1",
  "--config.checkpoint_every_steps=4",
  "--config.eval_every_epochs=1",
  "--config.learning_rate=3e-3",
  "--config.dataset.max_train_examples=0",
  "--config.dataset.max_eval_examples=0",
)


def main_command(workdir, *overrides) -> list[str]:
  """`python main.py --config configs/cifar10.py:smoke --workdir ...`."""
  return [
    sys.executable,
    str(REPO_ROOT / "main.py"),
    "--config",
    str(REPO_ROOT / "configs" / "cifar10.py") + ":smoke",
    "--workdir",
    str(workdir),
    *overrides,
  ]


def run_main(workdir, *overrides, check=True) -> subprocess.CompletedProcess:
  """Runs `main_command`; with `check`, fails the test if it fails."""
  result = subprocess.run(
    main_command(workdir, *overrides),
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  if check and result.returncode:
    raise AssertionError(f"main.py failed:\n{result.stdout}\n{result.stderr}")
  return result


def read_records(workdir) -> list[dict]:
  """The run's metrics.jsonl records."""
  with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def checkpoint_params(workdir, step: int) -> Any:
  """The params of the run's checkpoint at `step`."""
  path = pathlib.Path(workdir) / "checkpoints" / str(step) / "default"
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(path)["params"]
