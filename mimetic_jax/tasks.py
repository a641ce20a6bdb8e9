"""What differs between image classification and language modelling.

The trainer (`train.py`) is task-agnostic: a task loads its data as numpy
arrays with a leading example axis, builds the model, turns a batch into model
inputs (augmenting on device when training) and scores the model's outputs.
Scores are per item (per image, or per token) with a weight, so that padded
evaluation examples count zero and sums over devices are exact.
"""

from collections.abc import Iterator
import dataclasses
import math
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mimetic_jax import augment
from mimetic_jax.models import TransformerLM, ViT, decode_variant

Batch = dict[str, jax.Array]


class Stream(Protocol):
  """Host-side batches of a dataset too large for device memory.

  Batches are this process's share: dicts of numpy arrays with a leading axis
  of `local_batch_size` (examples per step on this process).
  """

  def train_batches(self, local_batch_size: int,
                    seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless shuffled training batches, deterministic given `seed`."""

  def eval_batches(self, local_batch_size: int
                   ) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the eval split; padding rows have `weight` 0."""


@dataclasses.dataclass(frozen=True)
class Data:
  """Arrays with a leading example axis; `eval` includes a float `weight`.

  A streamed dataset has empty `train` / `eval`, a `stream`, and its global
  split sizes in `info['num_train']` / `info['num_eval']`.
  """
  train: dict[str, np.ndarray]
  eval: dict[str, np.ndarray]
  info: dict[str, Any]  # num_classes / vocab_size, eval_num_bytes, ...
  stream: Stream | None = None

  @property
  def num_train(self) -> int:
    """Training examples of this process (all of them when streamed)."""
    if self.stream is not None:
      return self.info["num_train"]
    return len(next(iter(self.train.values())))


class Task(Protocol):
  """The interface the trainer uses."""
  config: ml_collections.ConfigDict
  unit: str  # What throughput counts: 'img' or 'tok'.

  def load_data(self, *, process_index: int, process_count: int,
                workdir: str) -> Data: ...
  def make_model(self, data: Data) -> Any: ...
  def dummy_inputs(self, data: Data) -> jax.Array: ...
  def inputs(self, batch: Batch, key: jax.Array, *, train: bool) -> jax.Array: ...
  def score(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]: ...
  def items_per_example(self, data: Data) -> int: ...


def _model_dtype(name: str):
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype must be 'float32' or 'bfloat16'; got "
                     f"{name!r}.")
  return jnp.dtype(name)


def to_value_range(images: jax.Array,
                   dataset: ml_collections.ConfigDict) -> jax.Array:
  """Maps `[0, 1]` pixels linearly onto `dataset.value_range = (lo, hi)`:
  the one place that decides what the ViT sees (it normalises nothing
  itself; big_vision's `value_range` op). The default `(-2, 2)` is
  `(x - 0.5) / 0.25`."""
  lo, hi = dataset.value_range
  return images * (hi - lo) + lo


@dataclasses.dataclass
class ImageClassification:
  """ViT classification; batches are `{'image': uint8 (B,H,W,3), 'label'}`."""
  config: ml_collections.ConfigDict
  unit: str = "img"

  def load_data(self, *, process_index: int, process_count: int,
                workdir: str) -> Data:
    del workdir
    from mimetic_jax.data import images  # pylint: disable=g-import-not-at-top
    if not self.config.dataset.in_memory:
      info = images.stream_info(self.config.dataset)
      return Data(train={}, eval={}, info=dataclasses.asdict(info),
                  stream=ImageStream(self.config.dataset, process_index,
                                     process_count))
    arrays = images.load_arrays(self.config.dataset,
                                process_index=process_index,
                                process_count=process_count)
    return Data(
        train={"image": arrays.train_images, "label": arrays.train_labels},
        eval={"image": arrays.eval_images, "label": arrays.eval_labels,
              "weight": np.ones(len(arrays.eval_labels), np.float32)},
        info={"num_classes": arrays.num_classes,
              "class_names": arrays.class_names})

  def make_model(self, data: Data) -> ViT:
    m = self.config.model
    arch = decode_variant(m.variant) if m.variant else dict(
        width=m.width, depth=m.depth, mlp_dim=m.mlp_dim,
        num_heads=m.num_heads, patch_size=m.patch_size)
    return ViT(num_classes=data.info["num_classes"], pool=m.pool,
               posemb=m.posemb, dropout=m.dropout,
               gelu_approximate=m.gelu_approximate,
               dtype=_model_dtype(m.dtype),
               attention_implementation=(None if m.attention == "auto"
                                         else m.attention), **arch)

  def dummy_inputs(self, data: Data) -> jax.Array:
    size = self.config.dataset.image_size  # Streams decode to RGB.
    shape = data.eval["image"].shape[1:] if data.eval else (size, size, 3)
    return jnp.zeros((1,) + shape, jnp.float32)

  def inputs(self, batch: Batch, key: jax.Array, *, train: bool) -> jax.Array:
    images = batch["image"].astype(jnp.float32) / 255.0
    if train:  # Augmentation works on [0, 1] images.
      a = self.config.augment
      images = augment.augment_batch(
          key, images, crop_padding=a.crop_padding, flip=a.flip,
          randaugment_num_ops=a.randaugment_num_ops,
          randaugment_magnitude=a.randaugment_magnitude,
          cutout_size=a.cutout_size)
    return to_value_range(images, self.config.dataset)

  def score(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    labels = batch["label"]
    targets = optax.smooth_labels(
        jax.nn.one_hot(labels, logits.shape[-1]), self.config.label_smoothing)
    return {
        "loss": optax.softmax_cross_entropy(logits, targets),
        "correct": (logits.argmax(-1) == labels).astype(jnp.float32),
        "weight": batch.get("weight", jnp.ones(labels.shape, jnp.float32)),
    }

  def items_per_example(self, data: Data) -> int:
    del data
    return 1


@dataclasses.dataclass(frozen=True)
class ImageStream:
  """`Stream` of a tfds image dataset: host-side decode, crop and flip."""
  dataset_config: ml_collections.ConfigDict
  process_index: int
  process_count: int

  def _batches(self, **kwargs):
    from mimetic_jax.data import image_stream  # Imports TensorFlow: lazy.
    return image_stream.make_streaming_iterator(
        self.dataset_config, image_size=self.dataset_config.image_size,
        process_index=self.process_index, process_count=self.process_count,
        **kwargs)

  def train_batches(self, local_batch_size: int, seed: int):
    for batch in self._batches(split=self.dataset_config.train_split,
                               local_batch_size=local_batch_size, train=True,
                               seed=seed):
      yield {"image": batch["image"], "label": batch["label"]}

  def eval_batches(self, local_batch_size: int):
    for batch in self._batches(split=self.dataset_config.eval_split,
                               local_batch_size=local_batch_size, train=False,
                               seed=0):
      yield {"image": batch["image"], "label": batch["label"],
             "weight": batch["mask"].astype(np.float32)}


@dataclasses.dataclass
class LanguageModelling:
  """Causal LM; batches are `{'tokens': int32 (B, L+1), 'weight': (B, L)}`.

  Inputs are `tokens[:, :-1]`, targets `tokens[:, 1:]`; `weight` masks padded
  targets of the last evaluation window.
  """
  config: ml_collections.ConfigDict
  unit: str = "tok"

  def load_data(self, *, process_index: int, process_count: int,
                workdir: str) -> Data:
    from mimetic_jax.data import text  # pylint: disable=g-import-not-at-top
    arrays = text.load_text(self.config.dataset, seq_len=self.config.seq_len,
                            workdir=workdir)
    shard = lambda x: np.array_split(x, process_count)[process_index]
    return Data(
        train={"tokens": shard(arrays.train)},
        eval={"tokens": shard(arrays.eval),
              "weight": shard(arrays.eval_mask.astype(np.float32))},
        info={"vocab_size": arrays.vocab_size,
              "eval_num_bytes": arrays.eval_num_bytes,
              "eval_num_tokens": arrays.eval_num_tokens,
              "tokens_per_byte": tokens_per_byte(
                  arrays.train, arrays.tokenizer.token_num_bytes),
              "tokenizer": arrays.tokenizer})

  def make_model(self, data: Data) -> TransformerLM:
    m = self.config.model
    return TransformerLM(
        vocab_size=data.info["vocab_size"], width=m.width, depth=m.depth,
        num_heads=m.num_heads, mlp_dim=m.mlp_dim, max_len=self.config.seq_len,
        posemb=m.posemb, tie_embeddings=m.tie_embeddings, dropout=m.dropout,
        dtype=_model_dtype(m.dtype))

  def dummy_inputs(self, data: Data) -> jax.Array:
    del data
    return jnp.zeros((1, self.config.seq_len), jnp.int32)

  def inputs(self, batch: Batch, key: jax.Array, *, train: bool) -> jax.Array:
    del key, train
    return batch["tokens"][:, :-1]

  def score(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    targets = batch["tokens"][:, 1:]
    return {
        "loss": optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                targets),
        "correct": (logits.argmax(-1) == targets).astype(jnp.float32),
        "weight": batch.get("weight", jnp.ones(targets.shape, jnp.float32)),
    }

  def items_per_example(self, data: Data) -> int:
    """Targets (tokens) per training window: `seq_len`."""
    return data.train["tokens"].shape[1] - 1


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
  counts = (np.bincount(windows.ravel(), minlength=vocab_size) -
            np.bincount(windows[:, 0], minlength=vocab_size))
  num_bytes = int(counts @ np.asarray(token_num_bytes, np.int64))
  if num_bytes <= 0:
    raise ValueError("The training windows stand for no bytes of text; is "
                     "the tokenizer's token_num_bytes table right?")
  return windows.shape[0] * (windows.shape[1] - 1) / num_bytes


def get_task(config: ml_collections.ConfigDict) -> Task:
  tasks = {"image": ImageClassification, "lm": LanguageModelling}
  if config.task not in tasks:
    raise ValueError(f"Unknown task {config.task!r}; use one of "
                     f"{sorted(tasks)}.")
  return tasks[config.task](config)


def summarize_eval(sums: dict[str, float], data: Data) -> dict[str, float]:
  """Turns summed eval scores into the metrics the logs report."""
  n = sums["weight"]
  metrics = {"eval_loss": sums["loss"] / n, "eval_accuracy": sums["correct"] / n}
  if "eval_num_bytes" in data.info:
    metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 700.0))
    metrics["eval_bits_per_byte"] = (
        sums["loss"] / math.log(2) / data.info["eval_num_bytes"])
  return metrics
