"""Text data for causal language models: sources, reading, `load_text`.

`load_text(config.dataset, seq_len=..., workdir=...)` is the trainer-facing
entry point. It prepares one of these sources through tfds, tokenizes it
(`tokenizers`) and packs it into int32 token windows (`packing`):

* `name="tiny_shakespeare"`: tfds's builder (train/validation/test are the
  90/5/5 character split of `input.txt`, one example each).
* `name="wikitext103"`: `mimetic_jax.data.wikitext103`, one example per
  article.
* `path=FILE_OR_DIR` (overrides `name`): `mimetic_jax.data.text_folder`, a
  user's `.txt` file or folder, with splits `train` and `validation`.

A split's examples are concatenated in order, with a newline inserted after
every example that does not already end with one (WikiText articles do, so
their concatenation is the source file). The text is tokenized as a whole;
training windows drop the incomplete last window, eval windows pad and mask
it (see `packing`).

Offline, tfds reads the source files from `dataset.manual_dir` (passed as
`tfds.download.DownloadConfig(manual_dir=...)`): for tiny_shakespeare tfds
itself finds `input.txt` there through the file name registered in its
checksums, and verifies the checksum; wikitext103 looks for its raw split
files there.
"""

from collections.abc import Callable
import dataclasses
import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mimetic_jax.data import (
  packing,
  prepared,
  text_folder,
  tokenizers,
  wikitext103,
)
from mimetic_jax.errors import UserError


@dataclasses.dataclass(frozen=True, eq=False)
class TextArrays:
  """Packed token windows of one dataset.

  Attributes:
    train: int32 (N, seq_len + 1) training windows; inputs = `[:, :-1]`,
      targets = `[:, 1:]`.
    eval: int32 (M, seq_len + 1) eval windows covering the eval split exactly
      once; the last one is padded with `tokenizers.PAD_ID`.
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
  tokenizer: tokenizers.Tokenizer
  vocab_size: int


@dataclasses.dataclass(frozen=True)
class _NamedDataset:
  """A named tfds dataset and where its source files come from."""

  make_builder: Callable[[str | None], tfds.core.DatasetBuilder]
  manual_files: tuple[str, ...]  # Any of these makes a usable manual_dir.
  source: str  # Where to get `manual_files`.


_NAMED_DATASETS = {
  "tiny_shakespeare": _NamedDataset(
    make_builder=lambda data_dir: tfds.builder(
      "tiny_shakespeare", data_dir=data_dir
    ),
    manual_files=("input.txt",),
    source=(
      "https://raw.githubusercontent.com/karpathy/char-rnn/master/"
      "data/tinyshakespeare/input.txt"
    ),
  ),
  "wikitext103": _NamedDataset(
    make_builder=lambda data_dir: wikitext103.Wikitext103(data_dir=data_dir),
    manual_files=tuple(
      name for names in wikitext103.SPLIT_FILES.values() for name in names
    ),
    source=f"the unzipped {wikitext103.ARCHIVE_URL}",
  ),
}


def _named_dataset(name: str) -> _NamedDataset:
  if name not in _NAMED_DATASETS:
    raise UserError(
      f"Unknown dataset.name={name!r}. Use one of "
      f"{sorted(_NAMED_DATASETS)}, or set --config.dataset.path to a text "
      "file or folder of .txt files to train on your own text."
    )
  return _NAMED_DATASETS[name]


def _check_manual_dir(
  manual_dir: str, name: str, dataset: _NamedDataset
) -> None:
  """Raises UserError unless `manual_dir` holds a source file."""
  files = " or ".join(dataset.manual_files)
  if not os.path.isdir(manual_dir):
    problem = "does not exist or is not a folder"
  elif not any(
    os.path.isfile(os.path.join(manual_dir, f)) for f in dataset.manual_files
  ):
    problem = "holds none of the expected files"
  else:
    return
  raise UserError(
    f"dataset.manual_dir={manual_dir} {problem}. For {name} it must hold "
    f"{files} (from {dataset.source}). Fix --config.dataset.manual_dir, "
    "leave it empty to download, or train on your own text with "
    "--config.dataset.path=FILE_OR_DIR."
  )


def _prepare_named(
  builder: tfds.core.DatasetBuilder,
  name: str,
  dataset: _NamedDataset,
  manual_dir: str,
) -> None:
  """Prepares `builder` from `manual_dir`, or by downloading if it is ''."""
  if builder.is_prepared():
    return
  if manual_dir:
    _check_manual_dir(manual_dir, name, dataset)
  try:
    prepared.prepare(
      builder,
      download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir or None, try_download_gcs=False
      ),
    )
  except (OSError, tfds.download.DownloadError) as e:
    if manual_dir:
      raise
    raise UserError(
      f"{name} is not prepared in data_dir {builder.data_dir_root} and "
      f"downloading its source failed ({e}); the machine appears to be "
      f"offline. Get {' or '.join(dataset.manual_files)} from "
      f"{dataset.source} on a connected machine, put it in a folder here "
      "and pass --config.dataset.manual_dir=DIR, or train on your own text "
      "with --config.dataset.path=FILE_OR_DIR."
    ) from e


def _prepared_builder(
  config: ml_collections.ConfigDict,
) -> tfds.core.DatasetBuilder:
  """The tfds builder of `config`'s source, prepared in `config.data_dir`."""
  data_dir = config.data_dir or None
  if config.path:
    with prepared.per_source_config():
      builder = text_folder.TextFolder(
        config=text_folder.make_config(config.path, config.eval_fraction),
        data_dir=data_dir,
      )
    if not builder.is_prepared():
      prepared.prepare(
        builder,
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
      )
    return builder
  dataset = _named_dataset(config.name)
  builder = dataset.make_builder(data_dir)
  _prepare_named(builder, config.name, dataset, config.manual_dir)
  return builder


def _join_documents(texts: list[str]) -> str:
  """Concatenates `texts`, adding "\\n" after each but the last lacking one."""
  return "".join(t if t.endswith("\n") else t + "\n" for t in texts[:-1]) + (
    texts[-1] if texts else ""
  )


def _read_split(builder: tfds.core.DatasetBuilder, split: str) -> str:
  """The text of `split`: its examples' "text" in order, joined.

  Raises:
    UserError: `builder` has no split `split`.
  """
  splits = builder.info.splits
  if split not in splits:
    raise UserError(
      f"{builder.name} prepared in {builder.data_dir} has splits "
      f"{sorted(splits)}, not {split!r}. Choose one of them with "
      "--config.dataset.train_split / eval_split; if the split's source "
      "file was missing from manual_dir when the data was prepared, add it "
      f"there and delete {builder.data_dir} to prepare again."
    )
  return _join_documents(
    [
      example["text"].decode("utf-8")
      for example in prepared.read_all(builder, split)
    ]
  )


def load_text(
  dataset_config: ml_collections.ConfigDict, *, seq_len: int, workdir: str
) -> TextArrays:
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
    UserError: with what is missing or wrong and how to fix it (no data,
      offline, unknown name, split or tokenizer, unfit vocab_size, too little
      training text).
  """
  builder = _prepared_builder(dataset_config)
  train_text = _read_split(builder, dataset_config.train_split)
  eval_text = _read_split(builder, dataset_config.eval_split)
  tokenizer = tokenizers.make_tokenizer(dataset_config, workdir, train_text)
  train = packing.pack(tokenizer.encode(train_text), seq_len)
  if not len(train):
    raise UserError(
      f"The {dataset_config.train_split!r} split of {builder.name} is too "
      f"short for one window of seq_len + 1 = {seq_len + 1} tokens; lower "
      "seq_len or use more training text."
    )
  eval_tokens = tokenizer.encode(eval_text)
  eval_windows, eval_mask = packing.pack_eval(eval_tokens, seq_len)
  return TextArrays(
    train=train,
    eval=eval_windows,
    eval_mask=eval_mask,
    eval_num_bytes=int(tokenizer.token_num_bytes[eval_tokens[1:]].sum()),
    eval_num_tokens=int(eval_mask.sum()),
    tokenizer=tokenizer,
    vocab_size=tokenizer.vocab_size,
  )
