"""Prepared tfds data: the format it is stored in and how it is read.

Preparing (a tfds download, or ingesting a user's files) needs TensorFlow and
happens once per dataset and `data_dir`. It stores the records as
array_record, which `tfds.data_source` reads with random access and without
TensorFlow, so training on prepared data works where TensorFlow is absent.
"""

from collections.abc import Iterator, Sequence
import contextlib
import logging
import sys
from typing import Any

import tensorflow_datasets as tfds

from mimetic_jax.data import hide_accelerators_from_tensorflow
from mimetic_jax.errors import UserError

FILE_FORMAT = "array_record"


def prepare(builder: tfds.core.DatasetBuilder, **kwargs) -> None:
  """`builder.download_and_prepare(file_format=FILE_FORMAT, **kwargs)`, after
  checking that TensorFlow (which tfds prepares with) can be imported.

  Raises:
    UserError: TensorFlow is missing; the message says what to do instead.
  """
  try:
    import tensorflow  # noqa: F401
  except ImportError as e:
    raise UserError(
      f"{builder.name} is not prepared in {builder.data_dir_root}, and "
      f"preparing a dataset needs TensorFlow, which cannot be imported "
      f"here ({e}). Install it (`pip install tensorflow-cpu`), or prepare "
      "the data on another machine and copy its tfds data_dir here (for "
      "images, --config.dataset.path may also name the prepared folder, "
      "the one holding dataset_info.json). Training on prepared data needs "
      "no TensorFlow."
    ) from e
  hide_accelerators_from_tensorflow()
  # tqdm bars redraw with cursor escapes; in a log file they are noise.
  tfds.display_progress_bar(sys.stderr.isatty())
  builder.download_and_prepare(file_format=FILE_FORMAT, **kwargs)


class _DropCustomConfigWarning(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Using custom data configuration")


@contextlib.contextmanager
def per_source_config() -> Iterator[None]:
  """Silences tfds's "Using custom data configuration" warning while a
  builder is made: the folder builders (`ImageFolder`, `TextFolder`) make one
  config per source by design, so the warning would print on every run."""
  absl_logger = logging.getLogger("absl")
  quiet = _DropCustomConfigWarning()
  absl_logger.addFilter(quiet)
  try:
    yield
  finally:
    absl_logger.removeFilter(quiet)


def data_source(
  builder: tfds.core.DatasetBuilder, split: tfds.typing.SplitArg, **kwargs
) -> Sequence[dict[str, Any]]:
  """`builder.as_data_source(split, **kwargs)`: random access to the
  prepared examples (a sequence of dicts of numpy values / bytes), no TF.

  Raises:
    UserError: the data was prepared in another format (e.g. tfrecord, by an
      older version or another program).
  """
  file_format = builder.info.file_format
  if file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise UserError(
      f"{builder.info.full_name} in {builder.data_dir} was prepared as "
      f"{getattr(file_format, 'value', file_format)}, but training reads "
      "prepared data through tfds.data_source, which needs array_record. "
      f"Delete {builder.data_dir} so that it is prepared again (this "
      "project prepares in array_record), or convert it in place with "
      f"`tfds convert_format --dataset_dir={builder.data_dir} "
      "--out_file_format=array_record`."
    )
  return builder.as_data_source(split=split, **kwargs)


def read_all(
  builder: tfds.core.DatasetBuilder,
  split: tfds.typing.SplitArg,
  *,
  indices: Sequence[int] | None = None,
  **kwargs,
) -> list[dict]:
  """Every example of `split` in the prepared order (see `data_source`),
  or only those at `indices` (positions in `split`), in that order."""
  source = data_source(builder, split, **kwargs)
  if indices is None:
    indices = range(len(source))
  return source.__getitems__([int(i) for i in indices])
