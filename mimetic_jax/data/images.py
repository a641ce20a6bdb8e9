"""Image classification data from tfds: whole splits as numpy, or streamed.

`dataset_config` (an `ml_collections.ConfigDict`) has these keys:
  name: tfds dataset name, e.g. 'cifar10', 'cifar100', 'svhn_cropped',
    'imagenet2012'. Ignored when `path` is set.
  data_dir: tfds data dir; '' = tfds's default (`$TFDS_DATA_DIR` or
    `~/tensorflow_datasets`).
  path: offline source, a folder or .tar.gz/.tgz/.tar archive of
    `<split>/<class>/<image>` images (see `image_folder`), ingested once into
    `data_dir`; '' = use the tfds builder `name` (downloading it if needed).
  train_split, eval_split: split names, e.g. 'train' and 'test'.
  image_size: side S of the square images handed out. `load_arrays` resizes
    (bilinear, antialiased; aspect ratio not kept) only images that are not
    already S x S, so CIFAR at S=32 is untouched; the streaming iterator
    always crops and resizes to S.
  max_train_examples, max_eval_examples: 0 = the whole split, else at most
    its first N examples (tfds slicing, `train[:N]`; tfds and `image_folder`
    store examples in hashed-key order, so this is a fixed, class-mixed
    subset).

Multi-host: every function takes `process_index` / `process_count`, and each
process reads only its shard of a split (`tfds.split_for_jax_process`, shard
sizes differ by at most one). Nothing needs network access once the data is
prepared in `data_dir`; if it is not and cannot be downloaded,
`DatasetUnavailableError` says how to fix it before any long work starts.
"""

from collections.abc import Iterator
import dataclasses
import math
import urllib.parse

from absl import logging
import ml_collections
import numpy as np
import requests
import tensorflow as tf
import tensorflow_datasets as tfds

from mimetic_jax.data import hide_accelerators_from_tensorflow
from mimetic_jax.data import image_folder

_LOAD_BATCH_SIZE = 1024
_SHUFFLE_BUFFER_SIZE = 10_000  # Encoded images, before decoding.
_EVAL_CROP_FRACTION = 0.875  # Eval: resize shorter side to S / 0.875, crop S.
_CROP_AREA_RANGE = (0.08, 1.0)  # Inception-style random-resized crop.
_CROP_ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
_PROBE_TIMEOUT_S = 5.0


class DatasetUnavailableError(RuntimeError):
  """The data is not prepared in `data_dir` and cannot be made available."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImageArrays:
  """This process's shard of the train and eval splits, in host memory.

  Attributes:
    train_images: uint8 (N, S, S, C), S = `dataset_config.image_size`.
    train_labels: int32 (N,), in [0, num_classes).
    eval_images: uint8 (M, S, S, C).
    eval_labels: int32 (M,).
    num_classes: number of classes.
    class_names: the class names, indexed by label.
  """
  train_images: np.ndarray
  train_labels: np.ndarray
  eval_images: np.ndarray
  eval_labels: np.ndarray
  num_classes: int
  class_names: tuple[str, ...]


def _fix_hint() -> str:
  return (
      "pass --config.dataset.path=/path/to/images-or-archive.tar.gz (a folder "
      "or .tar.gz/.tgz/.tar archive laid out as <split>/<class>/<image>, e.g. "
      "train/cat/0001.jpg)")


def _unavailable_message(builder: tfds.core.DatasetBuilder, reason: str) -> str:
  name = builder.name
  return (
      f"tfds dataset {name!r} is not prepared in data_dir "
      f"{builder.data_dir_root} (looked for {builder.data_path}) and {reason}. "
      f"To fix it, {_fix_hint()}; or prepare the dataset on a connected "
      f"machine (`tfds build {name} --data_dir=DIR`) and copy DIR/{name} into "
      f"{builder.data_dir_root}; or set --config.dataset.data_dir to a "
      "data_dir where it is prepared.")


def _first_unreachable_url(urls: list[str]) -> str | None:
  """'<url> is unreachable (<error>)' for the first host not answering."""
  url_per_host = {}
  for url in sorted(urls):
    url_per_host.setdefault(urllib.parse.urlsplit(url).netloc, url)
  for url in url_per_host.values():
    try:
      requests.head(url, timeout=_PROBE_TIMEOUT_S)
    except requests.RequestException as e:
      return f"{url} is unreachable ({e})"
  return None


def _check_can_download(builder: tfds.core.DatasetBuilder) -> None:
  """Fails fast where `download_and_prepare` could only fail, slowly.

  Raises:
    DatasetUnavailableError: the dataset needs a manual download that is not
      there, or a download host is unreachable (tfds would retry for minutes).
  """
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    manual_dir = builder.data_dir_root / "downloads" / "manual"
    if not manual_dir.exists() or not any(manual_dir.iterdir()):
      instructions = " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())
      raise DatasetUnavailableError(_unavailable_message(
          builder,
          f"it needs files downloaded by hand into {manual_dir}, which is "
          f"missing or empty ({instructions})"))
    return
  unreachable = _first_unreachable_url(list(builder.url_infos or {}))
  if unreachable:
    raise DatasetUnavailableError(_unavailable_message(
        builder,
        f"it cannot be downloaded: the machine appears to be offline "
        f"({unreachable})"))


def _ensure_prepared(builder: tfds.core.DatasetBuilder) -> None:
  """Prepares `builder`'s data unless it already is.

  Sources given by `path` are ingested (local work only); tfds datasets are
  downloaded and prepared when the download can work.
  """
  if builder.is_prepared():
    return
  if isinstance(builder, image_folder.ImageFolder):
    logging.info("Ingesting %s into %s (once).", builder.builder_config.source,
                 builder.data_path)
    builder.download_and_prepare()
    return
  _check_can_download(builder)
  try:
    builder.download_and_prepare()
  except (OSError, tfds.download.DownloadError) as e:
    raise DatasetUnavailableError(_unavailable_message(
        builder, f"downloading and preparing it failed ({e})")) from e


def _check_features(builder: tfds.core.DatasetBuilder) -> None:
  features = builder.info.features
  if not (
      "image" in features.keys()
      and isinstance(features["image"], tfds.features.Image)
      and "label" in features.keys()
      and isinstance(features["label"], tfds.features.ClassLabel)):
    raise ValueError(
        f"Dataset {builder.info.full_name} is not an image classification "
        "dataset: it needs an 'image' Image feature and a 'label' ClassLabel "
        f"feature, but has {features}.")


def get_builder(
    dataset_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder for `dataset_config`.

  With `path` set, the folder/archive is ingested into `data_dir` on first use
  (`image_folder.ImageFolder`); otherwise the tfds dataset `name` is
  downloaded and prepared there if it is not yet.

  Raises:
    FileNotFoundError, ValueError: `path` is missing or badly laid out (and
      not prepared yet); the dataset is not image classification.
    DatasetUnavailableError: `name` is not prepared in `data_dir` and cannot
      be downloaded; the message says how to fix it.
  """
  hide_accelerators_from_tensorflow()
  data_dir = dataset_config.data_dir or None
  if dataset_config.path:
    builder = image_folder.builder_for_source(
        dataset_config.path, data_dir=data_dir)
  else:
    builder = tfds.builder(dataset_config.name, data_dir=data_dir)
  _ensure_prepared(builder)
  _check_features(builder)
  return builder


def _split_expression(
    builder: tfds.core.DatasetBuilder, split: str, max_examples: int) -> str:
  """`split`, or at most its first `max_examples` examples if positive."""
  available = sorted(builder.info.splits.keys())
  if split not in available:
    raise ValueError(
        f"Dataset {builder.info.full_name} has no split {split!r}; available "
        f"splits: {available}.")
  if max_examples < 0:
    raise ValueError(
        f"max examples must be >= 0 (0 = all), got {max_examples}.")
  num_examples = builder.info.splits[split].num_examples
  if not max_examples or max_examples >= num_examples:
    return split
  return f"{split}[:{max_examples}]"


def _process_shard(
    split: str, process_index: int, process_count: int
) -> tfds.typing.SplitArg:
  """The part of `split` that process `process_index` reads."""
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"Need 0 <= process_index < process_count, got {process_index} and "
        f"{process_count}.")
  return tfds.split_for_jax_process(
      split, process_index=process_index, process_count=process_count)


def _decode(data: tf.Tensor, channels: int = 3) -> tf.Tensor:
  """Encoded image bytes (JPEG, PNG, ...) -> uint8 (H, W, channels)."""
  return tf.io.decode_image(data, channels=channels, expand_animations=False)


def _resize(image: tf.Tensor, height_width) -> tf.Tensor:
  """uint8 (H, W, C) -> uint8 (height, width, C), bilinear and antialiased."""
  resized = tf.image.resize(image, height_width, method="bilinear",
                            antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _to_square(image: tf.Tensor, size: int) -> tf.Tensor:
  """uint8 (H, W, C) -> uint8 (size, size, C); untouched if already so."""
  is_square = tf.reduce_all(tf.shape(image)[:2] == size)
  image = tf.cond(is_square, lambda: image,
                  lambda: _resize(image, (size, size)))
  return tf.ensure_shape(image, (size, size, image.shape[-1]))


def _load_split(
    builder: tfds.core.DatasetBuilder, split: tfds.typing.SplitArg,
    image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Whole `split` as (uint8 (N, S, S, C) images, int32 (N,) labels)."""
  num_examples = builder.info.splits[split].num_examples
  channels = builder.info.features["image"].shape[-1]
  ds = builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={"image": tfds.decode.SkipDecoding()})
  ds = ds.map(
      lambda ex: (_to_square(_decode(ex["image"], channels), image_size),
                  tf.cast(ex["label"], tf.int32)),
      num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(_LOAD_BATCH_SIZE).prefetch(tf.data.AUTOTUNE)
  images = np.empty((num_examples, image_size, image_size, channels), np.uint8)
  labels = np.empty((num_examples,), np.int32)
  start = 0
  for batch_images, batch_labels in tfds.as_numpy(ds):
    images[start:start + len(batch_labels)] = batch_images
    labels[start:start + len(batch_labels)] = batch_labels
    start += len(batch_labels)
  if start != num_examples:
    raise RuntimeError(
        f"Read {start} examples from {builder.info.full_name} {split}, "
        f"expected {num_examples}.")
  return images, labels


def load_arrays(
    dataset_config: ml_collections.ConfigDict,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> ImageArrays:
  """Loads this process's shard of the train and eval splits into numpy.

  For small datasets (CIFAR, SVHN, up to a few GB): each whole shard is
  decoded once into host memory, for the trainer to place on device. Both
  splits are sharded over processes: shards are disjoint, together cover the
  split, and their sizes differ by at most one, so a multi-host evaluation
  must pad every process to the largest shard and mask the padding.

  Args:
    dataset_config: see the module docstring.
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing the data.

  Returns:
    The arrays, images at `dataset_config.image_size`.

  Raises:
    See `get_builder`; ValueError for an unknown split name.
  """
  builder = get_builder(dataset_config)
  splits = {}
  for kind, split, max_examples in (
      ("train", dataset_config.train_split,
       dataset_config.max_train_examples),
      ("eval", dataset_config.eval_split, dataset_config.max_eval_examples)):
    splits[kind] = _process_shard(
        _split_expression(builder, split, max_examples), process_index,
        process_count)
  train_images, train_labels = _load_split(
      builder, splits["train"], dataset_config.image_size)
  eval_images, eval_labels = _load_split(
      builder, splits["eval"], dataset_config.image_size)
  label_feature = builder.info.features["label"]
  return ImageArrays(
      train_images=train_images,
      train_labels=train_labels,
      eval_images=eval_images,
      eval_labels=eval_labels,
      num_classes=label_feature.num_classes,
      class_names=tuple(label_feature.names))


@dataclasses.dataclass(frozen=True)
class StreamInfo:
  """What the trainer needs to know of a streamed dataset before it starts.

  Attributes:
    num_train, num_eval: examples in the (possibly limited) train and eval
      splits, over all processes.
    num_classes: number of classes.
    class_names: the class names, indexed by label.
  """
  num_train: int
  num_eval: int
  num_classes: int
  class_names: tuple[str, ...]


def stream_info(dataset_config: ml_collections.ConfigDict) -> StreamInfo:
  """Split sizes and classes of `dataset_config`, without reading images."""
  builder = get_builder(dataset_config)
  sizes = [
      builder.info.splits[_split_expression(builder, split, limit)].num_examples
      for split, limit in ((dataset_config.train_split,
                            dataset_config.max_train_examples),
                           (dataset_config.eval_split,
                            dataset_config.max_eval_examples))]
  label_feature = builder.info.features["label"]
  return StreamInfo(num_train=sizes[0], num_eval=sizes[1],
                    num_classes=label_feature.num_classes,
                    class_names=tuple(label_feature.names))


def _random_resized_crop(
    image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """Inception-style crop (8-100% of the area, aspect 3/4-4/3) to S x S."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image),
      bounding_boxes=tf.zeros([1, 0, 4]),
      seed=seed,
      min_object_covered=0.0,
      aspect_ratio_range=_CROP_ASPECT_RATIO_RANGE,
      area_range=_CROP_AREA_RANGE,
      max_attempts=10,
      use_image_if_no_bounding_boxes=True)
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
      image, top_left[0], top_left[1], size, size)
  return tf.ensure_shape(image, (size, size, 3))


def _train_dataset(
    ds: tf.data.Dataset, *, batch_size: int, image_size: int, seed: int
) -> tf.data.Dataset:
  """Endless shuffled, augmented batches (deterministic given `seed`)."""
  ds = ds.repeat().shuffle(_SHUFFLE_BUFFER_SIZE, seed=seed).enumerate()

  def preprocess(index, ex):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), index]), num=2))
    image = _random_resized_crop(_decode(ex["image"]), image_size, crop_seed)
    return {
        "image": tf.image.stateless_random_flip_left_right(image, flip_seed),
        "label": tf.cast(ex["label"], tf.int32),
        "mask": tf.constant(True),
    }

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True)


def _eval_dataset(
    ds: tf.data.Dataset, *, batch_size: int, image_size: int,
    num_examples: int, num_batches: int) -> tf.data.Dataset:
  """One pass in `num_batches` batches, padded at the end with mask False."""
  ds = ds.map(
      lambda ex: {
          "image": _resize_shorter_and_center_crop(
              _decode(ex["image"]), image_size),
          "label": tf.cast(ex["label"], tf.int32),
          "mask": tf.constant(True),
      },
      num_parallel_calls=tf.data.AUTOTUNE)
  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros((image_size, image_size, 3), tf.uint8),
      "label": tf.constant(0, tf.int32),
      "mask": tf.constant(False),
  }).repeat(num_batches * batch_size - num_examples)
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
  Train (limited to `max_train_examples` if set): endless; shuffled; Inception
  random-resized crop to S x S and random horizontal flip, deterministic given
  `seed`. Eval (limited to `max_eval_examples`): resize the shorter side to
  S / 0.875 and center-crop S x S; exactly one pass, the last batch padded
  with `mask` False. Every process yields the same number of eval batches
  (enough for the largest shard), so multi-host evaluation stays in step and
  each example of the split is scored exactly once.

  Args:
    dataset_config: see the module docstring.
    split: split name, e.g. 'train' or 'validation'.
    local_batch_size: examples per batch on this process.
    image_size: output side S.
    train: train (augmented, endless) or eval (one padded pass) pipeline.
    seed: seed for file order, shuffling and augmentation (train only).
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing the data.

  Returns:
    An iterator of dicts: 'image' uint8 (B, S, S, 3), 'label' int32 (B,),
    'mask' bool (B,) (True = real example), B = `local_batch_size`.

  Raises:
    See `get_builder`; ValueError for an unknown split name.
  """
  builder = get_builder(dataset_config)
  max_examples = (dataset_config.max_train_examples if train
                  else dataset_config.max_eval_examples)
  full_split = _split_expression(builder, split, max_examples)
  shard = _process_shard(full_split, process_index, process_count)
  ds = builder.as_dataset(
      split=shard,
      shuffle_files=train,
      decoders={"image": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed))
  if train:
    ds = _train_dataset(ds, batch_size=local_batch_size,
                        image_size=image_size, seed=seed)
  else:
    largest_shard = math.ceil(
        builder.info.splits[full_split].num_examples / process_count)
    ds = _eval_dataset(
        ds, batch_size=local_batch_size, image_size=image_size,
        num_examples=builder.info.splits[shard].num_examples,
        num_batches=math.ceil(largest_shard / local_batch_size))
  return iter(tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE)))
