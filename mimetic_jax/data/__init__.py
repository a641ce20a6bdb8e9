"""Datasets: `load(config, ...)` for either task, and what it returns.

`load` returns a `Dataset`: a typed `DatasetInfo` (what the model factory and
the evaluators need to know) and either this process's arrays (small
datasets, held in device memory by `feeds.InMemoryFeed`) or a `Stream` of
host-side batches (`dataset.in_memory=False`, `feeds.StreamedFeed`).
Modules: `images` / `image_folder` / `prepared` (tfds image datasets and
folders), `image_stream` (tf.data streaming), `text` (+ tokenizers, packing).
"""

from collections.abc import Iterator
import dataclasses
import functools
import os
from typing import Protocol

import ml_collections
import numpy as np

Arrays = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What is known about a dataset once it is loaded.

  Attributes:
    num_train: training examples (images, or token windows), all processes.
    num_eval: evaluation items (images, or target tokens), all processes,
      without padding.
    num_classes: image classification: classes (0 for a model without head).
    image_channels: image classification: channels of the images (3 = RGB).
    vocab_size: language modelling: tokens of the tokenizer.
    eval_num_bytes: language modelling: UTF-8 bytes the eval targets stand for.
    tokens_per_byte: language modelling: training target tokens per byte
      (exactly 1 for bytes), so that bits per byte = loss / ln 2 * this.
  """

  num_train: int = 0
  num_eval: int = 0
  num_classes: int = 0
  image_channels: int = 3
  vocab_size: int = 0
  eval_num_bytes: int = 0
  tokens_per_byte: float = 1.0


class Stream(Protocol):
  """Host-side batches of a dataset too large for device memory.

  Batches are this process's share: dicts of numpy arrays with a leading axis
  of `local_batch_size` (examples per step on this process).
  """

  def train_batches(self, local_batch_size: int, seed: int) -> Iterator[Arrays]:
    """Endless shuffled training batches, deterministic given `seed`."""

  def eval_batches(self, local_batch_size: int) -> Iterator[Arrays]:
    """One pass over the eval split; padding rows have `weight` 0."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """`info`, and this process's `train` / `eval` arrays or a `stream`.

  In memory, arrays have a leading example axis: images
  `{'image': uint8 (N, S, S, C), 'label': int (N,)}`, text
  `{'tokens': int32 (N, seq_len + 1)}`; `eval` adds a float `weight` (N,).
  """

  info: DatasetInfo
  train: Arrays | None = None
  eval: Arrays | None = None
  stream: Stream | None = None


@dataclasses.dataclass(frozen=True)
class ImageStream:
  """`Stream` of a tfds image dataset: host-side decode, crop and flip."""

  dataset_config: ml_collections.ConfigDict
  process_index: int
  process_count: int

  def _batches(self, **kwargs) -> Iterator[Arrays]:
    from mimetic_jax.data import image_stream  # Imports TensorFlow: lazy.

    return image_stream.make_streaming_iterator(
      self.dataset_config,
      image_size=self.dataset_config.image_size,
      process_index=self.process_index,
      process_count=self.process_count,
      **kwargs,
    )

  def train_batches(self, local_batch_size: int, seed: int) -> Iterator[Arrays]:
    for batch in self._batches(
      split=self.dataset_config.train_split,
      local_batch_size=local_batch_size,
      train=True,
      seed=seed,
    ):
      yield {"image": batch["image"], "label": batch["label"]}

  def eval_batches(self, local_batch_size: int) -> Iterator[Arrays]:
    for batch in self._batches(
      split=self.dataset_config.eval_split,
      local_batch_size=local_batch_size,
      train=False,
      seed=0,
    ):
      yield {
        "image": batch["image"],
        "label": batch["label"],
        "weight": batch["mask"].astype(np.float32),
      }


def _load_images(
  config: ml_collections.ConfigDict, *, process_index: int, process_count: int
) -> Dataset:
  from mimetic_jax.data import images  # pylint: disable=g-import-not-at-top

  if not config.dataset.in_memory:
    described = images.stream_info(config.dataset)
    return Dataset(
      info=DatasetInfo(
        num_train=described.num_train,
        num_eval=described.num_eval,
        num_classes=described.num_classes,
      ),
      stream=ImageStream(config.dataset, process_index, process_count),
    )
  arrays = images.load_arrays(
    config.dataset, process_index=process_index, process_count=process_count
  )
  num_eval = len(arrays.eval_labels)
  return Dataset(
    info=DatasetInfo(
      num_train=len(arrays.train_labels) * process_count,
      num_eval=num_eval * process_count,
      num_classes=arrays.num_classes,
      image_channels=arrays.train_images.shape[-1],
    ),
    train={"image": arrays.train_images, "label": arrays.train_labels},
    eval={
      "image": arrays.eval_images,
      "label": arrays.eval_labels,
      "weight": np.ones(num_eval, np.float32),
    },
  )


def tokens_per_byte(windows: np.ndarray, token_num_bytes: np.ndarray) -> float:
  """Target tokens per UTF-8 byte of packed training windows.

  Training losses are means over target tokens, so
  `bits per byte = loss / ln(2) * tokens_per_byte`. Exactly 1.0 for the byte
  tokenizer; below 1 for SentencePiece.

  Args:
    windows: int (N, seq_len + 1) windows; the targets are `windows[:, 1:]`.
    token_num_bytes: int (vocab_size,) bytes each token id stands for.

  Returns:
    `N * seq_len / token_num_bytes[windows[:, 1:]].sum()`.
  """
  vocab_size = len(token_num_bytes)
  # Counts over all tokens minus each window's first (not a target): no copy
  # of the (possibly GB-sized) target array.
  counts = np.bincount(windows.ravel(), minlength=vocab_size) - np.bincount(
    windows[:, 0], minlength=vocab_size
  )
  num_bytes = int(counts @ np.asarray(token_num_bytes, np.int64))
  if num_bytes <= 0:
    raise ValueError(
      "The training windows stand for no bytes of text; is "
      "the tokenizer's token_num_bytes table right?"
    )
  return windows.shape[0] * (windows.shape[1] - 1) / num_bytes


def _load_text(
  config: ml_collections.ConfigDict,
  *,
  process_index: int,
  process_count: int,
  workdir: str,
) -> Dataset:
  from mimetic_jax.data import sharding, text  # pylint: disable=g-import-not-at-top

  arrays = text.load_text(
    config.dataset, seq_len=config.seq_len, workdir=workdir
  )
  shard = lambda x: sharding.shard_for_process(x, process_index, process_count)
  return Dataset(
    info=DatasetInfo(
      num_train=len(arrays.train),
      num_eval=arrays.eval_num_tokens,
      vocab_size=arrays.vocab_size,
      eval_num_bytes=arrays.eval_num_bytes,
      tokens_per_byte=tokens_per_byte(
        arrays.train, arrays.tokenizer.token_num_bytes
      ),
    ),
    train={"tokens": shard(arrays.train)},
    eval={
      "tokens": shard(arrays.eval),
      "weight": shard(arrays.eval_mask.astype(np.float32)),
    },
  )


def load(
  config: ml_collections.ConfigDict,
  *,
  process_index: int,
  process_count: int,
  workdir: str,
) -> Dataset:
  """This process's share of the dataset `config.task` / `config.dataset`
  describe (text tokenizers are trained and cached under `workdir`)."""
  hide_accelerators_from_tensorflow()  # Before tfds imports TensorFlow.
  if config.task == "image":
    return _load_images(
      config, process_index=process_index, process_count=process_count
    )
  return _load_text(
    config,
    process_index=process_index,
    process_count=process_count,
    workdir=workdir,
  )


@functools.cache
def hide_accelerators_from_tensorflow() -> None:
  """Makes TensorFlow see no GPU or TPU, so only JAX ever claims them.

  TensorFlow is used here only to prepare tfds datasets and to stream with
  tf.data, on the host CPU; training on prepared in-memory data never imports
  it. `load` calls this first, as do the two modules that run TensorFlow
  (`prepared`, `image_stream`) for callers that skip `load`; it runs once per
  process. Without TensorFlow installed it does nothing.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # No CPU-feature notes.
  # TF prints a oneDNN banner twice at import unless this is set. Our TF
  # work (decode, crop, flip, resize) has no matmul or convolution, the ops
  # oneDNN replaces, so turning it off changes nothing else.
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  tf.config.set_visible_devices([], "GPU")
  tf.config.set_visible_devices([], "TPU")
