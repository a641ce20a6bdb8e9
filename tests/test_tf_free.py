"""Training on prepared data needs no TensorFlow.

The data is prepared here, in the test process (tfds prepares with
TensorFlow); then `main.py` runs in a subprocess in which `import tensorflow`
raises ImportError (a `sitecustomize` puts a finder first on `sys.meta_path`
whose loader refuses every `tensorflow` module), and must train, evaluate,
log and checkpoint as usual.
"""

import json
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from mimetic_jax.data import image_source, text

pytestmark = pytest.mark.e2e  # Runs main.py in subprocesses.

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

_BLOCK_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys

class _Refuse(importlib.abc.Loader):
  def create_module(self, spec):
    raise ImportError(f"{spec.name} is blocked in this test process")

  def exec_module(self, module):
    pass

class _BlockTensorFlow(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] == "tensorflow":
      return importlib.machinery.ModuleSpec(name, _Refuse())
    return None

sys.meta_path.insert(0, _BlockTensorFlow())
"""


@pytest.fixture(scope="module")
def no_tensorflow_env(tmp_path_factory) -> dict[str, str]:
  site = tmp_path_factory.mktemp("block_tensorflow")
  (site / "sitecustomize.py").write_text(_BLOCK_TENSORFLOW)
  return {"PYTHONPATH": f"{site}:{REPO_ROOT}", "PATH": "/usr/bin:/bin"}


def _run_main(env, config, workdir, *overrides):
  command = [
    sys.executable,
    str(REPO_ROOT / "main.py"),
    "--config",
    str(REPO_ROOT / "configs" / config),
    "--workdir",
    str(workdir),
    *overrides,
  ]
  return subprocess.run(
    command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
  )


def test_tensorflow_is_really_blocked(no_tensorflow_env):
  result = subprocess.run(
    [sys.executable, "-c", "import tensorflow"],
    env=no_tensorflow_env,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert result.returncode and "blocked in this test process" in result.stderr


def _check_trained(result, workdir, metric):
  assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
  records = [
    json.loads(line)
    for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  assert [r for r in records if "train_loss" in r]
  assert [r for r in records if metric in r]
  assert (workdir / "final_metrics.json").is_file()
  assert list((workdir / "checkpoints").iterdir())
  assert list((workdir / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("as_prepared_folder", [False, True])
def test_image_smoke_run_without_tensorflow(
  image_folder, tmp_path, no_tensorflow_env, as_prepared_folder
):
  data_dir = tmp_path / "tfds"
  builder = image_source.get_builder(
    ml_collections.ConfigDict(
      dict(name="", path=str(image_folder), data_dir=str(data_dir))
    )
  )
  # Either the source with its data_dir (as prepared), or the prepared
  # folder itself, e.g. copied to a machine without TensorFlow.
  data = (
    [f"--config.dataset.path={builder.data_path}"]
    if as_prepared_folder
    else [
      f"--config.dataset.path={image_folder}",
      f"--config.dataset.data_dir={data_dir}",
    ]
  )
  workdir = tmp_path / "run"
  result = _run_main(
    no_tensorflow_env,
    "cifar10.py:smoke",
    workdir,
    *data,
    "--config.batch_size=16",
    "--config.total_steps=4",
    "--config.log_every_steps=2",
  )
  _check_trained(result, workdir, "eval_accuracy")
  assert "Data: 96 training examples used" in result.stdout


def test_image_data_that_is_not_prepared_needs_tensorflow(
  image_folder, tmp_path, no_tensorflow_env
):
  result = _run_main(
    no_tensorflow_env,
    "cifar10.py:smoke",
    tmp_path / "run",
    f"--config.dataset.path={image_folder}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
  )
  assert result.returncode == 1
  assert "preparing a dataset needs TensorFlow" in result.stderr
  assert "Traceback" not in result.stderr


def test_text_smoke_run_without_tensorflow(
  tinyshakespeare_dir, tmp_path, no_tensorflow_env
):
  data_dir = tmp_path / "tfds"
  text.load_text(
    ml_collections.ConfigDict(
      dict(
        name="tiny_shakespeare",
        path="",
        data_dir=str(data_dir),
        manual_dir=str(tinyshakespeare_dir),
        train_split="train",
        eval_split="validation",
        tokenizer="byte",
        eval_fraction=0.0,
      )
    ),
    seq_len=8,
    workdir=str(tmp_path),
  )
  workdir = tmp_path / "run"
  result = _run_main(
    no_tensorflow_env,
    "tiny_shakespeare.py:smoke",
    workdir,
    f"--config.dataset.data_dir={data_dir}",
    "--config.total_steps=4",
    "--config.log_every_steps=2",
  )
  _check_trained(result, workdir, "eval_bits_per_byte")


def test_metric_writer_without_tensorboard_says_so_once(
  tmp_path, monkeypatch, capsys
):
  from mimetic_jax import metric_logging  # pylint: disable=g-import-not-at-top

  monkeypatch.setitem(sys.modules, "tensorboard.summary.writer", None)
  writer = metric_logging.MetricWriter(str(tmp_path))
  writer.write(1, {"train_loss": 2.0})
  writer.write(2, {"train_loss": 1.5})
  writer.close()
  out = capsys.readouterr().out
  assert out.count("TensorBoard summaries are off") == 1
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
  assert not (tmp_path / "tensorboard").exists()
