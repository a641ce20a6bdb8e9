"""Text data for causal language models: tfds sources, tokenizers, packing.

`load_text(config.dataset, seq_len=..., workdir=...)` is the trainer-facing
entry point. It prepares one of these sources through tfds and returns packed
int32 token windows:

* `name="tiny_shakespeare"`: tfds's builder (train/validation/test are the
  90/5/5 character split of `input.txt`, one example each).
* `name="wikitext103"`: `mimetic_jax.data.wikitext103`, one example per
  article.
* `path=FILE_OR_DIR` (overrides `name`): `mimetic_jax.data.text_folder`, a
  user's `.txt` file or folder, with splits `train` and `validation`.

A split's examples are concatenated in order, with a newline inserted after
every example that does not already end with one (WikiText articles do, so
their concatenation is the source file). The text is tokenized as a whole and
packed into windows of `seq_len + 1` tokens that share one token at their
boundary, `window[i] = tokens[i * seq_len : i * seq_len + seq_len + 1]`, with
`inputs = window[:, :-1]` and `targets = window[:, 1:]`. Every token after the
first is then a target exactly once. Training drops the incomplete last
window; evaluation pads it with `PAD_ID` and masks the padding, so the eval
split is scored exactly once.

Offline, tfds reads the source files from `dataset.manual_dir` (passed as
`tfds.download.DownloadConfig(manual_dir=...)`): for tiny_shakespeare tfds
itself finds `input.txt` there through the file name registered in its
checksums, and verifies the checksum; wikitext103 looks for its raw split
files there.
"""

from collections.abc import Callable, Iterator
import dataclasses
import io
import os
import re
import tempfile

import ml_collections
import numpy as np
import sentencepiece as spm
import tensorflow_datasets as tfds

from mimetic_jax.data import prepared
from mimetic_jax.data import text_folder
from mimetic_jax.data import wikitext103

# Token id of the padding that fills the last eval window (always masked).
PAD_ID = 0


class ByteTokenizer:
  """UTF-8 bytes as tokens: vocabulary of 256, lossless for any `str`."""

  vocab_size = 256
  # UTF-8 bytes that each token id stands for, shape (vocab_size,), int32.
  token_num_bytes = np.ones(256, np.int32)

  def encode(self, text: str) -> np.ndarray:
    """The UTF-8 bytes of `text`: int32, shape (len(text.encode()),)."""
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

  def decode(self, ids: np.ndarray) -> str:
    """Decodes byte ids (any int dtype, 1-D); bad UTF-8 becomes U+FFFD.

    Raises:
      ValueError: an id is outside [0, 256).
    """
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(
          f"byte token ids must be in [0, 256), got values in "
          f"[{ids.min()}, {ids.max()}]; these ids come from another tokenizer.")
    return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class SentencePieceTokenizer:
  """Lossless SentencePiece unigram tokenizer with byte fallback.

  Trained without normalisation, without a dummy prefix and with `"\\n"` as a
  piece of its own, so `decode(encode(text)) == text` for any text that does
  not contain U+2581 (SentencePiece's own whitespace marker). Characters unseen
  in training are encoded as their UTF-8 bytes. Ids: `PAD_ID` (0) is padding,
  1 is unknown (never produced thanks to byte fallback); there is no BOS/EOS.
  """

  def __init__(self, model_proto: bytes):
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.vocab_size: int = self._sp.vocab_size()
    # UTF-8 bytes that each token id stands for, shape (vocab_size,), int32:
    # bits per byte = total target NLL / ln(2) / token_num_bytes[targets].sum()
    self.token_num_bytes = np.array(
        [self._piece_num_bytes(i) for i in range(self.vocab_size)], np.int32)

  def _piece_num_bytes(self, token_id: int) -> int:
    if self._sp.is_control(token_id) or self._sp.is_unknown(token_id):
      return 0
    if self._sp.is_byte(token_id):
      return 1
    return len(self._sp.id_to_piece(token_id).replace("\u2581", " ")
               .encode("utf-8"))

  @classmethod
  def load_or_train(cls, model_path: str, train_text: str, vocab_size: int, *,
                    max_corpus_chars: int = 10_000_000
                    ) -> "SentencePieceTokenizer":
    """Loads `model_path`, or trains on `train_text` and saves it there.

    Args:
      model_path: the cached `.model` file; written atomically, so concurrent
        processes never read a partial file.
      train_text: the training split's text; its first `max_corpus_chars`
        characters are used for training (as in flax's lm1b example).
      vocab_size: the exact vocabulary size to train: at least 256 byte
        pieces, 3 special pieces and every distinct character of the corpus,
        and no more pieces than the corpus offers.
      max_corpus_chars: training-corpus budget in characters.

    Raises:
      ValueError: `vocab_size` is too small or too large for the text.
    """
    if os.path.exists(model_path):
      with open(model_path, "rb") as f:
        return cls(f.read())
    model_proto = _train_sentencepiece(train_text[:max_corpus_chars],
                                       vocab_size)
    _write_atomically(model_path, model_proto)
    return cls(model_proto)

  def encode(self, text: str) -> np.ndarray:
    """Token ids of `text`: int32, shape (num_tokens,)."""
    # No piece spans "\n", so encoding newline-ended chunks equals encoding
    # the whole text, without one Python int per token for the whole split.
    chunks = [np.asarray(ids, np.int32)
              for ids in self._sp.encode(list(_newline_chunks(text)))]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int32)

  def decode(self, ids: np.ndarray) -> str:
    """Decodes token ids (1-D); incomplete byte sequences become U+FFFD."""
    return self._sp.decode(np.asarray(ids).tolist())


def _newline_chunks(text: str, chunk_chars: int = 1 << 20) -> Iterator[str]:
  """Splits `text` after newlines into chunks of about `chunk_chars`."""
  start = 0
  while start < len(text):
    end = text.find("\n", start + chunk_chars)
    end = len(text) if end < 0 else end + 1
    yield text[start:end]
    start = end


def _train_sentencepiece(text: str, vocab_size: int) -> bytes:
  """Trains a lossless unigram model on `text`; returns the model proto."""
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=(line for line in text.split("\n") if line),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n"],
        pad_id=PAD_ID, unk_id=1, bos_id=-1, eos_id=-1,
        max_sentence_length=1 << 16,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
  except RuntimeError as e:
    raise ValueError(
        f"Could not train a SentencePiece vocabulary of exactly {vocab_size} "
        f"pieces: {e}. It must hold 256 byte pieces, 3 special pieces and "
        "every distinct character of the training text, and the text must "
        "offer enough distinct pieces to fill it; change "
        "--config.dataset.vocab_size accordingly.") from e
  return model.getvalue()


def _write_atomically(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=os.path.dirname(path) or ".",
                                   delete=False) as f:
    f.write(data)
  os.replace(f.name, path)


Tokenizer = ByteTokenizer | SentencePieceTokenizer


@dataclasses.dataclass(frozen=True, eq=False)
class TextArrays:
  """Packed token windows of one dataset.

  Attributes:
    train: int32 (N, seq_len + 1) training windows; inputs = `[:, :-1]`,
      targets = `[:, 1:]`.
    eval: int32 (M, seq_len + 1) eval windows covering the eval split exactly
      once; the last one is padded with `PAD_ID`.
    eval_mask: bool (M, seq_len), True where `eval[:, 1:]` is a real target.
    eval_num_bytes: UTF-8 bytes of the eval text that the real targets stand
      for (all of it but the first token's), so bits per byte =
      `sum(mask * nll_nats) / ln(2) / eval_num_bytes`.
    eval_num_tokens: number of real eval targets, `eval_mask.sum()`.
    tokenizer: the tokenizer that produced the ids.
    vocab_size: the tokenizer's vocabulary size.
  """
  train: np.ndarray
  eval: np.ndarray
  eval_mask: np.ndarray
  eval_num_bytes: int
  eval_num_tokens: int
  tokenizer: Tokenizer
  vocab_size: int


def pack(tokens: np.ndarray, seq_len: int, *,
         stride: int | None = None) -> np.ndarray:
  """Cuts `tokens` into windows of `seq_len + 1` tokens.

  Window i is `tokens[i * stride : i * stride + seq_len + 1]`; a final window
  that would run past the end is dropped. With the default
  `stride = seq_len`, consecutive windows share one token, so every token
  after the first is a target (`window[1:]`) exactly once.

  Args:
    tokens: int (T,) token ids.
    seq_len: model input length.
    stride: step between window starts; defaults to `seq_len`.

  Returns:
    int32 (max(0, (T - seq_len - 1) // stride + 1), seq_len + 1).

  Raises:
    ValueError: `tokens` is not 1-D, or `seq_len` or `stride` is below 1.
  """
  stride = seq_len if stride is None else stride
  tokens = np.asarray(tokens, np.int32)
  if tokens.ndim != 1 or seq_len < 1 or stride < 1:
    raise ValueError(
        f"pack needs 1-D tokens and seq_len, stride >= 1; got tokens of shape "
        f"{tokens.shape}, seq_len={seq_len}, stride={stride}.")
  if len(tokens) < seq_len + 1:
    return np.zeros((0, seq_len + 1), np.int32)
  windows = np.lib.stride_tricks.sliding_window_view(tokens, seq_len + 1)
  return np.array(windows[::stride])


def pack_eval(tokens: np.ndarray, seq_len: int, *,
              pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
  """Packs `tokens` like `pack`, padding the last window so none is lost.

  Args:
    tokens: int (T,) token ids.
    seq_len: model input length.
    pad_id: id filling the padded tail.

  Returns:
    windows: int32 (M, seq_len + 1) with M = ceil((T - 1) / seq_len).
    mask: bool (M, seq_len), True where `windows[:, 1:]` is a real target;
      `mask.sum() == max(T - 1, 0)`.
  """
  tokens = np.asarray(tokens, np.int32)
  num_targets = max(len(tokens) - 1, 0)
  num_windows = -(-num_targets // seq_len)
  padded = np.full(num_windows * seq_len + 1, pad_id, np.int32)
  padded[:len(tokens)] = tokens
  mask = np.arange(num_windows * seq_len) < num_targets
  return pack(padded, seq_len), mask.reshape(num_windows, seq_len)


@dataclasses.dataclass(frozen=True)
class _NamedDataset:
  """A named tfds dataset and where its source files come from."""
  make_builder: Callable[[str | None], tfds.core.DatasetBuilder]
  manual_files: tuple[str, ...]  # Any of these makes a usable manual_dir.
  source: str  # Where to get `manual_files`.


_NAMED_DATASETS = {
    "tiny_shakespeare": _NamedDataset(
        make_builder=lambda data_dir: tfds.builder(
            "tiny_shakespeare", data_dir=data_dir),
        manual_files=("input.txt",),
        source=("https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                "data/tinyshakespeare/input.txt"),
    ),
    "wikitext103": _NamedDataset(
        make_builder=lambda data_dir: wikitext103.Wikitext103(
            data_dir=data_dir),
        manual_files=tuple(name for names in wikitext103.SPLIT_FILES.values()
                           for name in names),
        source=f"the unzipped {wikitext103.ARCHIVE_URL}",
    ),
}


def _named_dataset(name: str) -> _NamedDataset:
  if name not in _NAMED_DATASETS:
    raise ValueError(
        f"Unknown dataset.name={name!r}. Use one of "
        f"{sorted(_NAMED_DATASETS)}, or set --config.dataset.path to a text "
        "file or folder of .txt files to train on your own text.")
  return _NAMED_DATASETS[name]


def _check_manual_dir(manual_dir: str, name: str,
                      dataset: _NamedDataset) -> None:
  """Raises FileNotFoundError unless `manual_dir` holds a source file."""
  files = " or ".join(dataset.manual_files)
  if not os.path.isdir(manual_dir):
    problem = "does not exist or is not a folder"
  elif not any(os.path.isfile(os.path.join(manual_dir, f))
               for f in dataset.manual_files):
    problem = "holds none of the expected files"
  else:
    return
  raise FileNotFoundError(
      f"dataset.manual_dir={manual_dir} {problem}. For {name} it must hold "
      f"{files} (from {dataset.source}). Fix --config.dataset.manual_dir, "
      "leave it empty to download, or train on your own text with "
      "--config.dataset.path=FILE_OR_DIR.")


def _prepare_named(builder: tfds.core.DatasetBuilder, name: str,
                   dataset: _NamedDataset, manual_dir: str) -> None:
  """Prepares `builder` from `manual_dir`, or by downloading if it is ''."""
  if builder.is_prepared():
    return
  if manual_dir:
    _check_manual_dir(manual_dir, name, dataset)
  try:
    prepared.prepare(builder, download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir or None, try_download_gcs=False))
  except (OSError, tfds.download.DownloadError) as e:
    if manual_dir:
      raise
    raise RuntimeError(
        f"{name} is not prepared in data_dir {builder.data_dir_root} and "
        f"downloading its source failed ({e}); the machine appears to be "
        f"offline. Get {' or '.join(dataset.manual_files)} from "
        f"{dataset.source} on a connected machine, put it in a folder here "
        "and pass --config.dataset.manual_dir=DIR, or train on your own text "
        "with --config.dataset.path=FILE_OR_DIR.") from e


def _prepared_builder(config: ml_collections.ConfigDict
                      ) -> tfds.core.DatasetBuilder:
  """The tfds builder of `config`'s source, prepared in `config.data_dir`."""
  data_dir = config.data_dir or None
  if config.path:
    with prepared.per_source_config():
      builder = text_folder.TextFolder(
          config=text_folder.make_config(config.path, config.eval_fraction),
          data_dir=data_dir)
    if not builder.is_prepared():
      prepared.prepare(builder, download_config=tfds.download.DownloadConfig(
          try_download_gcs=False))
    return builder
  dataset = _named_dataset(config.name)
  builder = dataset.make_builder(data_dir)
  _prepare_named(builder, config.name, dataset, config.manual_dir)
  return builder


def _join_documents(texts: list[str]) -> str:
  """Concatenates `texts`, adding "\\n" after each but the last lacking one."""
  return "".join(t if t.endswith("\n") else t + "\n"
                 for t in texts[:-1]) + (texts[-1] if texts else "")


def _read_split(builder: tfds.core.DatasetBuilder, split: str) -> str:
  """The text of `split`: its examples' "text" in order, joined.

  Raises:
    ValueError: `builder` has no split `split`.
  """
  splits = builder.info.splits
  if split not in splits:
    raise ValueError(
        f"{builder.name} prepared in {builder.data_dir} has splits "
        f"{sorted(splits)}, not {split!r}. Choose one of them with "
        "--config.dataset.train_split / eval_split; if the split's source "
        "file was missing from manual_dir when the data was prepared, add it "
        f"there and delete {builder.data_dir} to prepare again.")
  return _join_documents([example["text"].decode("utf-8")
                          for example in prepared.read_all(builder, split)])


def _make_tokenizer(config: ml_collections.ConfigDict,
                    builder: tfds.core.DatasetBuilder, train_text: str,
                    workdir: str) -> Tokenizer:
  """The configured tokenizer; SentencePiece is cached under `workdir`."""
  if config.tokenizer == "byte":
    return ByteTokenizer()
  if config.tokenizer == "sentencepiece":
    source = "_".join(filter(None, [builder.name, builder.builder_config_name,
                                    config.train_split]))
    source = re.sub(r"[^A-Za-z0-9_.-]+", "_", source)
    model_path = os.path.join(workdir, "sentencepiece",
                              f"{source}_{config.vocab_size}.model")
    return SentencePieceTokenizer.load_or_train(model_path, train_text,
                                                config.vocab_size)
  raise ValueError(
      f"Unknown dataset.tokenizer={config.tokenizer!r}; use 'byte' or "
      "'sentencepiece'.")


def load_text(dataset_config: ml_collections.ConfigDict, *, seq_len: int,
              workdir: str) -> TextArrays:
  """Prepares, tokenizes and packs the configured text dataset.

  Args:
    dataset_config: `name` ('tiny_shakespeare' | 'wikitext103'), `data_dir`
      (tfds data dir, '' = tfds default), `manual_dir` (offline source files,
      '' = download), `path` (a user's .txt file or folder; overrides `name`),
      `train_split`, `eval_split`, `tokenizer` ('byte' | 'sentencepiece'),
      `vocab_size` (SentencePiece only), `eval_fraction` (`path` only).
    seq_len: model input length; windows hold `seq_len + 1` tokens.
    workdir: run directory; the SentencePiece model is cached in
      `workdir/sentencepiece/`.

  Returns:
    The packed train and eval windows, see `TextArrays`.

  Raises:
    FileNotFoundError, RuntimeError, ValueError: with what is missing or wrong
      and how to fix it (no data, offline, unknown name, split or tokenizer,
      too little training text).
  """
  builder = _prepared_builder(dataset_config)
  train_text = _read_split(builder, dataset_config.train_split)
  eval_text = _read_split(builder, dataset_config.eval_split)
  tokenizer = _make_tokenizer(dataset_config, builder, train_text, workdir)
  train = pack(tokenizer.encode(train_text), seq_len)
  if not len(train):
    raise ValueError(
        f"The {dataset_config.train_split!r} split of {builder.name} is too "
        f"short for one window of seq_len + 1 = {seq_len + 1} tokens; lower "
        "seq_len or use more training text.")
  eval_tokens = tokenizer.encode(eval_text)
  eval_windows, eval_mask = pack_eval(eval_tokens, seq_len)
  return TextArrays(
      train=train,
      eval=eval_windows,
      eval_mask=eval_mask,
      eval_num_bytes=int(tokenizer.token_num_bytes[eval_tokens[1:]].sum()),
      eval_num_tokens=int(eval_mask.sum()),
      tokenizer=tokenizer,
      vocab_size=tokenizer.vocab_size,
  )
