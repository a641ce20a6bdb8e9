"""End-to-end runs of `main.py` (in subprocesses, 8 CPU devices) and the
errors a user gets for configs that cannot run.

The mechanics (train, eval, checkpoint, resume, preemption) are tested on a
tiny generated image folder so they run anywhere; one run on the real
CIFAR-10 archive checks the same on real images when it is present.
"""

import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from configs import cifar10, tiny_shakespeare
from mimetic_jax import cli, train
from mimetic_jax import config as config_lib
from mimetic_jax.errors import UserError
from mimetic_jax.models.init import parse_strength

from main_runs import (
  REPO_ROOT,
  TINY_OVERRIDES,
  checkpoint_params,
  main_command,
  read_records,
  run_main,
)


@pytest.mark.e2e
def test_run_trains_evaluates_logs_and_checkpoints(finished_run):
  workdir, result = finished_run
  assert "step 16/16" in result.stdout and "ETA" in result.stdout
  # Progress lines start with the local date and time.
  progress = [line for line in result.stdout.splitlines() if "ETA" in line]
  assert len(progress) == 16
  for line in progress:
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d step ", line), line
  records = read_records(workdir)
  # The first record has the compile time and the step budget (96 training
  # images / 16 per step); train records the throughput, also per device (8).
  assert set(records[0]) == {
    "step",
    "compile_seconds",
    "total_steps",
    "steps_per_epoch",
  }
  assert records[0]["compile_seconds"] > 0
  assert (records[0]["total_steps"], records[0]["steps_per_epoch"]) == (16, 6)
  rates = [r for r in records if "items_per_second" in r]
  assert rates and all(
    r["items_per_second_per_device"] == pytest.approx(r["items_per_second"] / 8)
    for r in rates
  )
  steady = records[-1]
  assert steady["step"] == 16 and steady["steady_items_per_second"] > 0
  train_records = [r for r in records if "train_loss" in r]
  eval_records = [r for r in records if "eval_accuracy" in r]
  assert [r["step"] for r in train_records] == list(range(1, 17))
  assert [r["step"] for r in eval_records] == [6, 12, 16]
  # The zero-init head starts at exactly log(3); learning takes loss below it.
  assert train_records[0]["train_loss"] == pytest.approx(math.log(3), 1e-4)
  assert eval_records[-1]["eval_loss"] < math.log(3) - 0.1
  assert eval_records[-1]["eval_accuracy"] > 0.5
  final = json.loads((workdir / "final_metrics.json").read_text())
  assert final["step"] == 16
  assert final["eval_accuracy"] == eval_records[-1]["eval_accuracy"]
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["total_steps"] == 16 and saved["init"] == "mimetic"
  assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "16"]
  assert list((workdir / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.e2e
def test_log_of_a_run_that_prepares_data_is_clean(image_folder, tmp_path):
  """What a log file gets (stderr is not a terminal here) while tfds prepares
  the folder: no TF oneDNN banner, no tfds warning about the per-source
  config, no progress-bar cursor escapes."""
  result = run_main(
    tmp_path / "run",
    f"--config.dataset.path={image_folder}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    *TINY_OVERRIDES,
    "--config.total_steps=2",
  )
  log = result.stdout + result.stderr
  assert "downloaded and prepared" in log  # This run did prepare the data.
  assert "oneDNN" not in log
  assert "Using custom data configuration" not in log
  assert "\x1b[" not in log and "\r" not in log


@pytest.mark.e2e
def test_rerun_resumes_instead_of_retraining(finished_run, tiny_args):
  workdir, _ = finished_run
  before = read_records(workdir)
  result = run_main(workdir, *tiny_args)
  assert "Resumed from" in result.stdout and "at step 16" in result.stdout
  assert "Already finished" in result.stdout
  assert "Compiled" not in result.stdout  # Nothing is compiled either.
  assert read_records(workdir) == before  # No step trained, no eval repeated.


@pytest.mark.e2e
def test_streamed_run_trains_evaluates_and_resumes(tiny_args, tmp_path):
  """`dataset.in_memory=False` (the ImageNet path): host-side tf.data batches
  (random-resized crop + flip) through the same step, eval over the whole
  split once, checkpoint and resume."""
  streamed = tiny_args + (
    "--config.dataset.in_memory=false",
    "--config.total_steps=8",
  )
  workdir = tmp_path / "streamed"
  result = run_main(workdir, *streamed)
  assert "24 eval items (streamed)" in result.stdout
  records = read_records(workdir)
  assert [r["step"] for r in records if "train_loss" in r] == list(range(1, 9))
  (first_eval, final_eval) = [r for r in records if "eval_accuracy" in r]
  assert (first_eval["step"], final_eval["step"]) == (6, 8)
  first_train = next(r for r in records if "train_loss" in r)
  assert first_train["train_loss"] == pytest.approx(math.log(3), 1e-4)
  assert final_eval["eval_loss"] < math.log(3)
  # Evaluation covers every test image exactly once: accuracies are k / 24.
  assert (final_eval["eval_accuracy"] * 24) == pytest.approx(
    round(final_eval["eval_accuracy"] * 24), abs=1e-4
  )

  result = run_main(workdir, *streamed[:-1], "--config.total_steps=10")
  assert "Resumed from" in result.stdout and "at step 8" in result.stdout
  assert [
    r["step"] for r in read_records(workdir) if "train_loss" in r
  ] == list(range(1, 11))


@pytest.mark.e2e
def test_preempted_run_resumes_to_identical_params(
  finished_run, tiny_args, tmp_path
):
  """SIGTERM mid-run saves; rerunning finishes with bit-identical params."""
  uninterrupted, _ = finished_run
  workdir = tmp_path / "preempted"
  process = subprocess.Popen(
    main_command(workdir, *tiny_args),
    cwd=REPO_ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  output = []
  for line in process.stdout:
    output.append(line)
    if " step 5/16 |" in line:
      process.send_signal(signal.SIGTERM)
  process.wait(timeout=600)
  output = "".join(output)
  assert process.returncode == 0, output
  assert "Received SIGTERM: saved step" in output, output
  stopped_at = int(output.split("Received SIGTERM: saved step ")[1].split()[0])
  assert 5 <= stopped_at < 16
  assert not (workdir / "final_metrics.json").exists()

  result = run_main(workdir, *tiny_args)
  assert f"at step {stopped_at}" in result.stdout
  resumed = checkpoint_params(workdir, 16)
  reference = checkpoint_params(uninterrupted, 16)
  jax.tree.map(np.testing.assert_array_equal, resumed, reference)


@pytest.mark.e2e
def test_real_cifar10_smoke_run(cifar10_archive, tmp_path):
  result = run_main(
    tmp_path / "run",
    f"--config.dataset.path={cifar10_archive}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.log_every_steps=1",
  )
  assert "Data: 1024 training examples used" in result.stdout
  records = read_records(tmp_path / "run")
  evals = [r for r in records if "eval_accuracy" in r]
  assert evals and evals[-1]["step"] == 12
  trains = [r for r in records if "train_loss" in r]
  # Zero-initialized head: uniform predictions at step 1, then learning.
  assert trains[0]["train_loss"] == pytest.approx(math.log(10), 1e-4)
  assert evals[-1]["eval_loss"] < math.log(10)
  assert (tmp_path / "run" / "checkpoints" / "12").is_dir()


IMAGE_CONFIGS = [
  ("cifar10", ""),
  ("cifar10", "smoke"),
  ("cifar10", "cpu"),
  ("cifar100", ""),
  ("svhn", ""),
  ("imagenet", ""),
]
CONTRACT_KEYS = (
  "init",
  "mimetic.qk",
  "mimetic.vo",
  "model.variant",
  "dataset.name",
  "dataset.data_dir",
  "dataset.path",
  "batch_size",
  "num_epochs",
  "total_steps",
  "seed",
  "learning_rate",
  "weight_decay",
)


@pytest.mark.parametrize("name, preset", IMAGE_CONFIGS)
def test_image_configs_hold_the_user_facing_keys(name, preset):
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config(preset)
  for key in CONTRACT_KEYS:
    node = config
    for part in key.split("."):
      assert part in node, f"configs/{name}.py:{preset} lacks {key}"
      node = node[part]
  assert module.__doc__ and "python main.py" in module.__doc__
  assert "Hardware" in module.__doc__ and "Expected" in module.__doc__
  with pytest.raises(ValueError, match="preset"):
    module.get_config("no-such-preset")


def test_paper_recipe_is_the_cifar10_default():
  config = cifar10.get_config()
  assert (config.model.variant, config.model.pool, config.model.posemb) == (
    "Ti/2",
    "token",
    "sincos2d",
  )
  assert (
    config.batch_size,
    config.learning_rate,
    config.weight_decay,
    config.num_epochs,
  ) == (512, 3e-3, 0.01, 100.0)
  assert config.init == "mimetic"
  assert tuple(config.mimetic.qk) == (0.7, 0.7)
  assert tuple(config.mimetic.vo) == (0.4, -0.4)
  assert config.augment.randaugment_num_ops > 0 and config.augment.cutout_size


# Errors a user gets, before any data is loaded or anything compiled.


def _smoke(**overrides) -> ml_collections.ConfigDict:
  config = cifar10.get_config("smoke")
  config.update(overrides)
  return config


@pytest.mark.parametrize(
  "overrides, expected",
  [
    (
      dict(batch_size=12),
      "batch_size=12 is the global batch size and must be "
      "a positive multiple of the 8 devices",
    ),
    (dict(eval_batch_size=0), "eval_batch_size=0"),
    (dict(init="xavier"), "init='xavier' is not one of"),
    (dict(total_steps=0, num_epochs=0.0), "Set num_epochs > 0"),
    (dict(learning_rate=-1.0), "learning_rate=-1.0 must be > 0"),
    (
      dict(model=dict(attention="flash")),
      "model.attention='flash' must be 'auto'",
    ),
    (dict(model=dict(variant="Huge/3")), "model.variant='Huge/3'"),
    (dict(total_steps=-5), "must not be negative"),
    (dict(model=dict(patch_size=5)), "patch size 5 .* does not tile"),
    (dict(model=dict(num_heads=5)), "num_heads=5 must divide model.width=32"),
    (dict(task="segmentation"), "task='segmentation' is not one of"),
    (dict(model=dict(remat="full")), "model.remat='full' is not a remat"),
    (dict(model=dict(mlp_dim=0)), "model.mlp_dim=0 must be > 0 for a ViT"),
    (dict(model=dict(dropout=1.0)), r"model.dropout=1.0 is out of range"),
    (dict(model=dict(dtype="float16")), r"model.dtype='float16' is out of"),
    (dict(model=dict(pool="max")), r"model.pool='max' is out of range"),
    (dict(model=dict(depth=0)), r"model.depth=0 is out of range"),
    (dict(warmup_epochs=-1.0), r"warmup_epochs=-1.0 is out of range"),
    (dict(weight_decay=-0.1), r"weight_decay=-0.1 is out of range"),
    (dict(b2=1.0), r"b2=1.0 is out of range: it must be in \[0, 1\)"),
    (dict(grad_clip_norm=-1.0), r"grad_clip_norm=-1.0 is out of range"),
    (dict(label_smoothing=1.5), r"label_smoothing=1.5 is out of range"),
    (dict(log_every_steps=0), r"log_every_steps=0 is out of range"),
    (dict(eval_every_epochs=0.0), r"eval_every_epochs=0.0 is out of range"),
    (dict(checkpoint_every_steps=-1), r"checkpoint_every_steps=-1 is out"),
    (dict(max_to_keep=0), r"max_to_keep=0 is out of range"),
    (dict(dataset=dict(image_size=0)), r"dataset.image_size=0 is out of"),
    (
      dict(dataset=dict(max_train_examples=-5)),
      r"dataset.max_train_examples=-5 is out of range",
    ),
    (
      dict(dataset=dict(value_range=(1.0, -1.0))),
      r"dataset.value_range=\(1.0, -1.0\) is out of range",
    ),
    (dict(augment=dict(cutout_size=-2)), r"augment.cutout_size=-2 is out"),
    (
      dict(augment=dict(randaugment_magnitude=11.0)),
      r"augment.randaugment_magnitude=11.0 is out of range",
    ),
  ],
)
def test_bad_config_is_rejected_with_a_fix(overrides, expected):
  with pytest.raises(UserError, match=expected):
    config_lib.validate(_smoke(**overrides))


@pytest.mark.parametrize(
  "overrides, expected",
  [
    (dict(seq_len=0), r"seq_len=0 is out of range"),
    (dict(b1=-0.5), r"b1=-0.5 is out of range"),
    (dict(dataset=dict(tokenizer="bpe")), r"dataset.tokenizer='bpe' is out"),
    (dict(dataset=dict(eval_fraction=1.0)), r"eval_fraction=1.0 is out of"),
    (dict(dataset=dict(vocab_size=3)), r"dataset.vocab_size=3 is out of"),
    (dict(model=dict(num_heads=3)), "num_heads=3 must divide model.width"),
  ],
)
def test_bad_language_model_config_is_rejected_with_a_fix(overrides, expected):
  config = tiny_shakespeare.get_config("smoke")
  config.update(overrides)
  with pytest.raises(UserError, match=expected):
    config_lib.validate(config)


def test_unwritable_workdir_is_rejected_before_loading_data(tmp_path):
  not_a_folder = tmp_path / "a_file"
  not_a_folder.write_text("")
  with pytest.raises(UserError, match="Cannot write to the workdir"):
    train.train_and_evaluate(_smoke(), str(not_a_folder / "run"))


def test_damaged_config_json_is_explained(tmp_path):
  (tmp_path / "config.json").write_text('{"model": ')
  with pytest.raises(UserError, match="config.json is not valid JSON"):
    train.train_and_evaluate(_smoke(), str(tmp_path))


@pytest.mark.parametrize(
  "address, count, index, expected",
  [
    (None, 2, None, "go together"),
    ("localhost:1234", None, 0, "go together"),
    ("localhost:1234", 2, 2, r"--process_id=2 must be in 0 \.\. "),
    ("localhost:1234", 0, 0, "must be in 0"),
  ],
)
def test_distributed_flags_are_checked(address, count, index, expected):
  with pytest.raises(UserError, match=expected):
    cli.initialize_distributed(address, count, index)


def test_mimetic_with_both_pairs_disabled_is_rejected():
  config = _smoke()
  config.mimetic.qk = None
  config.mimetic.vo = None
  with pytest.raises(UserError, match="changes nothing"):
    config_lib.validate(config)


def test_mimetic_strength_must_be_a_pair():
  with pytest.raises(UserError, match=r"must be a pair"):
    parse_strength((0.1, 0.2, 0.3), "mimetic.qk")
  assert parse_strength((None,), "mimetic.qk") is None
  assert parse_strength((0.7, -0.7), "mimetic.qk") == (0.7, -0.7)


@pytest.mark.e2e
def test_batch_larger_than_training_set_is_rejected(image_folder, tmp_path):
  result = run_main(
    tmp_path,
    f"--config.dataset.path={image_folder}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.batch_size=256",
    check=False,
  )
  assert result.returncode != 0
  assert "global batch size is larger than the training set" in result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_command_line_errors(tmp_path):
  typo = run_main(tmp_path, "--config.lerning_rate=1", check=False)
  assert typo.returncode != 0 and "Traceback" not in typo.stderr
  assert 'Did you mean "learning_rate"' in typo.stderr
  missing = run_main(
    tmp_path, f"--config.dataset.path={tmp_path / 'nowhere'}", check=False
  )
  assert missing.returncode != 0
  assert str(tmp_path / "nowhere") in missing.stderr
  assert "Traceback" not in missing.stderr
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
  "args, expected",
  [
    (["--config", "configs/cifar10.py:huge"], "Unknown preset 'huge'"),
    (["--config", "configs/nosuch.py"], "cannot load the --config file"),
    (
      ["--config", "configs/cifar10.py:smoke", "--config.batch_size=abc"],
      "--config.batch_size=abc: invalid literal",
    ),
  ],
)
def test_config_flag_errors_are_one_paragraph(args, expected, tmp_path):
  result = subprocess.run(
    [sys.executable, "main.py", *args, f"--workdir={tmp_path}"],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 1
  assert expected in result.stderr
  assert "Traceback" not in result.stderr
