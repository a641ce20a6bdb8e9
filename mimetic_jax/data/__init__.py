import functools
import os


@functools.cache
def hide_accelerators_from_tensorflow() -> None:
  """Makes TensorFlow see no GPU or TPU, so only JAX ever claims them.

  TensorFlow is used here only to prepare tfds datasets and to stream with
  tf.data, on the host CPU; training on prepared in-memory data never imports
  it. Every place that is about to use TensorFlow calls this first (it runs
  once per process; later calls do nothing). Without TensorFlow installed it
  does nothing.
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
