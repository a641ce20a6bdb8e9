"""TFDS builder for a user's own UTF-8 text: a `.txt` file or a folder of them.

`text_folder/<config>` has splits `train` and `validation`, each holding one
example `{"text": str}` per source file, in sorted relative-path order (tfds's
shuffling is disabled). Every file is split at a character position: the
first `1 - eval_fraction` of its characters go to `train`, the rest to
`validation` (the same rule tfds uses for tiny_shakespeare). Splitting every
file, rather than holding out whole files, keeps the two splits from the same
distribution and also works for a single file. Files are decoded as UTF-8
without newline translation, so the texts are exactly the files' contents.

Each source gets its own `BuilderConfig`, named from the sanitised path stem
plus a short hash of the resolved path, `eval_fraction` and the files' names,
sizes and modification times. It is prepared once into `data_dir`; editing
the files yields a new config name, hence a fresh preparation.
"""

import dataclasses
import hashlib
import pathlib
import re

import tensorflow_datasets as tfds

from mimetic_jax.errors import UserError

SUFFIX = ".txt"


def list_text_files(path: str | pathlib.Path) -> list[pathlib.Path]:
  """The `.txt` file `path`, or the `.txt` files under folder `path`, sorted.

  Raises:
    UserError: `path` does not exist or holds no `.txt` file.
  """
  path = pathlib.Path(path).expanduser().resolve()
  if path.is_file():
    return [path]
  files = sorted(p for p in path.rglob(f"*{SUFFIX}") if p.is_file())
  if not files:
    raise UserError(
      f"dataset.path={path} is neither a file nor a folder holding "
      f"'{SUFFIX}' files (searched recursively). Point --config.dataset.path "
      f"at a UTF-8 text file or at a folder of '{SUFFIX}' files."
    )
  return files


def split_point(num_chars: int, eval_fraction: float) -> int:
  """Characters of a `num_chars`-long file that go to `train`."""
  return int(num_chars * (1.0 - eval_fraction))


def read_text(path: pathlib.Path) -> str:
  """The file's exact contents as `str` (UTF-8, no newline translation).

  Raises:
    UserError: the file is not valid UTF-8.
  """
  try:
    return path.read_bytes().decode("utf-8")
  except UnicodeDecodeError as e:
    raise UserError(
      f"{path} is not valid UTF-8 ({e}). Convert it, e.g. with "
      f"`iconv -f LATIN1 -t UTF-8`, or leave it out of dataset.path."
    ) from e


def _fingerprint(
  root: pathlib.Path, files: list[pathlib.Path], eval_fraction: float
) -> str:
  """Short stable hash of what the prepared data depends on."""
  digest = hashlib.sha256(f"{root}\n{eval_fraction!r}\n".encode())
  for f in files:
    stat = f.stat()
    digest.update(f"{f}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:10]


def _sanitise(stem: str) -> str:
  """Lowercase `[a-z0-9_]` version of `stem`, at most 40 characters."""
  return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")[:40] or "text"


@dataclasses.dataclass(eq=False)
class TextFolderConfig(tfds.core.BuilderConfig):
  """One text source.

  Attributes:
    path: absolute path of the `.txt` file or folder.
    eval_fraction: fraction of every file's characters, taken from its end,
      that forms the `validation` split; in [0, 1).
  """

  path: str = ""
  eval_fraction: float = 0.1


def make_config(
  path: str | pathlib.Path, eval_fraction: float
) -> TextFolderConfig:
  """The config for `path` split at `eval_fraction`.

  Raises:
    UserError: `eval_fraction` is outside [0, 1), or see `list_text_files`.
  """
  if not 0.0 <= eval_fraction < 1.0:
    raise UserError(
      f"dataset.eval_fraction={eval_fraction} must be in [0, 1): it is the "
      "fraction of each file held out for evaluation."
    )
  root = pathlib.Path(path).expanduser().resolve()
  files = list_text_files(root)
  name = (
    f"{_sanitise(root.stem if root.is_file() else root.name)}_"
    f"{_fingerprint(root, files, eval_fraction)}"
  )
  return TextFolderConfig(
    name=name,
    version=TextFolder.VERSION,
    path=str(root),
    eval_fraction=eval_fraction,
    description=f"{root}, last {eval_fraction:g} of each file for eval",
  )


class TextFolder(tfds.core.GeneratorBasedBuilder):
  """A user's text files, split into train/validation within each file."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description="UTF-8 text files, one example per file and split.",
      features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Local files only.
    return {
      split: self._generate_examples(split) for split in ("train", "validation")
    }

  def _generate_examples(self, split: str):
    root = pathlib.Path(self.builder_config.path)
    for path in list_text_files(root):
      text = read_text(path)
      cut = split_point(len(text), self.builder_config.eval_fraction)
      key = str(path.relative_to(root)) if root.is_dir() else path.name
      yield key, {"text": text[:cut] if split == "train" else text[cut:]}
