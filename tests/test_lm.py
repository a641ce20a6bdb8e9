"""Language modelling end to end: train, evaluate, resume, sample.

`main.py --config configs/tiny_shakespeare.py:smoke` runs as a subprocess on
the real Tiny Shakespeare text (prepared offline through tfds's manual_dir)
on 2 CPU devices, once per module; the tests then read its workdir, resume
it, and sample from its checkpoint with `sample.py` on 1 device.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import tiny_shakespeare, wikitext103
from mimetic_jax import config as config_lib
from mimetic_jax import data, sampling, tasks
from mimetic_jax.errors import UserError
from mimetic_jax.models.init import parse_strength

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, devices: int = 1) -> str:
  """Runs a repo-root script on `devices` CPU devices; returns its stdout."""
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
  )
  result = subprocess.run(
    [sys.executable, script, *args],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert result.returncode == 0, (
    f"{script} {' '.join(args)} failed:\n{result.stdout}\n"
    f"{result.stderr[-5000:]}"
  )
  return result.stdout


def _train(config: str, workdir, manual_dir, data_dir, *overrides) -> str:
  return _run(
    "main.py",
    f"--config={config}",
    f"--workdir={workdir}",
    f"--config.dataset.manual_dir={manual_dir}",
    f"--config.dataset.data_dir={data_dir}",
    *overrides,
    devices=2,
  )


def _metrics(workdir) -> list[dict]:
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def shakespeare_run(tmp_path_factory, tinyshakespeare_dir):
  """(workdir, data_dir, stdout) of one smoke training run."""
  root = tmp_path_factory.mktemp("lm")
  workdir, data_dir = root / "run", root / "tfds"
  stdout = _train(
    "configs/tiny_shakespeare.py:smoke", workdir, tinyshakespeare_dir, data_dir
  )
  return workdir, data_dir, stdout


# --------------------------------------------------------- end to end ---


@pytest.mark.e2e
def test_smoke_trains_evaluates_and_checkpoints(shakespeare_run):
  workdir, _, stdout = shakespeare_run
  assert "Initialized TransformerLM" in stdout
  assert "bpb" in stdout  # Train bits per byte in the progress lines.
  metrics = _metrics(workdir)
  train = [m for m in metrics if "train_loss" in m]
  assert [m["step"] for m in train] == [4, 8, 12]
  for m in train:
    # Byte tokens: exactly one token per byte.
    assert m["train_bits_per_byte"] == pytest.approx(
      m["train_loss"] / math.log(2), rel=1e-6
    )
    assert m["train_perplexity"] == pytest.approx(
      math.exp(m["train_loss"]), rel=1e-6
    )
    assert m["items_per_second"] > 0
  (final,) = [m for m in metrics if "eval_loss" in m]
  assert final["step"] == 12
  assert final["eval_perplexity"] == pytest.approx(
    math.exp(final["eval_loss"]), rel=1e-6
  )
  assert final["eval_bits_per_byte"] == pytest.approx(
    final["eval_loss"] / math.log(2), rel=1e-3
  )
  assert final["eval_bits_per_byte"] < 8.0  # Better than uniform bytes.
  checkpoints = workdir / "checkpoints"
  assert {p.name for p in checkpoints.iterdir()} >= {"6", "12"}
  assert json.loads((workdir / "final_metrics.json").read_text())["step"] == 12


@pytest.mark.e2e
def test_sample_script_continues_the_prompt(shakespeare_run):
  workdir, _, _ = shakespeare_run
  stdout = _run(
    "sample.py",
    f"--workdir={workdir}",
    "--prompt=ROMEO:",
    "--num_tokens=50",
    "--temperature=0.8",
    "--top_k=40",
    "--seed=0",
  )
  assert stdout.startswith("ROMEO:")
  assert len(stdout.rstrip("\n")) > len("ROMEO:")
  again = _run(
    "sample.py",
    f"--workdir={workdir}",
    "--prompt=ROMEO:",
    "--num_tokens=50",
    "--temperature=0.8",
    "--top_k=40",
    "--seed=0",
  )
  assert again == stdout  # Same seed, same text.


@pytest.mark.e2e
def test_rerun_resumes_from_the_checkpoint(
  shakespeare_run, tinyshakespeare_dir
):
  workdir, data_dir, _ = shakespeare_run
  stdout = _train(
    "configs/tiny_shakespeare.py:smoke",
    workdir,
    tinyshakespeare_dir,
    data_dir,
    "--config.total_steps=16",
  )
  assert "Resumed" in stdout and "at step 12" in stdout
  assert "Initialized" not in stdout
  steps = [m["step"] for m in _metrics(workdir) if "train_loss" in m]
  assert steps == [4, 8, 12, 16]
  assert (workdir / "checkpoints" / "16").is_dir()


@pytest.mark.e2e
def test_wikitext_smoke_with_sentencepiece_and_sampling(
  tmp_path, wikitext2_dir
):
  workdir = tmp_path / "run"
  _train(
    "configs/wikitext103.py:smoke", workdir, wikitext2_dir, tmp_path / "tfds"
  )
  metrics = _metrics(workdir)
  (final,) = [m for m in metrics if "eval_bits_per_byte" in m]
  assert final["eval_bits_per_byte"] > 0
  for m in (m for m in metrics if "train_loss" in m):
    ratio = m["train_bits_per_byte"] / (m["train_loss"] / math.log(2))
    assert 0.2 < ratio < 0.9  # SentencePiece: fewer tokens than bytes.
  assert list((workdir / "sentencepiece").glob("*_1024.model"))

  run = sampling.load_run(str(workdir))
  assert run.step == 12 and run.tokenizer.vocab_size == 1024
  tokens = sampling.generate(
    run.apply_fn,
    run.params,
    run.tokenizer.encode(" = Valkyria"),
    key=jax.random.key(0),
    num_tokens=20,
    seq_len=run.config.seq_len,
    temperature=1.0,
    top_k=10,
  )
  assert tokens.shape == (20,) and tokens.max() < 1024
  assert isinstance(run.tokenizer.decode(tokens), str)


# ------------------------------------------------------------ configs ---


@pytest.mark.parametrize("module", [tiny_shakespeare, wikitext103])
@pytest.mark.parametrize("preset", ["", "smoke"])
def test_lm_configs_are_complete(module, preset):
  config = module.get_config(preset)
  assert config.task == "lm"
  assert config.model.width % config.model.num_heads == 0
  for name in ("batch_size", "eval_batch_size"):
    assert config[name] % 8 == 0  # Any device count up to 8.
  for key in (
    "name",
    "data_dir",
    "manual_dir",
    "path",
    "train_split",
    "eval_split",
    "tokenizer",
    "vocab_size",
    "eval_fraction",
  ):
    assert key in config.dataset
  with pytest.raises(ValueError, match="preset"):
    module.get_config("nope")


def test_mimetic_variants_are_config_overrides():
  config = tiny_shakespeare.get_config()
  assert tuple(config.mimetic.qk) == (0.7, 0.7)
  assert tuple(config.mimetic.vo) == (0.4, -0.4)
  config.mimetic.vo = None  # QK-only, as --config.mimetic.vo=None does.
  config_lib.validate(config)
  assert parse_strength(config.mimetic.vo, "mimetic.vo") is None
  config.mimetic.qk = None  # VO-only, VO-positive.
  config.mimetic.vo = (0.05, 0.05)
  config_lib.validate(config)
  assert parse_strength(config.mimetic.vo, "mimetic.vo") == (0.05, 0.05)
  config.mimetic.vo = None  # Neither: a mistake, not a silent no-op.
  with pytest.raises(UserError, match="changes nothing"):
    config_lib.validate(config)


# ------------------------------------------------------------ tokens/byte ---


def test_tokens_per_byte_is_one_for_bytes_and_exact_otherwise():
  windows = np.arange(40, dtype=np.int32).reshape(4, 10) % 8
  assert data.tokens_per_byte(windows, np.ones(256, np.int32)) == 1.0
  num_bytes = np.array([1, 2, 3, 0, 1, 1, 4, 2], np.int32)
  expected = windows[:, 1:].size / num_bytes[windows[:, 1:]].sum()
  assert data.tokens_per_byte(windows, num_bytes) == pytest.approx(expected)
  with pytest.raises(ValueError, match="no bytes"):
    data.tokens_per_byte(windows, np.zeros(8, np.int32))


def test_items_per_example_counts_targets():
  config = ml_collections.ConfigDict({"task": "lm", "seq_len": 32})
  assert tasks.items_per_example(config) == 32


# ------------------------------------------------------------ generate ---

VOCAB = 11


def _cumsum_lm(params, tokens):
  """A causal 'model' whose position i predicts sum(tokens[:i+1]) + params."""
  nxt = (jnp.cumsum(tokens, axis=1) + params) % VOCAB
  return 10.0 * jax.nn.one_hot(nxt, VOCAB)


def _reference(prompt, num_tokens, seq_len, offset=0):
  text = list(prompt)
  for _ in range(num_tokens):
    text.append((sum(text[-seq_len:]) + offset) % VOCAB)
  return text[len(prompt) :]


def test_greedy_counting_model_gives_the_expected_sequence():
  def count(params, tokens):  # next = (last + 1) % V
    del params
    return 10.0 * jax.nn.one_hot((tokens + 1) % VOCAB, VOCAB)

  out = sampling.generate(
    count,
    None,
    np.array([3]),
    key=jax.random.key(0),
    num_tokens=15,
    seq_len=4,
    temperature=0.0,
    top_k=0,
  )
  np.testing.assert_array_equal(out, (np.arange(4, 19)) % VOCAB)
  assert out.dtype == np.int32


@pytest.mark.parametrize("prompt", [[1], [2, 5, 7], list(range(1, 10))])
def test_window_slides_past_seq_len(prompt):
  # Each token depends on the whole window, so a window that kept a stale
  # token or lost a fresh one would change the sequence.
  out = sampling.generate(
    _cumsum_lm,
    0,
    np.array(prompt),
    key=jax.random.key(0),
    num_tokens=12,
    seq_len=5,
    temperature=0.0,
    top_k=0,
  )
  np.testing.assert_array_equal(out, _reference(prompt, 12, 5))


def test_sampling_is_seeded_and_top_k_1_is_greedy():
  kwargs = dict(num_tokens=10, seq_len=4, temperature=1.0)
  greedy = sampling.generate(
    _cumsum_lm,
    3,
    np.array([1, 2]),
    key=jax.random.key(0),
    temperature=0.0,
    num_tokens=10,
    seq_len=4,
    top_k=0,
  )
  top1 = sampling.generate(
    _cumsum_lm, 3, np.array([1, 2]), key=jax.random.key(5), top_k=1, **kwargs
  )
  np.testing.assert_array_equal(top1, greedy)
  np.testing.assert_array_equal(greedy, _reference([1, 2], 10, 4, offset=3))

  uniform = lambda params, tokens: jnp.zeros(tokens.shape + (VOCAB,))
  a, b, c = (
    sampling.generate(
      uniform, None, np.array([0]), key=jax.random.key(seed), top_k=0, **kwargs
    )
    for seed in (0, 0, 1)
  )
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_generate_rejects_bad_arguments():
  kwargs = dict(key=jax.random.key(0), num_tokens=3, seq_len=4)
  with pytest.raises(ValueError, match="non-empty"):
    sampling.generate(_cumsum_lm, 0, np.array([], np.int32), **kwargs)
  with pytest.raises(ValueError, match="temperature"):
    sampling.generate(_cumsum_lm, 0, np.array([1]), temperature=-1.0, **kwargs)
  out = sampling.generate(
    _cumsum_lm, 0, np.array([1]), key=jax.random.key(0), num_tokens=0, seq_len=4
  )
  assert out.shape == (0,)


def test_load_run_explains_missing_workdir_and_checkpoint(tmp_path):
  with pytest.raises(UserError, match="main.py"):
    sampling.load_run(str(tmp_path))
  config = tiny_shakespeare.get_config("smoke")
  (tmp_path / "config.json").write_text(config.to_json_best_effort())
  with pytest.raises(UserError, match="No finalized checkpoint.*main.py"):
    sampling.load_run(str(tmp_path))
