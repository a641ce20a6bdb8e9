"""Tokenizers of the language models, and where a run keeps its vocabulary.

`ByteTokenizer` (UTF-8 bytes, vocabulary 256) needs nothing stored.
`SentencePieceTokenizer` is trained on a run's training text and cached as
`sentencepiece_path(dataset_config, workdir)`: the trainer writes it there
through `make_tokenizer`, and sampling reads it back with
`load_saved_tokenizer`, so both agree on the file by construction.

Imports neither TensorFlow nor tfds.
"""

from collections.abc import Iterator
import io
import os
import pathlib
import re
import tempfile

import ml_collections
import numpy as np
import sentencepiece as spm

from mimetic_jax.errors import UserError

# Token id of padding: the SentencePiece model reserves it, and the padded
# tail of the last eval window uses it (always masked).
PAD_ID = 0

TOKENIZERS = ("byte", "sentencepiece")


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
        f"[{ids.min()}, {ids.max()}]; these ids come from another tokenizer."
      )
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
      [self._piece_num_bytes(i) for i in range(self.vocab_size)], np.int32
    )

  def _piece_num_bytes(self, token_id: int) -> int:
    if self._sp.is_control(token_id) or self._sp.is_unknown(token_id):
      return 0
    if self._sp.is_byte(token_id):
      return 1
    return len(
      self._sp.id_to_piece(token_id).replace("\u2581", " ").encode("utf-8")
    )

  @classmethod
  def load_or_train(
    cls,
    model_path: str,
    train_text: str,
    vocab_size: int,
    *,
    max_corpus_chars: int = 10_000_000,
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
      UserError: `vocab_size` is too small or too large for the text.
    """
    if os.path.exists(model_path):
      with open(model_path, "rb") as f:
        return cls(f.read())
    model_proto = _train_sentencepiece(
      train_text[:max_corpus_chars], vocab_size
    )
    _write_atomically(model_path, model_proto)
    return cls(model_proto)

  def encode(self, text: str) -> np.ndarray:
    """Token ids of `text`: int32, shape (num_tokens,)."""
    # No piece spans "\n", so encoding newline-ended chunks equals encoding
    # the whole text, without one Python int per token for the whole split.
    chunks = [
      np.asarray(ids, np.int32)
      for ids in self._sp.encode(list(_newline_chunks(text)))
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int32)

  def decode(self, ids: np.ndarray) -> str:
    """Decodes token ids (1-D); incomplete byte sequences become U+FFFD."""
    return self._sp.decode(np.asarray(ids).tolist())


Tokenizer = ByteTokenizer | SentencePieceTokenizer


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
      pad_id=PAD_ID,
      unk_id=1,
      bos_id=-1,
      eos_id=-1,
      max_sentence_length=1 << 16,
      num_threads=os.cpu_count() or 1,
      minloglevel=2,
    )
  except RuntimeError as e:
    raise UserError(
      f"Could not train a SentencePiece vocabulary of exactly {vocab_size} "
      f"pieces: {e}. It must hold 256 byte pieces, 3 special pieces and "
      "every distinct character of the training text, and the text must "
      "offer enough distinct pieces to fill it; change "
      "--config.dataset.vocab_size accordingly."
    ) from e
  return model.getvalue()


def _write_atomically(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with tempfile.NamedTemporaryFile(
    dir=os.path.dirname(path) or ".", delete=False
  ) as f:
    f.write(data)
  os.replace(f.name, path)


def _check_tokenizer_name(dataset_config: ml_collections.ConfigDict) -> None:
  if dataset_config.tokenizer not in TOKENIZERS:
    raise UserError(
      f"Unknown dataset.tokenizer={dataset_config.tokenizer!r}; use 'byte' "
      "or 'sentencepiece' (--config.dataset.tokenizer=...)."
    )


def sentencepiece_path(
  dataset_config: ml_collections.ConfigDict, workdir: str
) -> str:
  """Where the run in `workdir` keeps its SentencePiece model.

  `workdir/sentencepiece/<source>_<train_split>_<vocab_size>.model`, with
  `<source>` the dataset name, or `text_folder_<file or folder name>` for a
  `dataset.path`. It depends on the config only (not on the text), so sampling
  finds the model without the training data, and a resumed run keeps the
  vocabulary its checkpoints were trained with.

  Args:
    dataset_config: the run's `config.dataset` (`name`, `path`,
      `train_split`, `vocab_size`).
    workdir: the run directory.
  """
  if dataset_config.path:
    stem = pathlib.Path(dataset_config.path).expanduser().name
    source = "text_folder_" + (stem.removesuffix(".txt") or "text")
  else:
    source = dataset_config.name
  name = f"{source}_{dataset_config.train_split}_{dataset_config.vocab_size}"
  return os.path.join(
    workdir, "sentencepiece", re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".model"
  )


def make_tokenizer(
  dataset_config: ml_collections.ConfigDict, workdir: str, train_text: str
) -> Tokenizer:
  """The trainer's tokenizer: bytes, or SentencePiece trained on
  `train_text` (once; later calls load `sentencepiece_path`).

  Raises:
    UserError: unknown `dataset.tokenizer`, or a `vocab_size` that does not
      fit the text.
  """
  _check_tokenizer_name(dataset_config)
  if dataset_config.tokenizer == "byte":
    return ByteTokenizer()
  return SentencePieceTokenizer.load_or_train(
    sentencepiece_path(dataset_config, workdir),
    train_text,
    dataset_config.vocab_size,
  )


def load_saved_tokenizer(
  dataset_config: ml_collections.ConfigDict, workdir: str
) -> Tokenizer:
  """The tokenizer a finished or running trainer run in `workdir` uses.

  Raises:
    UserError: unknown `dataset.tokenizer`, or no SentencePiece model at
      `sentencepiece_path` (the message says how to recreate it).
  """
  _check_tokenizer_name(dataset_config)
  if dataset_config.tokenizer == "byte":
    return ByteTokenizer()
  path = sentencepiece_path(dataset_config, workdir)
  if not os.path.isfile(path):
    folder = os.path.dirname(path)
    found = sorted(p.name for p in pathlib.Path(folder).glob("*.model"))
    raise UserError(
      f"The run's SentencePiece model {path} does not exist (the trainer "
      f"writes it there before training; {folder} holds "
      f"{found or 'no .model file'}). Was the workdir moved without it? "
      "Rerun the training command with this workdir to recreate it from the "
      "training text; a model from an older version of this project may "
      f"instead be renamed to {os.path.basename(path)}."
    )
  with open(path, "rb") as f:
    return SentencePieceTokenizer(f.read())
