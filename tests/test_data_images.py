"""Tests for the image data modules of `mimetic_jax.data`.

`image_source` (preparing), `image_folder` (ingesting), `images` (in memory),
`image_stream` (streaming) and `sharding`. Nothing here touches the network:
tfds downloads are patched out.
"""

import pathlib
import shutil
import tarfile

import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mimetic_jax.data import (
  image_folder,
  image_source,
  image_stream,
  images,
  sharding,
)
from mimetic_jax.errors import UserError

SIZE = 8
CLASSES = ("dog", "cat", "bird")  # Written unsorted on purpose.
PER_CLASS = {"train": 4, "test": 2}
CIFAR10_CLASSES = (
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
)


def _pixels(index: int) -> np.ndarray:
  """A smooth (JPEG-friendly) uint8 (SIZE, SIZE, 3) image, unique per index."""
  colour = np.array([32 + 9 * index, 220 - 7 * index, 60 + 5 * index])
  ramp = 3 * np.arange(SIZE)[None, :, None]
  return np.broadcast_to(colour + ramp, (SIZE, SIZE, 3)).astype(np.uint8)


def _write_tree(root: pathlib.Path) -> dict[str, tuple[str, np.ndarray]]:
  """Writes <root>/<split>/<class>/<i>.{png,jpg}, alternating formats.

  Returns:
    file_name ('train/cat/1.jpg') -> (class name, pixels as written).
  """
  written = {}
  for split, count in PER_CLASS.items():
    for class_name in CLASSES:
      (root / split / class_name).mkdir(parents=True)
      for i in range(count):
        file_name = f"{split}/{class_name}/{i}.{'png' if i % 2 else 'jpg'}"
        pixels = _pixels(len(written))
        PIL.Image.fromarray(pixels).save(root / file_name, quality=95)
        written[file_name] = (class_name, pixels)
  return written


def _archive(folder: pathlib.Path) -> pathlib.Path:
  """`folder` as <folder>.tar.gz, wrapped in a top-level folder."""
  archive = folder.with_name(folder.name + ".tar.gz")
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(folder, arcname=folder.name)
  return archive


def _config(data_dir, path="", **overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(
    {
      "name": "cifar10",
      "data_dir": str(data_dir),
      "path": str(path),
      "train_split": "train",
      "eval_split": "test",
      "image_size": SIZE,
      "max_train_examples": 0,
      "max_eval_examples": 0,
    }
  )
  config.update(overrides)
  return config


def _image_set(batch: np.ndarray) -> set[bytes]:
  return {image.tobytes() for image in batch}


@pytest.fixture
def tree(tmp_path):
  written = _write_tree(tmp_path / "src" / "tiny")
  return tmp_path / "src" / "tiny", written


@pytest.fixture(params=["folder", "archive"])
def source(request, tree):
  folder, written = tree
  return (folder if request.param == "folder" else _archive(folder)), written


@pytest.fixture
def data_dir(tmp_path):
  return tmp_path / "tfds"


def _label_names(config) -> list[str]:
  return image_source.get_builder(config).info.features["label"].names


def _read_split(builder, split, **data_source_kwargs):
  source = builder.as_data_source(split=split, **data_source_kwargs)
  return [source[i] for i in range(len(source))]


def test_ingestion_gives_splits_sorted_classes_labels_and_pixels(
  source, data_dir
):
  path, written = source
  builder = image_source.get_builder(_config(data_dir, path))

  assert isinstance(builder, image_folder.ImageFolder)
  config_name = builder.builder_config.name
  assert builder.data_path == data_dir / "image_folder" / config_name / "1.0.0"
  assert set(builder.info.splits.keys()) == {"train", "test"}
  label_names = builder.info.features["label"].names
  assert label_names == ["bird", "cat", "dog"]
  for split, count in PER_CLASS.items():
    examples = _read_split(builder, split)
    assert len(examples) == count * len(CLASSES)
    for ex in examples:
      class_name, pixels = written[ex["file_name"].decode()]
      assert label_names[ex["label"]] == class_name
      assert ex["image"].shape == (SIZE, SIZE, 3)
      error = np.abs(ex["image"].astype(int) - pixels)
      if ex["file_name"].endswith(b".png"):
        assert error.max() == 0
      else:
        assert error.mean() < 3 and error.max() <= 12


def test_ingestion_keeps_original_image_bytes(tree, data_dir):
  folder, _ = tree
  builder = image_source.get_builder(_config(data_dir, folder))
  examples = _read_split(
    builder, "train", decoders={"image": tfds.decode.SkipDecoding()}
  )
  for ex in examples:
    assert ex["image"] == (folder / ex["file_name"].decode()).read_bytes()


def test_load_arrays_shapes_dtypes_and_classes(source, data_dir):
  path, _ = source
  arrays = images.load_arrays(_config(data_dir, path))

  assert arrays.train_images.shape == (12, SIZE, SIZE, 3)
  assert arrays.train_images.dtype == np.uint8
  assert arrays.train_labels.dtype == np.int32
  assert arrays.eval_images.shape == (6, SIZE, SIZE, 3)
  assert arrays.num_classes == 3
  np.testing.assert_array_equal(np.bincount(arrays.train_labels), [4, 4, 4])
  np.testing.assert_array_equal(np.bincount(arrays.eval_labels), [2, 2, 2])


def test_second_load_reuses_prepared_data(tree, data_dir, monkeypatch):
  folder, _ = tree
  config = _config(data_dir, folder)
  first = images.load_arrays(config)
  prepared = image_source.get_builder(config).data_path
  mtimes = {p: p.stat().st_mtime_ns for p in pathlib.Path(prepared).iterdir()}

  def fail(*args, **kwargs):
    raise AssertionError("the source was read again")

  shutil.rmtree(folder)  # Prepared data must not need the source any more.
  monkeypatch.setattr(image_folder, "scan_layout", fail)
  monkeypatch.setattr(image_folder.ImageFolder, "_generate_examples", fail)
  second = images.load_arrays(config)

  np.testing.assert_array_equal(second.train_images, first.train_images)
  np.testing.assert_array_equal(second.eval_labels, first.eval_labels)
  assert second.num_classes == first.num_classes
  assert {
    p: p.stat().st_mtime_ns for p in pathlib.Path(prepared).iterdir()
  } == mtimes


def test_config_name_is_stem_plus_path_hash(tmp_path):
  name_a = image_folder.config_name(tmp_path / "a" / "my data")
  name_b = image_folder.config_name(tmp_path / "b" / "my data")

  assert name_a.startswith("my_data_") and name_b.startswith("my_data_")
  assert name_a != name_b
  assert name_a == image_folder.config_name(
    tmp_path / "a" / "x" / ".." / "my data"
  )
  assert image_folder.config_name(tmp_path / "c.tar.gz").startswith("c_")


def test_two_sources_with_same_stem_do_not_collide(tmp_path, data_dir):
  _write_tree(tmp_path / "a" / "tiny")
  shutil.copytree(tmp_path / "a" / "tiny", tmp_path / "b" / "tiny")
  shutil.rmtree(tmp_path / "b" / "tiny" / "train" / "dog")
  shutil.rmtree(tmp_path / "b" / "tiny" / "test" / "dog")

  config_a = _config(data_dir, tmp_path / "a" / "tiny")
  config_b = _config(data_dir, tmp_path / "b" / "tiny")
  arrays_a = images.load_arrays(config_a)
  arrays_b = images.load_arrays(config_b)

  assert (arrays_a.num_classes, arrays_b.num_classes) == (3, 2)
  assert _label_names(config_a) == ["bird", "cat", "dog"]
  assert _label_names(config_b) == ["bird", "cat"]


def test_max_examples_limit_the_splits(tree, data_dir):
  folder, _ = tree
  limited = images.load_arrays(
    _config(data_dir, folder, max_train_examples=5, max_eval_examples=4)
  )
  beyond = images.load_arrays(_config(data_dir, folder, max_train_examples=99))
  full = images.load_arrays(_config(data_dir, folder))

  assert len(limited.train_labels) == 5 and len(limited.eval_labels) == 4
  np.testing.assert_array_equal(limited.train_images, full.train_images[:5])
  assert len(beyond.train_labels) == 12


@pytest.mark.parametrize("max_train_examples", [0, 7])
def test_process_shards_are_disjoint_and_cover_the_split(
  tree, data_dir, max_train_examples
):
  folder, _ = tree
  config = _config(data_dir, folder, max_train_examples=max_train_examples)
  whole = images.load_arrays(config)
  shards = [
    images.load_arrays(config, process_index=i, process_count=2)
    for i in range(2)
  ]

  for kind in ("train", "eval"):
    parts = [_image_set(getattr(shard, f"{kind}_images")) for shard in shards]
    assert not parts[0] & parts[1]
    assert parts[0] | parts[1] == _image_set(getattr(whole, f"{kind}_images"))
    sizes = [len(getattr(shard, f"{kind}_labels")) for shard in shards]
    assert abs(sizes[0] - sizes[1]) <= 1


def test_load_arrays_resizes_to_image_size(tree, data_dir):
  folder, _ = tree
  arrays = images.load_arrays(_config(data_dir, folder, image_size=4))
  full = images.load_arrays(_config(data_dir, folder))

  assert arrays.train_images.shape == (12, 4, 4, 3)
  assert arrays.train_images.dtype == np.uint8
  np.testing.assert_allclose(
    arrays.train_images.mean(axis=(1, 2)),
    full.train_images.mean(axis=(1, 2)),
    atol=2,
  )


def test_tensorflow_sees_no_accelerators(tree, data_dir):
  folder, _ = tree
  image_source.get_builder(_config(data_dir, folder))
  assert not tf.config.get_visible_devices("GPU")
  assert not tf.config.get_visible_devices("TPU")


# Errors.


def test_missing_path(tmp_path, data_dir):
  with pytest.raises(UserError, match="does not exist"):
    image_source.get_builder(_config(data_dir, tmp_path / "nowhere.tar.gz"))


def test_empty_folder(tmp_path, data_dir):
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="No split folders found"):
    image_source.get_builder(_config(data_dir, tmp_path / "empty"))


def test_split_without_class_folders(tree, data_dir):
  folder, _ = tree
  (folder / "validation").mkdir()
  with pytest.raises(UserError, match="'validation'.*has no class folders"):
    image_source.get_builder(_config(data_dir, folder))


def test_class_folder_without_images(tree, data_dir):
  folder, _ = tree
  (folder / "test" / "cat" / "0.jpg").unlink()
  (folder / "test" / "cat" / "1.png").rename(
    folder / "test" / "cat" / "notes.txt"
  )
  with pytest.raises(
    UserError, match=r"without .*images in split 'test'.*\['cat'\]"
  ):
    image_source.get_builder(_config(data_dir, folder))


def test_classes_differing_between_splits(tree, data_dir):
  folder, _ = tree
  shutil.rmtree(folder / "test" / "dog")
  with pytest.raises(
    UserError, match=r"different class folders.*'test': \['dog'\]"
  ):
    image_source.get_builder(_config(data_dir, folder))


def test_unknown_split_lists_available_splits(tree, data_dir):
  folder, _ = tree
  config = _config(data_dir, folder, eval_split="validation")
  with pytest.raises(
    UserError, match=r"no split 'validation'.*\['test', 'train'\]"
  ):
    images.load_arrays(config)


def test_file_that_is_not_an_image(tree, data_dir):
  folder, _ = tree
  (folder / "train" / "cat" / "0.jpg").write_text("not a picture")
  with pytest.raises(UserError, match=r"train/cat/0.jpg .*not a JPEG or PNG"):
    image_source.get_builder(_config(data_dir, folder))


def test_truncated_archive(tree, data_dir, tmp_path):
  whole = _archive(tree[0]).read_bytes()
  truncated = tmp_path / "truncated.tar.gz"
  truncated.write_bytes(whole[: len(whole) // 2])
  with pytest.raises(UserError, match=r"truncated.tar.gz cannot be read to"):
    image_source.get_builder(_config(data_dir, truncated))


def test_unknown_tfds_name(data_dir):
  config = _config(data_dir)
  config.name = "cifar11"
  with pytest.raises(UserError, match=r"dataset.name='cifar11' is not a tfds"):
    image_source.get_builder(config)


@pytest.fixture
def no_download(monkeypatch):
  """Fails the test if tfds tries to download."""

  def fail(*args, **kwargs):
    raise AssertionError("download_and_prepare must not be called")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)


def test_unprepared_tfds_dataset_offline(data_dir, monkeypatch):
  # What tfds raises offline, after about 3.5 minutes of retries: a
  # `requests.ConnectionError`, which is an OSError as this one is.
  cause = ConnectionError("Failed to resolve 'www.cs.toronto.edu'")

  def offline_download(*args, **kwargs):
    raise cause

  monkeypatch.setattr(
    tfds.core.DatasetBuilder, "download_and_prepare", offline_download
  )
  with pytest.raises(UserError) as error:
    image_source.get_builder(_config(data_dir, name="cifar10"))
  message = str(error.value)

  assert error.value.__cause__ is cause
  for phrase in (
    "'cifar10' is not prepared in data_dir",
    str(data_dir),
    "downloading and preparing it failed",
    str(cause),
    "--config.dataset.path=",
    "prepare the dataset on a connected machine",
  ):
    assert phrase in message


def test_unprepared_manual_download_dataset(data_dir, no_download):
  with pytest.raises(UserError) as error:
    image_source.get_builder(_config(data_dir, name="imagenet2012"))

  assert "downloaded by hand" in str(error.value)
  assert str(data_dir / "downloads" / "manual") in str(error.value)


# Streaming.


def test_streaming_train_batches(tree, data_dir):
  folder, _ = tree
  config = _config(data_dir, folder)
  kwargs = dict(split="train", local_batch_size=5, image_size=6, train=True)
  stream = image_stream.make_streaming_iterator(config, seed=0, **kwargs)
  batches = [next(stream) for _ in range(4)]  # 20 > 12 examples: repeats.

  for batch in batches:
    assert batch["image"].shape == (5, 6, 6, 3)
    assert batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32
    assert batch["mask"].dtype == bool and batch["mask"].all()
    assert set(batch["label"]) <= {0, 1, 2}
  again = next(image_stream.make_streaming_iterator(config, seed=0, **kwargs))
  other = next(image_stream.make_streaming_iterator(config, seed=1, **kwargs))
  np.testing.assert_array_equal(again["image"], batches[0]["image"])
  assert not np.array_equal(other["image"], batches[0]["image"])


def test_streaming_eval_is_one_padded_pass(tree, data_dir):
  folder, _ = tree
  batches = list(
    image_stream.make_streaming_iterator(
      _config(data_dir, folder),
      split="test",
      local_batch_size=4,
      image_size=SIZE,
      train=False,
      seed=0,
    )
  )

  assert len(batches) == 2
  masks = np.concatenate([batch["mask"] for batch in batches])
  labels = np.concatenate([batch["label"] for batch in batches])
  images_ = np.concatenate([batch["image"] for batch in batches])
  assert masks.dtype == bool and masks.sum() == 6 and not masks[6:].any()
  np.testing.assert_array_equal(np.bincount(labels[masks]), [2, 2, 2])
  assert images_.shape == (8, SIZE, SIZE, 3) and not images_[~masks].any()


def test_streaming_eval_shards_stay_in_step(tree, data_dir):
  folder, _ = tree
  config = _config(data_dir, folder, max_eval_examples=5)  # Shards of 3 and 2.
  per_process = [
    list(
      image_stream.make_streaming_iterator(
        config,
        split="test",
        local_batch_size=2,
        image_size=SIZE,
        train=False,
        seed=0,
        process_index=i,
        process_count=2,
      )
    )
    for i in range(2)
  ]

  assert [len(batches) for batches in per_process] == [2, 2]
  real = [
    _image_set(np.concatenate([b["image"][b["mask"]] for b in batches]))
    for batches in per_process
  ]
  assert [len(r) for r in real] == [3, 2] and not real[0] & real[1]


# Sharding.


def test_shard_for_process_gives_ordered_blocks_first_ones_larger():
  array = np.arange(11)
  shards = [sharding.shard_for_process(array, i, 4) for i in range(4)]

  assert [len(shard) for shard in shards] == [3, 3, 3, 2]
  np.testing.assert_array_equal(np.concatenate(shards), array)
  np.testing.assert_array_equal(sharding.shard_for_process(array, 0, 1), array)
  with pytest.raises(ValueError, match="process_index"):
    sharding.shard_for_process(array, 4, 4)


def test_shard_for_process_splits_like_tfds():
  splits = tfds.core.SplitDict(
    [tfds.core.SplitInfo(name="train", shard_lengths=[11], num_bytes=0)]
  )
  for count in (2, 3, 4):
    for index in range(count):
      (instruction,) = tfds.split_for_jax_process(
        "train", process_index=index, process_count=count
      ).to_absolute(splits)
      examples = np.arange(11)
      np.testing.assert_array_equal(
        sharding.shard_for_process(examples, index, count),
        examples[instruction.from_ : instruction.to],
      )


# Real CIFAR-10.


@pytest.mark.slow
def test_cifar10_archive(cifar10_archive, tmp_path):
  config = _config(tmp_path, cifar10_archive, image_size=32)
  arrays = images.load_arrays(config)
  assert arrays.train_images.shape == (50_000, 32, 32, 3)
  assert arrays.eval_images.shape == (10_000, 32, 32, 3)
  assert arrays.train_images.dtype == np.uint8
  assert arrays.num_classes == 10
  assert tuple(_label_names(config)) == CIFAR10_CLASSES
  np.testing.assert_array_equal(np.bincount(arrays.train_labels), [5000] * 10)
  np.testing.assert_array_equal(np.bincount(arrays.eval_labels), [1000] * 10)
  assert 80 < arrays.train_images.mean() < 160  # Real photos, not blanks.
