"""Image classification data for the trainer, without TensorFlow.

`load_arrays` puts this process's shard of the train and eval splits in host
memory (small datasets: CIFAR, SVHN, up to a few GB), decoding the prepared
records with Pillow; `stream_info` gives the split sizes of a dataset that is
streamed instead (by `image_stream`). Both take an image `dataset_config`
(keys in `image_source`, which prepares the data on first use).
"""

import dataclasses
import io

import ml_collections
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from mimetic_jax.data import image_source, prepared


@dataclasses.dataclass(frozen=True, eq=False)
class ImageArrays:
  """This process's shard of the train and eval splits, in host memory.

  Attributes:
    train_images: uint8 (N, S, S, C), S = `dataset_config.image_size`.
    train_labels: int32 (N,), in [0, num_classes).
    eval_images: uint8 (M, S, S, C).
    eval_labels: int32 (M,).
    num_classes: number of classes.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  eval_images: np.ndarray
  eval_labels: np.ndarray
  num_classes: int


def _decode_image(data: bytes, channels: int, size: int) -> np.ndarray:
  """Encoded image bytes (JPEG, PNG, ...) -> uint8 (size, size, channels).

  Images that are not already `size x size` are resized (bilinear; Pillow
  antialiases when it shrinks); grayscale or RGBA sources become `channels`.
  """
  with PIL.Image.open(io.BytesIO(data)) as image:
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
      image = image.resize((size, size), PIL.Image.Resampling.BILINEAR)
    pixels = np.asarray(image, np.uint8)
  return pixels.reshape(size, size, channels)


def _load_split(
  builder: tfds.core.DatasetBuilder,
  split: str,
  image_size: int,
  *,
  process_index: int,
  process_count: int,
) -> tuple[np.ndarray, np.ndarray]:
  """This process's shard of `split` as (uint8 (N, S, S, C), int32 (N,)).

  Decoding runs in this process: all of CIFAR-10 (60,000 JPEGs) takes about
  18 s on one core of a Xeon. (A spawn-process pool was tried; spawned
  workers re-import the caller's `__main__`, which breaks scripts without a
  main guard.)
  """
  indices = image_source.process_indices(
    builder, split, process_index=process_index, process_count=process_count
  )
  examples = prepared.read_all(
    builder,
    split,
    indices=indices,
    decoders={"image": tfds.decode.SkipDecoding()},
  )
  channels = builder.info.features["image"].shape[-1]
  images = np.empty((len(examples), image_size, image_size, channels), np.uint8)
  for i, example in enumerate(examples):
    images[i] = _decode_image(example["image"], channels, image_size)
  labels = np.array([example["label"] for example in examples], np.int32)
  return images, labels


def load_arrays(
  dataset_config: ml_collections.ConfigDict,
  *,
  process_index: int = 0,
  process_count: int = 1,
) -> ImageArrays:
  """Loads this process's shard of the train and eval splits into numpy.

  Each whole shard is decoded once into host memory, for the trainer to place
  on device. Both splits are sharded over processes as
  `sharding.shard_for_process` says: shards are disjoint, together cover the
  split, and their sizes differ by at most one, so a multi-host evaluation
  must pad every process to the largest shard and mask the padding.

  Args:
    dataset_config: see `image_source`.
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing the data.

  Returns:
    The arrays, images at `dataset_config.image_size`.

  Raises:
    UserError: see `image_source.get_builder`; an unknown split name.
  """
  builder = image_source.get_builder(dataset_config)
  (train_images, train_labels), (eval_images, eval_labels) = (
    _load_split(
      builder,
      split,
      dataset_config.image_size,
      process_index=process_index,
      process_count=process_count,
    )
    for split in image_source.train_and_eval_splits(builder, dataset_config)
  )
  return ImageArrays(
    train_images=train_images,
    train_labels=train_labels,
    eval_images=eval_images,
    eval_labels=eval_labels,
    num_classes=builder.info.features["label"].num_classes,
  )


@dataclasses.dataclass(frozen=True)
class StreamInfo:
  """What the trainer needs to know of a streamed dataset before it starts.

  Attributes:
    num_train, num_eval: examples in the (possibly limited) train and eval
      splits, over all processes.
    num_classes: number of classes.
  """

  num_train: int
  num_eval: int
  num_classes: int


def stream_info(dataset_config: ml_collections.ConfigDict) -> StreamInfo:
  """Split sizes and classes of `dataset_config`, without reading images.

  Raises:
    UserError: see `image_source.get_builder`; an unknown split name.
  """
  builder = image_source.get_builder(dataset_config)
  num_train, num_eval = (
    builder.info.splits[split].num_examples
    for split in image_source.train_and_eval_splits(builder, dataset_config)
  )
  return StreamInfo(
    num_train=num_train,
    num_eval=num_eval,
    num_classes=builder.info.features["label"].num_classes,
  )
