"""The benchmark scripts run and report every field they promise."""

import json
import subprocess
import sys

import pytest

from main_runs import REPO_ROOT

TRAIN_STEP_FIELDS = (
  "project_img_per_s",
  "project_img_per_s_no_augment",
  "torch_img_per_s",
  "ratio",
  "model_flops_per_image",
  "matmul_peak_flops",
  "mfu",
  "augment_share",
  "input_items_per_s",
  "input_over_consumption",
  "compile_s",
  "compiled_temp_bytes",
  "peak_host_memory_bytes",
)


@pytest.mark.e2e
def test_train_step_benchmark_writes_every_field(tmp_path):
  report_path = tmp_path / "report.json"
  subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.train_step",
      "--config=configs/cifar10.py:smoke",
      f"--json={report_path}",
      "--steps=1",
      "--repeats=1",
    ],
    cwd=REPO_ROOT,
    check=True,
    capture_output=True,
    text=True,
  )
  report = json.loads(report_path.read_text())
  assert set(TRAIN_STEP_FIELDS) <= set(report)
  try:
    import timm  # noqa: F401  # pylint: disable=g-import-not-at-top
  except ImportError:  # The torch fields are null and say why.
    assert report["torch_img_per_s"] is None
    assert "reference" in report["torch_note"]
  else:
    assert report["torch_img_per_s"] is not None
  assert report["config"]["model"]["width"] == 32  # The :smoke preset.


def test_train_step_benchmark_refuses_a_language_model():
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  from configs import tiny_shakespeare  # pylint: disable=g-import-not-at-top
  from mimetic_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  with pytest.raises(UserError, match="times the ViT of an image config"):
    train_step.benchmark(
      tiny_shakespeare.get_config("smoke"), steps=1, repeats=1, torch=False
    )


@pytest.mark.e2e
def test_profile_step_prints_the_time_per_op(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.profile_step",
      "--config=configs/cifar10.py:smoke",
      "--steps=1",
      f"--trace_dir={tmp_path}",
    ],
    cwd=REPO_ROOT,
    check=True,
    capture_output=True,
    text=True,
  )
  assert "By kind of kernel" in result.stdout
  assert "block_*/attention" in result.stdout  # Ops traced to model code.
  assert list(tmp_path.rglob("perfetto_trace.json.gz"))
