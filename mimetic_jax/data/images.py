"""Image classification data from tfds: whole splits as numpy arrays.

Preparing a dataset (a tfds download, or ingesting `path`) is tfds's work and
needs TensorFlow; it happens once, and stores the data as array_record.
Everything after that needs no TensorFlow: `load_arrays` reads the prepared
records through `tfds.data_source` and decodes the images with Pillow.
(Streaming, for datasets too large for memory, is `image_stream`: tf.data.)

`dataset_config` (an `ml_collections.ConfigDict`) has these keys:
  name: tfds dataset name, e.g. 'cifar10', 'cifar100', 'svhn_cropped',
    'imagenet2012'. Ignored when `path` is set.
  data_dir: tfds data dir; '' = tfds's default (`$TFDS_DATA_DIR` or
    `~/tensorflow_datasets`).
  path: offline source: a folder or .tar.gz/.tgz/.tar archive of
    `<split>/<class>/<image>` images (see `image_folder`), ingested once into
    `data_dir`; or a prepared tfds dataset folder (the version folder
    holding `dataset_info.json`, e.g. `<data_dir>/image_folder/<config>/
    1.0.0` copied from another machine; tfds needs it named by the
    version), read where it is. '' = use the tfds builder `name` (downloading it if
    needed).
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
`prepared.DatasetUnavailableError` says how to fix it before any long work
starts.
"""

import dataclasses
import io
import pathlib
import urllib.parse

from absl import logging
import ml_collections
import numpy as np
import PIL.Image
import requests
import tensorflow_datasets as tfds

from mimetic_jax.data import image_folder
from mimetic_jax.data import prepared

_PROBE_TIMEOUT_S = 5.0
_DATASET_INFO_FILE = "dataset_info.json"  # Marks a prepared tfds folder.


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
      raise prepared.DatasetUnavailableError(_unavailable_message(
          builder,
          f"it needs files downloaded by hand into {manual_dir}, which is "
          f"missing or empty ({instructions})"))
    return
  unreachable = _first_unreachable_url(list(builder.url_infos or {}))
  if unreachable:
    raise prepared.DatasetUnavailableError(_unavailable_message(
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
    prepared.prepare(builder)
    return
  _check_can_download(builder)
  try:
    prepared.prepare(builder)
  except (OSError, tfds.download.DownloadError) as e:
    raise prepared.DatasetUnavailableError(_unavailable_message(
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

  With `path` set, a prepared tfds folder is read as it is, and a
  folder/archive of images is ingested into `data_dir` on first use
  (`image_folder.ImageFolder`); otherwise the tfds dataset `name` is
  downloaded and prepared there if it is not yet.

  Raises:
    FileNotFoundError, ValueError: `path` is missing or badly laid out (and
      not prepared yet); the dataset is not image classification.
    DatasetUnavailableError: `name` is not prepared in `data_dir` and cannot
      be downloaded; the message says how to fix it.
  """
  data_dir = dataset_config.data_dir or None
  path = pathlib.Path(dataset_config.path).expanduser()
  if dataset_config.path and (path / _DATASET_INFO_FILE).is_file():
    builder = tfds.builder_from_directory(path)
  elif dataset_config.path:
    builder = image_folder.builder_for_source(
        dataset_config.path, data_dir=data_dir)
  else:
    builder = tfds.builder(dataset_config.name, data_dir=data_dir)
  _ensure_prepared(builder)
  _check_features(builder)
  return builder


def split_expression(
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


def process_shard(
    split: str, process_index: int, process_count: int
) -> tfds.typing.SplitArg:
  """The part of `split` that process `process_index` reads."""
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"Need 0 <= process_index < process_count, got {process_index} and "
        f"{process_count}.")
  return tfds.split_for_jax_process(
      split, process_index=process_index, process_count=process_count)


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


def _decode_images(encoded: list[bytes], channels: int,
                   size: int) -> np.ndarray:
  """`_decode_image` over a list: uint8 (N, size, size, channels).

  In this process: all of CIFAR-10 (60,000 JPEGs) takes about 18 s on one
  core of a Xeon. (A spawn-process pool was tried; spawned workers re-import
  the caller's `__main__`, which breaks scripts without a main guard.)
  """
  images = np.empty((len(encoded), size, size, channels), np.uint8)
  for i, data in enumerate(encoded):
    images[i] = _decode_image(data, channels, size)
  return images


def _load_split(
    builder: tfds.core.DatasetBuilder, split: tfds.typing.SplitArg,
    image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Whole `split` as (uint8 (N, S, S, C) images, int32 (N,) labels)."""
  examples = prepared.read_all(
      builder, split, decoders={"image": tfds.decode.SkipDecoding()})
  channels = builder.info.features["image"].shape[-1]
  images = _decode_images([ex["image"] for ex in examples], channels,
                          image_size)
  labels = np.array([ex["label"] for ex in examples], np.int32)
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
    splits[kind] = process_shard(
        split_expression(builder, split, max_examples), process_index,
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
      builder.info.splits[split_expression(builder, split, limit)].num_examples
      for split, limit in ((dataset_config.train_split,
                            dataset_config.max_train_examples),
                           (dataset_config.eval_split,
                            dataset_config.max_eval_examples))]
  label_feature = builder.info.features["label"]
  return StreamInfo(num_train=sizes[0], num_eval=sizes[1],
                    num_classes=label_feature.num_classes,
                    class_names=tuple(label_feature.names))
