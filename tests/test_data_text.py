"""Tests for mimetic_jax.data.text, .packing, .tokenizers, .wikitext103 and
.text_folder.

The network is disabled for the whole module (sockets and `requests`), so a
test that needed a download fails instead of silently fetching data.
"""

import pathlib
import socket

import ml_collections
import numpy as np
import pytest
import requests
import tensorflow as tf
import tensorflow_datasets as tfds

from mimetic_jax.data import (
  packing,
  prepared,
  text,
  text_folder,
  tokenizers,
  wikitext103,
)
from mimetic_jax.errors import UserError

SEQ_LEN = 64


class _NetworkDisabled:
  """Counts and refuses every connection attempt."""

  def __init__(self):
    self.attempts = 0

  def refuse(self, *args, **kwargs):
    del args, kwargs
    self.attempts += 1
    raise requests.exceptions.ConnectionError("network disabled in tests")


@pytest.fixture(scope="module", autouse=True)
def network():
  """Disables the network; `requests` fails at once instead of retrying."""
  disabled = _NetworkDisabled()
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(socket, "getaddrinfo", disabled.refuse)
    mp.setattr(socket, "create_connection", disabled.refuse)
    mp.setattr(socket.socket, "connect", disabled.refuse)
    mp.setattr(requests.adapters.HTTPAdapter, "send", disabled.refuse)
    yield disabled


def _config(data_dir, **overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(
    dict(
      name="tiny_shakespeare",
      data_dir=str(data_dir),
      manual_dir="",
      path="",
      train_split="train",
      eval_split="validation",
      tokenizer="byte",
      vocab_size=400,
      eval_fraction=0.1,
    )
  )
  config.update(overrides)
  return config


def _unpack(windows: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
  """The token stream that `pack`/`pack_eval` cut into `windows`."""
  if not len(windows):
    return np.zeros(0, np.int32)
  targets = windows[:, 1:]
  if mask is not None:
    targets = targets[mask]
  return np.concatenate([windows[0, :1], targets.ravel()])


def _read(path) -> str:
  return pathlib.Path(path).read_bytes().decode("utf-8")


def _split_text(builder, split) -> str:
  source = builder.as_data_source(split=split)
  return "".join(source[i]["text"].decode() for i in range(len(source)))


# ----------------------------------------------------------------- packing ---


def test_pack_targets_are_inputs_shifted_and_cover_every_token_once():
  tokens = np.arange(1000, dtype=np.int32)
  windows = packing.pack(tokens, SEQ_LEN)
  num = (len(tokens) - 1) // SEQ_LEN
  assert windows.shape == (num, SEQ_LEN + 1) and windows.dtype == np.int32
  inputs, targets = windows[:, :-1], windows[:, 1:]
  np.testing.assert_array_equal(targets[:, :-1], inputs[:, 1:])
  np.testing.assert_array_equal(windows[:, 0], np.arange(num) * SEQ_LEN)
  # Targets, flattened, are tokens[1:] without repeats or gaps.
  np.testing.assert_array_equal(targets.ravel(), tokens[1 : num * SEQ_LEN + 1])


def test_pack_stride_and_short_input():
  tokens = np.arange(10)
  np.testing.assert_array_equal(
    packing.pack(tokens, 3, stride=1)[:, 0], np.arange(7)
  )
  assert packing.pack(tokens[:3], 3).shape == (0, 4)
  with pytest.raises(ValueError, match="1-D"):
    packing.pack(tokens.reshape(2, 5), 3)


@pytest.mark.parametrize(
  "num_tokens",
  [0, 1, 2, SEQ_LEN, SEQ_LEN + 1, SEQ_LEN + 2, 3 * SEQ_LEN + 1, 1000],
)
def test_pack_eval_covers_split_exactly_once_with_padding_masked(num_tokens):
  tokens = np.arange(1, num_tokens + 1, dtype=np.int32)  # 0 is the pad id.
  windows, mask = packing.pack_eval(tokens, SEQ_LEN)
  num_windows = -(-max(num_tokens - 1, 0) // SEQ_LEN)
  assert windows.shape == (num_windows, SEQ_LEN + 1)
  assert mask.shape == (num_windows, SEQ_LEN) and mask.dtype == bool
  assert mask.sum() == max(num_tokens - 1, 0)
  np.testing.assert_array_equal(windows[:, 1:][mask], tokens[1:])
  assert np.all(windows[:, 1:][~mask] == tokenizers.PAD_ID)
  if num_windows > 1:
    np.testing.assert_array_equal(windows[1:, 0], windows[:-1, -1])


# -------------------------------------------------------------- tokenizers ---


def test_byte_tokenizer_round_trips_arbitrary_unicode():
  rng = np.random.default_rng(0)
  code_points = rng.integers(0, 0x110000, size=5000)
  code_points = code_points[(code_points < 0xD800) | (code_points > 0xDFFF)]
  sample = "".join(map(chr, code_points)) + "\x00\r\n é漢字🙂"
  tokenizer = tokenizers.ByteTokenizer()
  ids = tokenizer.encode(sample)
  assert ids.dtype == np.int32 and len(ids) == len(sample.encode("utf-8"))
  assert tokenizer.decode(ids) == sample
  assert tokenizer.decode(ids[:-1]).endswith("\ufffd")  # Cut emoji.
  with pytest.raises(ValueError, match=r"\[0, 256\)"):
    tokenizer.decode(np.array([256]))


def _small_corpus(seed: int) -> str:
  rng = np.random.default_rng(seed)
  words = [
    "the",
    "king",
    "queen",
    "crown",
    "of",
    "and",
    "to",
    "my",
    "lord",
    "thou",
    "art",
    "hath",
    "été",
    "naïve",
    "  spaced",
    "\ttab",
  ]
  lines = (
    " ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(3000)
  )
  return "\n".join(lines) + "\n\n"


def test_sentencepiece_round_trips_and_reuses_cached_model(tmp_path):
  model_path = str(tmp_path / "cache" / "spm.model")
  corpus = _small_corpus(0)
  tokenizer = tokenizers.SentencePieceTokenizer.load_or_train(
    model_path, corpus, vocab_size=300
  )
  unseen = "  Unseen: 漢字🙂 ñ\r\n\n  double  spaces \t end"
  for sample in (corpus, unseen):
    ids = tokenizer.encode(sample)
    assert ids.dtype == np.int32
    assert tokenizer.decode(ids) == sample
    assert tokenizer.token_num_bytes[ids].sum() == len(sample.encode())
  assert len(tokenizer.encode(corpus)) < len(corpus.encode()) / 2
  assert pathlib.Path(model_path).is_file()

  # Training on empty text would fail, so this must load the cached file.
  cached = tokenizers.SentencePieceTokenizer.load_or_train(
    model_path, "", vocab_size=300
  )
  assert cached.vocab_size == tokenizer.vocab_size == 300
  np.testing.assert_array_equal(cached.encode(unseen), tokenizer.encode(unseen))


@pytest.mark.parametrize("vocab_size", [260, 5000])
def test_sentencepiece_unfit_vocab_size_is_explained(tmp_path, vocab_size):
  with pytest.raises(UserError, match="--config.dataset.vocab_size"):
    tokenizers.SentencePieceTokenizer.load_or_train(
      str(tmp_path / "spm.model"), _small_corpus(0), vocab_size=vocab_size
    )
  assert not (tmp_path / "spm.model").exists()


# -------------------------------------------------------- tiny_shakespeare ---


@pytest.fixture(scope="module")
def shakespeare_data_dir(tinyshakespeare_dir, tmp_path_factory):
  """A tfds data_dir where load_text prepared tiny_shakespeare offline."""
  data_dir = tmp_path_factory.mktemp("tfds")
  text.load_text(
    _config(data_dir, manual_dir=str(tinyshakespeare_dir)),
    seq_len=SEQ_LEN,
    workdir=str(data_dir / "work"),
  )
  return data_dir


def test_tiny_shakespeare_prepares_offline_with_tfds_splits(
  tinyshakespeare_dir, shakespeare_data_dir
):
  source = _read(tinyshakespeare_dir / "input.txt")
  # tfds's documented split: first 90% of characters, then half of the rest.
  i = int(len(source) * 0.9)
  j = i + int((len(source) - i) * 0.5)
  expected = {
    "train": source[:i],
    "validation": source[i:j],
    "test": source[j:],
  }
  builder = tfds.builder("tiny_shakespeare", data_dir=shakespeare_data_dir)
  assert set(builder.info.splits) == set(expected)
  for split, split_text in expected.items():
    assert builder.info.splits[split].num_examples == 1
    assert _split_text(builder, split) == split_text
  assert [len(expected[s]) for s in ("train", "validation", "test")] == [
    1003854,
    55770,
    55770,
  ]
  assert tf.config.get_visible_devices("GPU") == []


def test_load_text_tiny_shakespeare_windows_hold_the_split_texts(
  tinyshakespeare_dir, shakespeare_data_dir, tmp_path
):
  config = _config(
    shakespeare_data_dir, manual_dir=str(tinyshakespeare_dir), eval_split="test"
  )
  arrays = text.load_text(config, seq_len=SEQ_LEN, workdir=str(tmp_path))
  source = _read(tinyshakespeare_dir / "input.txt").encode()
  train_bytes = source[: int(len(source) * 0.9)]  # ASCII: bytes == chars.
  test_bytes = source[len(source) - 55770 :]
  assert arrays.train.shape == ((len(train_bytes) - 1) // SEQ_LEN, SEQ_LEN + 1)
  train_tokens = _unpack(arrays.train)
  assert (
    bytes(train_tokens.astype(np.uint8)) == train_bytes[: len(train_tokens)]
  )
  assert len(train_bytes) - len(train_tokens) < SEQ_LEN
  assert bytes(_unpack(arrays.eval, arrays.eval_mask).astype(np.uint8)) == (
    test_bytes
  )
  assert arrays.eval_num_tokens == arrays.eval_num_bytes == len(test_bytes) - 1
  assert arrays.vocab_size == 256


def test_prepared_data_needs_no_manual_dir(shakespeare_data_dir, tmp_path):
  config = _config(shakespeare_data_dir, manual_dir=str(tmp_path / "gone"))
  arrays = text.load_text(config, seq_len=SEQ_LEN, workdir=str(tmp_path))
  assert arrays.eval_num_tokens == 55770 - 1


def test_offline_without_manual_dir_explains_what_to_do(tmp_path, network):
  attempts = network.attempts
  with pytest.raises(UserError) as error:
    text.load_text(
      _config(tmp_path / "tfds"), seq_len=SEQ_LEN, workdir=str(tmp_path)
    )
  assert network.attempts > attempts  # It tried to download, and was refused.
  message = str(error.value)
  for part in (
    str(tmp_path / "tfds"),
    "offline",
    "input.txt",
    "--config.dataset.manual_dir=",
    "--config.dataset.path=",
  ):
    assert part in message


@pytest.mark.parametrize("name", ["tiny_shakespeare", "wikitext103"])
@pytest.mark.parametrize("make_dir", [False, True])
def test_bad_manual_dir_is_explained(tmp_path, name, make_dir):
  manual_dir = tmp_path / "manual"
  if make_dir:
    manual_dir.mkdir()
    (manual_dir / "unrelated.txt").write_text("x")
  with pytest.raises(UserError) as error:
    text.load_text(
      _config(tmp_path / "tfds", name=name, manual_dir=str(manual_dir)),
      seq_len=SEQ_LEN,
      workdir=str(tmp_path),
    )
  message = str(error.value)
  expected_file = "input.txt" if name == "tiny_shakespeare" else "wiki.test.raw"
  for part in (str(manual_dir), expected_file, "--config.dataset.path="):
    assert part in message
  assert not (tmp_path / "tfds" / name).exists()


def test_unknown_name_and_tokenizer_are_explained(tmp_path):
  with pytest.raises(UserError, match="dataset.path"):
    text.load_text(
      _config(tmp_path, name=""), seq_len=SEQ_LEN, workdir=str(tmp_path)
    )
  (tmp_path / "a.txt").write_text("some text " * 100)
  with pytest.raises(UserError, match="'byte' or 'sentencepiece'"):
    text.load_text(
      _config(tmp_path, path=str(tmp_path / "a.txt"), tokenizer="bpe"),
      seq_len=SEQ_LEN,
      workdir=str(tmp_path),
    )
  with pytest.raises(UserError, match="lower seq_len"):
    text.load_text(
      _config(tmp_path, path=str(tmp_path / "a.txt")),
      seq_len=5000,
      workdir=str(tmp_path),
    )


# ------------------------------------------------------------- wikitext103 ---


def test_split_articles_is_lossless_and_splits_only_at_titles():
  lines = [
    " \n",
    " = First = \n",
    " \n",
    " Body with = signs = \n",
    " \n",
    " = = Section = = \n",
    " \n",
    " text\n",
    " = Not a title = \n",
    " \n",
    " \n",
    " = Second = \n",
    " \n",
    " more\n",
  ]
  articles = list(wikitext103.split_articles(lines))
  assert "".join(articles) == "".join(lines)
  assert len(articles) == 2
  assert articles[1].startswith(" \n = Second = \n")


def test_wikitext103_prepares_available_splits_from_manual_dir(
  wikitext2_dir, tmp_path
):
  builder = wikitext103.Wikitext103(data_dir=tmp_path)
  prepared.prepare(
    builder,
    download_config=tfds.download.DownloadConfig(
      manual_dir=wikitext2_dir, try_download_gcs=False
    ),
  )
  assert set(builder.info.splits) == {"validation", "test"}
  for split, file_name in (("validation", "valid.txt"), ("test", "test.txt")):
    source = _read(wikitext2_dir / file_name)
    titles = sum(
      line.startswith(" = ") and not line.startswith(" = = ")
      for line in source.split("\n")
    )
    assert _split_text(builder, split) == source
    # WikiText-2 has 60 articles in each of these splits.
    assert builder.info.splits[split].num_examples == 60 <= titles

  with pytest.raises(UserError, match="wiki.train.raw|manual_dir"):
    text.load_text(
      _config(tmp_path, name="wikitext103", manual_dir=str(wikitext2_dir)),
      seq_len=SEQ_LEN,
      workdir=str(tmp_path),
    )
  arrays = text.load_text(
    _config(
      tmp_path,
      name="wikitext103",
      manual_dir=str(wikitext2_dir),
      train_split="validation",
      eval_split="test",
    ),
    seq_len=SEQ_LEN,
    workdir=str(tmp_path),
  )
  eval_text = _read(wikitext2_dir / "test.txt")
  assert (
    tokenizers.ByteTokenizer().decode(_unpack(arrays.eval, arrays.eval_mask))
    == eval_text
  )
  assert arrays.eval_num_bytes == len(eval_text.encode()) - 1


def test_wikitext103_manual_dir_without_split_files_fails(tmp_path):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  (manual_dir / "notes.md").write_text("x")
  builder = wikitext103.Wikitext103(data_dir=tmp_path / "tfds")
  with pytest.raises(UserError, match="wiki.train.raw"):
    prepared.prepare(
      builder,
      download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, try_download_gcs=False
      ),
    )


# -------------------------------------------------------------- user text ---


def test_user_text_file_is_split_at_eval_fraction(tmp_path):
  content = "Première ligne — été.\n" * 300 + "last line, no newline 🙂"
  source = tmp_path / "My Notes.txt"
  source.write_bytes(content.encode())
  config = _config(tmp_path / "tfds", path=str(source), eval_fraction=0.25)
  arrays = text.load_text(config, seq_len=SEQ_LEN, workdir=str(tmp_path))
  cut = int(len(content) * 0.75)
  decode = tokenizers.ByteTokenizer().decode
  assert decode(_unpack(arrays.eval, arrays.eval_mask)) == content[cut:]
  train_bytes = bytes(_unpack(arrays.train).astype(np.uint8))
  assert content[:cut].encode().startswith(train_bytes)
  assert len(content[:cut].encode()) - len(train_bytes) < SEQ_LEN
  [config_dir] = (tmp_path / "tfds" / "text_folder").iterdir()
  assert config_dir.name.startswith("my_notes_")


def test_user_text_folder_split_per_file_and_prepared_once(
  tmp_path, monkeypatch
):
  folder = tmp_path / "corpus"
  (folder / "sub").mkdir(parents=True)
  texts = {
    "b.txt": "bbbb " * 200,
    "sub/a.txt": "aaaa\n" * 100,
    "c.txt": "cc " * 300,
  }
  for name, content in texts.items():
    (folder / name).write_text(content)
  (folder / "ignored.md").write_text("not text data")
  config = _config(tmp_path / "tfds", path=str(folder), eval_fraction=0.2)
  first = text.load_text(config, seq_len=SEQ_LEN, workdir=str(tmp_path))

  # Sorted relative paths: b.txt, c.txt, sub/a.txt; each split at 80%. The
  # b and c parts end with a space, so a newline joins them to the next.
  ordered = [texts[name] for name in ("b.txt", "c.txt", "sub/a.txt")]
  cuts = [int(len(t) * 0.8) for t in ordered]
  expected_eval = "\n".join(t[c:] for t, c in zip(ordered, cuts))
  decode = tokenizers.ByteTokenizer().decode
  assert decode(_unpack(first.eval, first.eval_mask)) == expected_eval
  expected_train = "\n".join(t[:c] for t, c in zip(ordered, cuts))
  train_text = decode(_unpack(first.train))
  assert expected_train.startswith(train_text)
  assert len(expected_train) - len(train_text) < SEQ_LEN

  # A second load reuses the prepared data without generating examples.
  def fail(*args, **kwargs):
    raise AssertionError("dataset was prepared again")

  monkeypatch.setattr(text_folder.TextFolder, "_generate_examples", fail)
  second = text.load_text(config, seq_len=SEQ_LEN, workdir=str(tmp_path))
  np.testing.assert_array_equal(second.train, first.train)
  np.testing.assert_array_equal(second.eval, first.eval)
  assert len(list((tmp_path / "tfds" / "text_folder").iterdir())) == 1


def test_user_text_path_errors(tmp_path):
  with pytest.raises(UserError, match="dataset.path"):
    text.load_text(
      _config(tmp_path, path=str(tmp_path / "missing")),
      seq_len=SEQ_LEN,
      workdir=str(tmp_path),
    )
  (tmp_path / "a.txt").write_text("text")
  with pytest.raises(UserError, match=r"\[0, 1\)"):
    text.load_text(
      _config(tmp_path, path=str(tmp_path / "a.txt"), eval_fraction=1.0),
      seq_len=SEQ_LEN,
      workdir=str(tmp_path),
    )
  (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1") * 100)
  with pytest.raises(UserError, match="not valid UTF-8"):
    text.load_text(
      _config(tmp_path / "tfds", path=str(tmp_path / "latin1.txt")),
      seq_len=SEQ_LEN,
      workdir=str(tmp_path),
    )


def test_load_text_sentencepiece_counts_bytes_and_reuses_tokenizer(tmp_path):
  source = tmp_path / "corpus.txt"
  source.write_text(_small_corpus(1))
  config = _config(
    tmp_path / "tfds",
    path=str(source),
    tokenizer="sentencepiece",
    vocab_size=300,
  )
  workdir = str(tmp_path / "w")
  first = text.load_text(config, seq_len=SEQ_LEN, workdir=workdir)
  [model_file] = (tmp_path / "w" / "sentencepiece").iterdir()
  assert model_file.name == "text_folder_corpus_train_300.model"
  assert str(model_file) == tokenizers.sentencepiece_path(config, workdir)
  content = _small_corpus(1)
  eval_text = content[int(len(content) * 0.9) :]
  eval_tokens = _unpack(first.eval, first.eval_mask)
  assert first.tokenizer.decode(eval_tokens) == eval_text
  assert first.eval_num_tokens == len(eval_tokens) - 1
  first_token_bytes = first.tokenizer.token_num_bytes[eval_tokens[0]]
  assert first.eval_num_bytes == len(eval_text.encode()) - first_token_bytes
  assert first.vocab_size == 300

  mtime = model_file.stat().st_mtime_ns
  second = text.load_text(config, seq_len=SEQ_LEN, workdir=workdir)
  assert model_file.stat().st_mtime_ns == mtime
  np.testing.assert_array_equal(second.train, first.train)

  # What sampling reads back, without the text, is the same tokenizer.
  source.unlink()
  saved = tokenizers.load_saved_tokenizer(config, workdir)
  assert saved.vocab_size == 300
  np.testing.assert_array_equal(saved.encode(eval_text), eval_tokens)


def test_load_saved_tokenizer_explains_a_missing_model(tmp_path):
  config = _config(
    tmp_path, name="wikitext103", tokenizer="sentencepiece", vocab_size=300
  )
  assert isinstance(
    tokenizers.load_saved_tokenizer(_config(tmp_path), str(tmp_path)),
    tokenizers.ByteTokenizer,
  )
  other = tmp_path / "sentencepiece" / "wikitext103_train_8192.model"
  other.parent.mkdir()
  other.write_bytes(b"")
  with pytest.raises(UserError) as error:
    tokenizers.load_saved_tokenizer(config, str(tmp_path))
  for part in (
    "wikitext103_train_300.model",
    other.name,
    "Rerun the training command",
  ):
    assert part in str(error.value)
  with pytest.raises(UserError, match="'byte' or 'sentencepiece'"):
    tokenizers.load_saved_tokenizer(
      _config(tmp_path, tokenizer="bpe"), str(tmp_path)
    )
