"""TFDS builder for WikiText-103 (raw), one example per Wikipedia article.

tfds ships no WikiText builder, so this module defines `wikitext103`
(importing it registers the name with tfds). Each example is
`{"text": str}` holding one article exactly as it appears in the raw file:
the blank line before its ` = Title = ` line, the title, and every line up to
the next article, newlines included. Article-level examples keep the
long-range structure that WikiText is built for, and concatenating a split's
examples in order (the builder disables tfds's shuffling) reproduces the
source file character for character.

Sources, in order of preference:

* `manual_dir` (`tfds.download.DownloadConfig(manual_dir=...)`): the raw
  split files under their official names `wiki.{train,valid,test}.raw` or as
  `{train,valid,test}.txt`. Only the splits whose files are present are
  prepared, which lets a machine without internet prepare e.g. validation and
  test only. Any WikiText-format file works (WikiText-2 included).
* Otherwise the official archive `wikitext-103-raw-v1.zip` is downloaded and
  extracted by the download manager.
"""

from collections.abc import Iterable, Iterator
import os
import re

import tensorflow_datasets as tfds

from mimetic_jax.errors import UserError

ARCHIVE_URL = "https://wikitext.smerity.com/wikitext-103-raw-v1.zip"
ARCHIVE_FOLDER = "wikitext-103-raw"

# tfds split name -> accepted file names, official name first.
SPLIT_FILES = {
  "train": ("wiki.train.raw", "train.txt"),
  "validation": ("wiki.valid.raw", "valid.txt"),
  "test": ("wiki.test.raw", "test.txt"),
}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Optional: to prepare without internet, download and unzip
https://wikitext.smerity.com/wikitext-103-raw-v1.zip on a connected machine
and put any of `wiki.train.raw`, `wiki.valid.raw`, `wiki.test.raw` (or
`train.txt`, `valid.txt`, `test.txt`) in `manual_dir`. Only the splits whose
files are present are prepared. With an empty or missing `manual_dir` the
archive is downloaded.
"""

_TITLE_LINE = re.compile(r" = [^=].* = ")


def _is_blank(line: str) -> bool:
  return not line.strip()


def _starts_article(previous: str, title: str, following: str) -> bool:
  """Whether `title` is an article title: ` = T = ` between blank lines."""
  return (
    _is_blank(previous)
    and _is_blank(following)
    and _TITLE_LINE.fullmatch(title.rstrip("\r\n")) is not None
  )


def split_articles(lines: Iterable[str]) -> Iterator[str]:
  """Groups WikiText lines (newlines kept) into articles, losslessly.

  An article starts at the blank line preceding a top-level title
  (` = Title = `, as opposed to section headings ` = = Title = = `) that is
  itself followed by a blank line. Text before the first title forms its own
  leading chunk, so `"".join(split_articles(lines)) == "".join(lines)`.

  Args:
    lines: the file's lines with their line endings, e.g. an open file.

  Yields:
    One string per article, in file order.
  """
  article = []
  for line in lines:
    article.append(line)
    if len(article) > 3 and _starts_article(*article[-3:]):
      yield "".join(article[:-3])
      article = article[-3:]
  if article:
    yield "".join(article)


def find_split_files(folder: os.PathLike[str] | str) -> dict[str, str]:
  """Maps each split with a raw file in `folder` to that file's path."""
  found = {}
  for split, names in SPLIT_FILES.items():
    for name in names:
      path = os.path.join(folder, name)
      if os.path.isfile(path):
        found[split] = path
        break
  return found


def _manual_split_files(
  dl_manager: tfds.download.DownloadManager,
) -> dict[str, str]:
  """Split files in `manual_dir`; empty when it is absent or empty.

  Raises:
    UserError: `manual_dir` holds files but none of the split files.
  """
  try:
    manual_dir = dl_manager.manual_dir
  except AssertionError:  # tfds: manual_dir not given, absent or empty.
    return {}
  found = find_split_files(manual_dir)
  if not found:
    expected = ", ".join(
      name for names in SPLIT_FILES.values() for name in names
    )
    raise UserError(
      f"manual_dir {manual_dir} holds none of the WikiText-103 split files "
      f"({expected}). Put at least one of them there (they are in "
      f"{ARCHIVE_URL}), or leave manual_dir empty to download the archive."
    )
  return found


class Wikitext103(tfds.core.GeneratorBasedBuilder):
  """WikiText-103 raw (Merity et al., 2016), one example per article."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: article-level raw text."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "WikiText-103 raw: Good and Featured Wikipedia articles, one "
        "example per article, in file order."
      ),
      features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
      homepage=(
        "https://www.salesforce.com/blog/"
        "the-wikitext-long-term-dependency-language-modeling-dataset/"
      ),
      citation=(
        "@article{merity2016pointer, title={Pointer Sentinel Mixture "
        "Models}, author={Merity, Stephen and Xiong, Caiming and "
        "Bradbury, James and Socher, Richard}, journal={arXiv preprint "
        "arXiv:1609.07843}, year={2016}}"
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    split_files = _manual_split_files(dl_manager)
    if not split_files:
      folder = os.path.join(
        dl_manager.download_and_extract(ARCHIVE_URL), ARCHIVE_FOLDER
      )
      split_files = {
        split: os.path.join(folder, names[0])
        for split, names in SPLIT_FILES.items()
      }
    return {
      split: self._generate_examples(path)
      for split, path in split_files.items()
    }

  def _generate_examples(self, path: str):
    # newline="" keeps the file's line endings, so the text is unaltered.
    with open(path, encoding="utf-8", newline="") as f:
      yield from enumerate({"text": article} for article in split_articles(f))
