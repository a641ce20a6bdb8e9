"""The prepared tfds builder an image `dataset_config` names, and its splits.

Preparing a dataset (a tfds download, or ingesting `path`) is tfds's work and
needs TensorFlow; it happens once, and stores the data as array_record (see
`prepared`). `images` then loads whole splits into memory, `image_stream`
streams them.

`dataset_config` (an `ml_collections.ConfigDict`) has these keys:
  name: tfds dataset name, e.g. 'cifar10', 'cifar100', 'svhn_cropped',
    'imagenet2012'. Ignored when `path` is set.
  data_dir: tfds data dir; '' = tfds's default (`$TFDS_DATA_DIR` or
    `~/tensorflow_datasets`).
  path: offline source: a folder or .tar.gz/.tgz/.tar archive of
    `<split>/<class>/<image>` images (see `image_folder`), ingested once into
    `data_dir`; or a prepared tfds dataset folder (the version folder holding
    `dataset_info.json`, e.g. `<data_dir>/image_folder/<config>/1.0.0` copied
    from another machine; tfds needs it named by the version), read where it
    is. '' = use the tfds builder `name` (downloading it if needed).
  train_split, eval_split: split names, e.g. 'train' and 'test'.
  image_size: side S of the square images handed out. `images.load_arrays`
    resizes (bilinear, antialiased; aspect ratio not kept) only images that
    are not already S x S, so CIFAR at S=32 is untouched; the streaming
    iterator always crops and resizes to S.
  max_train_examples, max_eval_examples: 0 = the whole split, else at most
    its first N examples (tfds slicing, `train[:N]`; tfds and `image_folder`
    store examples in hashed-key order, so this is a fixed, class-mixed
    subset).

Nothing needs network access once the data is prepared in `data_dir`; if it
is not and cannot be downloaded, a `UserError` says how to fix it.
"""

import pathlib

from absl import logging
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mimetic_jax.data import image_folder, prepared, sharding
from mimetic_jax.errors import UserError

_DATASET_INFO_FILE = "dataset_info.json"  # Marks a prepared tfds folder.


def _unavailable(builder: tfds.core.DatasetBuilder, reason: str) -> UserError:
  """The error for a tfds dataset that is not prepared and cannot be."""
  name = builder.name
  return UserError(
    f"tfds dataset {name!r} is not prepared in data_dir "
    f"{builder.data_dir_root} (looked for {builder.data_path}) and {reason}. "
    "To fix it, pass --config.dataset.path=/path/to/images-or-archive.tar.gz "
    "(a folder or .tar.gz/.tgz/.tar archive laid out as "
    "<split>/<class>/<image>, e.g. train/cat/0001.jpg); or prepare the "
    f"dataset on a connected machine (`tfds build {name} --data_dir=DIR`) "
    f"and copy DIR/{name} into {builder.data_dir_root}; or set "
    "--config.dataset.data_dir to a data_dir where it is prepared."
  )


def _ensure_prepared(builder: tfds.core.DatasetBuilder) -> None:
  """Prepares `builder`'s data unless it already is.

  Sources given by `path` are ingested (local work only); tfds datasets are
  downloaded and prepared. A manual download that is missing fails at once;
  a failing download fails when tfds gives up (offline, after its retries).

  Raises:
    UserError: the dataset needs files downloaded by hand that are not
      there, or downloading it failed.
  """
  if builder.is_prepared():
    return
  if isinstance(builder, image_folder.ImageFolder):
    logging.info(
      "Ingesting %s into %s (once).",
      builder.builder_config.source,
      builder.data_path,
    )
    prepared.prepare(builder)
    return
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    manual_dir = builder.data_dir_root / "downloads" / "manual"
    if not manual_dir.exists() or not any(manual_dir.iterdir()):
      instructions = " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())
      raise _unavailable(
        builder,
        f"it needs files downloaded by hand into {manual_dir}, which is "
        f"missing or empty ({instructions})",
      )
  try:
    prepared.prepare(builder)
  except (OSError, tfds.download.DownloadError) as e:
    raise _unavailable(
      builder,
      f"downloading and preparing it failed ({e}); the machine may be offline",
    ) from e


def _check_features(builder: tfds.core.DatasetBuilder) -> None:
  features = builder.info.features
  if not (
    "image" in features
    and isinstance(features["image"], tfds.features.Image)
    and "label" in features
    and isinstance(features["label"], tfds.features.ClassLabel)
  ):
    raise UserError(
      f"Dataset {builder.info.full_name} is not an image classification "
      "dataset: it needs an 'image' Image feature and a 'label' ClassLabel "
      f"feature, but has {features}."
    )


def get_builder(
  dataset_config: ml_collections.ConfigDict,
) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder for `dataset_config`.

  With `path` set, a prepared tfds folder is read as it is, and a
  folder/archive of images is ingested into `data_dir` on first use
  (`image_folder.ImageFolder`); otherwise the tfds dataset `name` is
  downloaded and prepared there if it is not yet.

  Raises:
    UserError: `path` is missing or badly laid out (and not prepared yet);
      `name` is not prepared in `data_dir` and cannot be downloaded; the
      dataset is not image classification. The message says how to fix it.
  """
  data_dir = dataset_config.data_dir or None
  path = pathlib.Path(dataset_config.path).expanduser()
  if dataset_config.path and (path / _DATASET_INFO_FILE).is_file():
    builder = tfds.builder_from_directory(path)
  elif dataset_config.path:
    builder = image_folder.builder_for_source(
      dataset_config.path, data_dir=data_dir
    )
  else:
    try:
      builder = tfds.builder(dataset_config.name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
      raise UserError(
        f"dataset.name={dataset_config.name!r} is not a tfds dataset. Use "
        "a tfds image-classification dataset (e.g. cifar10, cifar100, "
        "svhn_cropped, imagenet2012; `tfds.list_builders()` lists all), or "
        "set dataset.path to a folder or .tar.gz of class-subfolder images."
      ) from None
  _ensure_prepared(builder)
  _check_features(builder)
  return builder


def split_expression(
  builder: tfds.core.DatasetBuilder, split: str, max_examples: int
) -> str:
  """`split`, or at most its first `max_examples` examples if positive.

  Raises:
    UserError: `builder` has no split `split`, or `max_examples` < 0.
  """
  available = sorted(builder.info.splits.keys())
  if split not in available:
    raise UserError(
      f"Dataset {builder.info.full_name} has no split {split!r}; available "
      f"splits: {available}. Set --config.dataset.train_split / "
      "eval_split to one of them."
    )
  if max_examples < 0:
    raise UserError(
      "--config.dataset.max_train_examples and max_eval_examples must be "
      f">= 0 (0 = the whole split), got {max_examples}."
    )
  num_examples = builder.info.splits[split].num_examples
  if not max_examples or max_examples >= num_examples:
    return split
  return f"{split}[:{max_examples}]"


def train_and_eval_splits(
  builder: tfds.core.DatasetBuilder, dataset_config: ml_collections.ConfigDict
) -> tuple[str, str]:
  """`split_expression`s of the train and the eval split of the config."""
  return (
    split_expression(
      builder, dataset_config.train_split, dataset_config.max_train_examples
    ),
    split_expression(
      builder, dataset_config.eval_split, dataset_config.max_eval_examples
    ),
  )


def process_indices(
  builder: tfds.core.DatasetBuilder,
  split: str,
  *,
  process_index: int,
  process_count: int,
) -> np.ndarray:
  """int64 (n,) positions in `split` (an expression) this process reads.

  Its block of `sharding.shard_for_process`: shards are disjoint, together
  cover the split, and their sizes differ by at most one.
  """
  num_examples = builder.info.splits[split].num_examples
  return sharding.shard_for_process(
    np.arange(num_examples), process_index, process_count
  )
