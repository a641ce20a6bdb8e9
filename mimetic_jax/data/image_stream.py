"""Streamed image classification batches (ImageNet-size data), with tf.data.

Reads the array_record data that `image_source.get_builder` prepares, through
`tfds.data_source`, and decodes, crops and flips on the host with tf.data
(so this path, unlike `images.load_arrays`, needs TensorFlow). Keys of
`dataset_config` are those of `image_source`.
"""

from collections.abc import Iterator
import math

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mimetic_jax.data import (
  hide_accelerators_from_tensorflow,
  image_source,
  prepared,
)

_EVAL_CROP_FRACTION = 0.875  # Eval: resize shorter side to S / 0.875, crop S.
_CROP_AREA_RANGE = (0.08, 1.0)  # Inception-style random-resized crop.
_CROP_ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)


def _decode(data: tf.Tensor, channels: int = 3) -> tf.Tensor:
  """Encoded image bytes (JPEG, PNG, ...) -> uint8 (H, W, channels)."""
  return tf.io.decode_image(data, channels=channels, expand_animations=False)


def _resize(image: tf.Tensor, height_width) -> tf.Tensor:
  """uint8 (H, W, C) -> uint8 (height, width, C), bilinear and antialiased."""
  resized = tf.image.resize(
    image, height_width, method="bilinear", antialias=True
  )
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _encoded_examples(
  source, indices: np.ndarray, *, train: bool, seed: int
) -> tf.data.Dataset:
  """`{'image': encoded bytes, 'label'}` of `source[i]` for `i` in `indices`,
  in that order (eval, one pass) or in a fresh permutation of them every
  epoch (train, endless, deterministic given `seed`)."""

  def generate():
    for epoch in range(np.iinfo(np.int64).max) if train else [0]:
      order = (
        indices[np.random.default_rng([seed, epoch]).permutation(len(indices))]
        if train
        else indices
      )
      for index in order:
        example = source[int(index)]
        yield {"image": example["image"], "label": example["label"]}

  return tf.data.Dataset.from_generator(
    generate,
    output_signature={
      "image": tf.TensorSpec((), tf.string),
      "label": tf.TensorSpec((), tf.int64),
    },
  )


def _random_resized_crop(
  image: tf.Tensor, size: int, seed: tf.Tensor
) -> tf.Tensor:
  """Inception-style crop (8-100% of the area, aspect 3/4-4/3) to S x S."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
    tf.shape(image),
    bounding_boxes=tf.zeros([1, 0, 4]),
    seed=seed,
    min_object_covered=0.0,
    aspect_ratio_range=_CROP_ASPECT_RATIO_RANGE,
    area_range=_CROP_AREA_RANGE,
    max_attempts=10,
    use_image_if_no_bounding_boxes=True,
  )
  return _resize(tf.slice(image, begin, crop_size), (size, size))


def _resize_shorter_and_center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """Shorter side to round(S / 0.875), then the central S x S."""
  shorter = round(size / _EVAL_CROP_FRACTION)
  height_width = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = shorter / tf.reduce_min(height_width)
  new_height_width = tf.cast(tf.round(height_width * scale), tf.int32)
  image = _resize(image, new_height_width)
  top_left = (new_height_width - size) // 2
  image = tf.image.crop_to_bounding_box(
    image, top_left[0], top_left[1], size, size
  )
  return tf.ensure_shape(image, (size, size, 3))


def _train_dataset(
  ds: tf.data.Dataset, *, batch_size: int, image_size: int, seed: int
) -> tf.data.Dataset:
  """Augmented batches of endless shuffled examples (deterministic given
  `seed`)."""
  ds = ds.enumerate()

  def preprocess(index, ex):
    crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), index]), num=2
      )
    )
    image = _random_resized_crop(_decode(ex["image"]), image_size, crop_seed)
    return {
      "image": tf.image.stateless_random_flip_left_right(image, flip_seed),
      "label": tf.cast(ex["label"], tf.int32),
      "mask": tf.constant(True),
    }

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True)


def _eval_dataset(
  ds: tf.data.Dataset,
  *,
  batch_size: int,
  image_size: int,
  num_examples: int,
  num_batches: int,
) -> tf.data.Dataset:
  """One pass in `num_batches` batches, padded at the end with mask False."""
  ds = ds.map(
    lambda ex: {
      "image": _resize_shorter_and_center_crop(
        _decode(ex["image"]), image_size
      ),
      "label": tf.cast(ex["label"], tf.int32),
      "mask": tf.constant(True),
    },
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  padding = tf.data.Dataset.from_tensors(
    {
      "image": tf.zeros((image_size, image_size, 3), tf.uint8),
      "label": tf.constant(0, tf.int32),
      "mask": tf.constant(False),
    }
  ).repeat(num_batches * batch_size - num_examples)
  return ds.concatenate(padding).batch(batch_size, drop_remainder=True)


def make_streaming_iterator(
  dataset_config: ml_collections.ConfigDict,
  *,
  split: str,
  local_batch_size: int,
  image_size: int,
  train: bool,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Streams batches of this process's shard of `split` (ImageNet-size data).

  Images are decoded and augmented on the host with tf.data, with prefetch.
  Train (limited to `max_train_examples` if set): endless; a fresh
  permutation of the shard every epoch; Inception
  random-resized crop to S x S and random horizontal flip, deterministic given
  `seed`. Eval (limited to `max_eval_examples`): resize the shorter side to
  S / 0.875 and center-crop S x S; exactly one pass, the last batch padded
  with `mask` False. Every process yields the same number of eval batches
  (enough for the largest shard), so multi-host evaluation stays in step and
  each example of the split is scored exactly once.

  Args:
    dataset_config: see `image_source`.
    split: split name, e.g. 'train' or 'validation'.
    local_batch_size: examples per batch on this process.
    image_size: output side S.
    train: train (augmented, endless) or eval (one padded pass) pipeline.
    seed: seed of the per-epoch permutations and the augmentation (train
      only).
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing the data.

  Returns:
    An iterator of dicts: 'image' uint8 (B, S, S, 3), 'label' int32 (B,),
    'mask' bool (B,) (True = real example), B = `local_batch_size`.

  Raises:
    UserError: see `image_source.get_builder`; an unknown split name.
  """
  hide_accelerators_from_tensorflow()
  builder = image_source.get_builder(dataset_config)
  max_examples = (
    dataset_config.max_train_examples
    if train
    else dataset_config.max_eval_examples
  )
  full_split = image_source.split_expression(builder, split, max_examples)
  source = prepared.data_source(
    builder, full_split, decoders={"image": tfds.decode.SkipDecoding()}
  )
  indices = image_source.process_indices(
    builder,
    full_split,
    process_index=process_index,
    process_count=process_count,
  )
  ds = _encoded_examples(source, indices, train=train, seed=seed)
  if train:
    ds = _train_dataset(
      ds, batch_size=local_batch_size, image_size=image_size, seed=seed
    )
  else:
    largest_shard = math.ceil(len(source) / process_count)
    ds = _eval_dataset(
      ds,
      batch_size=local_batch_size,
      image_size=image_size,
      num_examples=len(indices),
      num_batches=math.ceil(largest_shard / local_batch_size),
    )
  return iter(tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE)))
