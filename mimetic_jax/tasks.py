"""What the compiled steps do differently for images and for text.

A task turns a batch into model inputs (augmenting on device when training)
and scores the model's outputs. Scores are per item (per image, or per
token) with a weight, so that padded evaluation examples count zero and sums
over devices are exact. Loading data (`data.load`), building models
(`models.factory`) and summarising scores (`evaluate`) live elsewhere.
"""

import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mimetic_jax import augment
from mimetic_jax.errors import UserError

Batch = dict[str, jax.Array]


class Task(Protocol):
  """The interface the steps use."""

  unit: str  # What throughput counts: 'img' or 'tok'.

  def inputs(
    self, batch: Batch, key: jax.Array | None, *, train: bool
  ) -> jax.Array: ...
  def score(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]: ...


def to_value_range(
  images: jax.Array, dataset: ml_collections.ConfigDict
) -> jax.Array:
  """Maps `[0, 1]` pixels linearly onto `dataset.value_range = (lo, hi)`:
  the one place that decides what the ViT sees (it normalises nothing
  itself; big_vision's `value_range` op). The default `(-2, 2)` is
  `(x - 0.5) / 0.25`."""
  lo, hi = dataset.value_range
  return images * (hi - lo) + lo


@dataclasses.dataclass(frozen=True)
class ImageClassification:
  """ViT classification; batches are `{'image': uint8 (B,H,W,C), 'label'}`."""

  config: ml_collections.ConfigDict
  unit: str = "img"

  def inputs(
    self, batch: Batch, key: jax.Array | None, *, train: bool
  ) -> jax.Array:
    images = batch["image"].astype(jnp.float32) / 255.0
    if train:  # Augmentation works on [0, 1] images.
      a = self.config.augment
      images = augment.augment_batch(
        key,
        images,
        crop_padding=a.crop_padding,
        flip=a.flip,
        randaugment_num_ops=a.randaugment_num_ops,
        randaugment_magnitude=a.randaugment_magnitude,
        cutout_size=a.cutout_size,
      )
    return to_value_range(images, self.config.dataset)

  def score(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    labels = batch["label"]
    targets = optax.smooth_labels(
      jax.nn.one_hot(labels, logits.shape[-1]), self.config.label_smoothing
    )
    return {
      "loss": optax.softmax_cross_entropy(logits, targets),
      "correct": (logits.argmax(-1) == labels).astype(jnp.float32),
      "weight": batch.get("weight", jnp.ones(labels.shape, jnp.float32)),
    }


@dataclasses.dataclass(frozen=True)
class LanguageModelling:
  """Causal LM; batches are `{'tokens': int32 (B, L+1), 'weight': (B, L)}`.

  Inputs are `tokens[:, :-1]`, targets `tokens[:, 1:]`; `weight` masks padded
  targets of the last evaluation window.
  """

  config: ml_collections.ConfigDict
  unit: str = "tok"

  def inputs(
    self, batch: Batch, key: jax.Array | None, *, train: bool
  ) -> jax.Array:
    del key, train
    return batch["tokens"][:, :-1]

  def score(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    targets = batch["tokens"][:, 1:]
    return {
      "loss": optax.softmax_cross_entropy_with_integer_labels(logits, targets),
      "correct": (logits.argmax(-1) == targets).astype(jnp.float32),
      "weight": batch.get("weight", jnp.ones(targets.shape, jnp.float32)),
    }


def get_task(config: ml_collections.ConfigDict) -> Task:
  tasks = {"image": ImageClassification, "lm": LanguageModelling}
  if config.task not in tasks:
    raise UserError(
      f"task={config.task!r} is not one of {sorted(tasks)}; "
      "start from a config in configs/."
    )
  return tasks[config.task](config)


def items_per_example(config: ml_collections.ConfigDict) -> int:
  """What one training example counts for throughput: 1 image, or
  `seq_len` target tokens."""
  return config.seq_len if config.task == "lm" else 1
