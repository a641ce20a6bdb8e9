"""A tfds builder ingesting a folder or tar archive of class-subfolder images.

Source layout (a directory, or a `.tar.gz` / `.tgz` / `.tar` archive):

  <root>/<split>/<class>/<image>.{jpg,jpeg,png}     e.g. train/cat/0001.jpg

`<root>` is the source itself or, if every image sits one level deeper under
the same folder, that folder (archives usually wrap their content like
`cifar10-jpeg/train/cat/0001.jpg`). Splits are the split folders present;
classes are the class folder names, sorted, and must be the same in every
split. Entries whose name starts with '.' (e.g. macOS `._*` files) and files
with other extensions are ignored.

`download_and_prepare()` ingests the source once into the tfds `data_dir`, at
`<data_dir>/image_folder/<config name>/<version>/`; later builders for the same
source read the prepared records and never look at the source again (it may
even be gone). The config name is the sanitised source stem plus a hash of the
resolved path (`cifar10_jpeg_1a2b3c4d`), so different sources never collide.
Changing a source's files in place is not detected: delete its prepared folder
to re-ingest. Several processes must not ingest the same source into a shared
`data_dir` at once: prepare it once first.

Archives are streamed member by member with `tarfile` (nothing is extracted to
disk): one pass to list the layout, then one pass per split.

Image bytes are stored exactly as read (JPEG stays JPEG, PNG stays PNG; nothing
is decoded or re-encoded), so ingestion is I/O-bound and the prepared data is
about as large as the images themselves.

Features:
  image: uint8 (H, W, 3), decoded with `tf.image.decode_image`, so grayscale
    and RGBA sources come out as RGB. Sizes may differ between images.
  label: int64 ClassLabel over the sorted class names.
  file_name: the image's path below `<root>`, e.g. 'train/cat/0001.jpg'.
Examples are written in tfds's usual key-hash order (classes interleaved), so
`train[:N]` is a deterministic, roughly class-balanced subset.
"""

from collections.abc import Iterator, Mapping
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import os
import pathlib
import posixpath
import re
import tarfile
import zlib

import tensorflow_datasets as tfds

from mimetic_jax.data import prepared
from mimetic_jax.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# tfds writes split names into file names ('image_folder-train.tfrecord-...').
_SPLIT_NAME_RE = re.compile(r"\w+")
_LAYOUT_HINT = (
  "expected <root>/<split>/<class>/<image> with .jpg/.jpeg/.png images, "
  "e.g. train/cat/0001.jpg"
)

_Parts = tuple[str, ...]


def is_archive(source: pathlib.Path) -> bool:
  """Whether `source` is named like a supported tar archive."""
  return source.name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclasses.dataclass(frozen=True)
class SourceLayout:
  """Where the images of a source are.

  Attributes:
    root: posix path of `<root>` inside the source: '' or the wrapping folder.
    class_names: sorted class folder names (the same in every split).
    images: split name -> sorted `(file_name, class_name)` pairs, `file_name`
      being the posix path below `root`, e.g. ('train/cat/0001.jpg', 'cat').
  """

  root: str
  class_names: tuple[str, ...]
  images: Mapping[str, tuple[tuple[str, str], ...]]


@contextlib.contextmanager
def _open_archive(source: pathlib.Path) -> Iterator[tarfile.TarFile]:
  """`source` as a tar stream, read member by member; a truncated or damaged
  archive, found while streaming it, is a `UserError`. Gzip archives are
  decompressed by `gzip`, which reports a truncated file (tarfile's own
  stream mode stops silently at one on Python 3.13)."""
  try:
    with open(source, "rb") as raw:
      is_gzip = raw.read(2) == b"\x1f\x8b"
    with (
      gzip.open(source) if is_gzip else open(source, "rb") as stream,
      tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
      yield tar
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    raise UserError(
      f"The archive {source} cannot be read to the end ({type(e).__name__}: "
      f"{e}): it is truncated or damaged, e.g. by an interrupted download "
      "or copy. Fetch or copy it again (`tar -tzf` lists it when it is "
      "whole), or point dataset.path at the extracted folder."
    ) from None


def _iter_entries(source: pathlib.Path) -> Iterator[tuple[str, bool]]:
  """Yields `(posix path relative to source, is_dir)` for dirs and files."""
  if is_archive(source):
    with _open_archive(source) as tar:
      for member in tar:
        if member.isdir() or member.isfile():
          yield posixpath.normpath(member.name), member.isdir()
    return
  for dir_path, dir_names, file_names in os.walk(source):
    relative = pathlib.Path(dir_path).relative_to(source).as_posix()
    for name in dir_names:
      yield posixpath.normpath(posixpath.join(relative, name)), True
    for name in file_names:
      yield posixpath.normpath(posixpath.join(relative, name)), False


def _list_dirs_and_images(
  source: pathlib.Path,
) -> tuple[set[_Parts], list[_Parts]]:
  """Returns the (non-hidden) directories and image files, as path parts.

  Directories implied by an image's path are included even when the archive
  has no entry for them.
  """
  dirs, images = set(), []
  for path, is_dir in _iter_entries(source):
    parts = tuple(path.lstrip("/").split("/"))
    if any(part.startswith(".") for part in parts):
      continue  # Hidden entries, '.' and '..'.
    if is_dir:
      dirs.add(parts)
    elif parts[-1].lower().endswith(IMAGE_EXTENSIONS):
      images.append(parts)
      dirs.update(parts[:i] for i in range(1, len(parts)))
  return dirs, images


def _wrapping_folder(images: list[_Parts]) -> str:
  """The single folder wrapping `<root>`, or '' if images sit at depth 3."""
  if images and all(len(parts) == 4 for parts in images):
    tops = {parts[0] for parts in images}
    if len(tops) == 1:
      return tops.pop()
  return ""


def _check_split_names(source: pathlib.Path, splits: list[str]) -> None:
  if not splits:
    raise UserError(f"No split folders found in {source}: {_LAYOUT_HINT}.")
  for split in splits:
    if not _SPLIT_NAME_RE.fullmatch(split):
      raise UserError(
        f"Split folder {split!r} in {source} is not a valid tfds split "
        "name; rename it using only letters, digits and '_'."
      )


def _check_same_classes(
  source: pathlib.Path, classes: Mapping[str, set[str]]
) -> None:
  all_classes = set().union(*classes.values())
  missing = {
    split: sorted(all_classes - names)
    for split, names in classes.items()
    if names != all_classes
  }
  if missing:
    raise UserError(
      f"Splits of {source} have different class folders; every split needs "
      f"the same classes. Missing per split: {missing}."
    )


def scan_layout(source: pathlib.Path) -> SourceLayout:
  """Lists a source's splits, classes and images, checking the layout.

  Args:
    source: a directory or `.tar.gz` / `.tgz` / `.tar` archive.

  Returns:
    The source's layout.

  Raises:
    UserError: `source` does not exist, is neither a directory nor an
      archive, or does not follow the layout (no split folders, a split
      without class folders, a class folder without images, an image outside
      a class folder, class folders differing between splits).
  """
  if not source.exists():
    raise UserError(
      f"Image source {source} does not exist; give a folder or "
      f".tar.gz/.tgz/.tar archive with {_LAYOUT_HINT}."
    )
  if not (source.is_dir() or (source.is_file() and is_archive(source))):
    raise UserError(
      f"Image source {source} is neither a folder nor a "
      f"{'/'.join(ARCHIVE_SUFFIXES)} archive."
    )
  dirs, images = _list_dirs_and_images(source)
  root = _wrapping_folder(images)
  if root:
    dirs = {parts[1:] for parts in dirs if parts[0] == root and len(parts) > 1}
    images = [parts[1:] for parts in images]
  for parts in images:
    if len(parts) != 3:
      raise UserError(
        f"Image {'/'.join(parts)} in {source} is not in a <split>/<class>/ "
        f"folder; {_LAYOUT_HINT}."
      )

  splits = sorted(parts[0] for parts in dirs if len(parts) == 1)
  _check_split_names(source, splits)
  classes = {split: set() for split in splits}
  for parts in dirs:
    if len(parts) == 2:
      classes[parts[0]].add(parts[1])
  split_images = {split: [] for split in splits}
  for split, class_name, file_name in images:
    split_images[split].append(
      (f"{split}/{class_name}/{file_name}", class_name)
    )
  for split in splits:
    if not classes[split]:
      raise UserError(
        f"Split folder {split!r} in {source} has no class folders; "
        f"{_LAYOUT_HINT}."
      )
    empty = sorted(classes[split] - {name for _, name in split_images[split]})
    if empty:
      raise UserError(
        f"Class folders without .jpg/.jpeg/.png images in split {split!r} "
        f"of {source}: {empty}."
      )
  _check_same_classes(source, classes)
  return SourceLayout(
    root=root,
    class_names=tuple(sorted(classes[splits[0]])),
    images={
      split: tuple(sorted(pairs)) for split, pairs in split_images.items()
    },
  )


def _archive_stem(source: pathlib.Path) -> str:
  name = source.name
  for suffix in ARCHIVE_SUFFIXES:
    if name.lower().endswith(suffix):
      return name[: -len(suffix)]
  return name


def config_name(source: pathlib.Path) -> str:
  """`<sanitised stem>_<8 hex digits of sha256(resolved path)>`."""
  resolved = source.expanduser().resolve()
  stem = re.sub(r"[^a-z0-9]+", "_", _archive_stem(resolved).lower()).strip("_")
  digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
  return f"{stem or 'images'}_{digest}"


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  """Config naming one source.

  Attributes:
    source: resolved absolute path of the folder or archive.
  """

  source: str = ""


def builder_for_source(
  source: str | os.PathLike[str],
  *,
  data_dir: str | os.PathLike[str] | None = None,
) -> "ImageFolder":
  """The `ImageFolder` builder for `source`, keeping its data in `data_dir`.

  Scans the source only if it is not prepared yet (so a missing source or a
  bad layout raises here, see `scan_layout`).
  """
  path = pathlib.Path(source).expanduser().resolve()
  config = ImageFolderConfig(
    name=config_name(path),
    source=str(path),
    description=f"Class-subfolder images from {path}.",
  )
  with prepared.per_source_config():
    return ImageFolder(config=config, data_dir=data_dir)


def _check_image_bytes(
  data: bytes, source: pathlib.Path, file_name: str
) -> None:
  if not data.startswith((_JPEG_MAGIC, _PNG_MAGIC)):
    raise UserError(
      f"{file_name} in {source} is not a JPEG or PNG file (whatever its "
      "extension says); convert or remove it."
    )


def _read_archive_images(
  source: pathlib.Path, root: str, file_names: set[str]
) -> Iterator[tuple[str, bytes]]:
  """Yields `(file_name, bytes)` for the archive members named in the set."""
  prefix = f"{root}/" if root else ""
  with _open_archive(source) as tar:
    for member in tar:
      name = posixpath.normpath(member.name).lstrip("/")
      if member.isfile() and name.removeprefix(prefix) in file_names:
        yield name.removeprefix(prefix), tar.extractfile(member).read()


def _read_folder_images(
  source: pathlib.Path, root: str, file_names: set[str]
) -> Iterator[tuple[str, bytes]]:
  """Yields `(file_name, bytes)` for the named files below `source/root`."""
  for file_name in sorted(file_names):
    yield file_name, (source / root / file_name).read_bytes()


class ImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Class-subfolder images from a folder or archive; see the module doc.

  Build it with `builder_for_source`.
  """

  name = "image_folder"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  @functools.cached_property
  def layout(self) -> SourceLayout:
    """The source's layout (scanned on first use)."""
    return scan_layout(pathlib.Path(self.builder_config.source))

  def _info(self) -> tfds.core.DatasetInfo:
    # Once prepared, the class names are restored from the prepared data, so
    # the source is not scanned again.
    class_names = None if self.is_prepared() else self.layout.class_names
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3)),
          "label": tfds.features.ClassLabel(names=class_names),
          "file_name": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      description=self.builder_config.description,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    return {
      split: self._generate_examples(split) for split in self.layout.images
    }

  def _generate_examples(self, split: str):
    labels = dict(self.layout.images[split])
    source = pathlib.Path(self.builder_config.source)
    read = _read_archive_images if is_archive(source) else _read_folder_images
    num_read = 0
    for file_name, data in read(source, self.layout.root, set(labels)):
      _check_image_bytes(data, source, file_name)
      num_read += 1
      yield (
        file_name,
        {
          "image": data,  # Stored as is: no decoding or re-encoding.
          "label": labels[file_name],
          "file_name": file_name,
        },
      )
    if num_read != len(labels):
      raise UserError(
        f"Read {num_read} of the {len(labels)} {split!r} images listed in "
        f"{source}; did it change during ingestion? Ingest it again once "
        "it no longer changes."
      )
