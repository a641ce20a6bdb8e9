import functools
import os


@functools.cache
def hide_accelerators_from_tensorflow() -> None:
  """Makes TensorFlow see no GPU or TPU, so only JAX ever claims them.

  TensorFlow is used here only for tfds and tf.data on the host CPU. Call this
  before any TF/tfds data work (it runs once per process; later calls do
  nothing). TensorFlow is imported lazily so that importing this package stays
  cheap for code that never touches TF.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # No oneDNN banners.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  tf.config.set_visible_devices([], "TPU")
