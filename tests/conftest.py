"""Shared test fixtures.

Every test process sees 8 CPU devices (set below, before JAX is imported).
Real data lives in `../shared/data/` next to the checkout (override with the
MIMETIC_SHARED_DATA environment variable). Tests that need it skip with a
clear reason when it is absent.
"""

import os
import pathlib

# Eight fake CPU devices for the data-parallel tests; must precede JAX's import.
os.environ["XLA_FLAGS"] = " ".join(
  filter(
    None,
    [os.environ.get("XLA_FLAGS"), "--xla_force_host_platform_device_count=8"],
  )
)

import numpy as np  # pylint: disable=g-import-not-at-top
import PIL.Image  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
  os.environ.get("MIMETIC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)


def _shared_file(relative: str) -> pathlib.Path:
  path = SHARED_DATA / relative
  if not path.exists():
    pytest.skip(
      f"needs real data at {path}; put the project's shared data folder "
      "there or set MIMETIC_SHARED_DATA to its location"
    )
  return path


@pytest.fixture(scope="session")
def cifar10_archive() -> pathlib.Path:
  """The complete CIFAR-10 as JPEGs: cifar10-jpeg/{train,test}/<class>/N.jpg."""
  return _shared_file("cifar10-jpeg.tar.gz")


@pytest.fixture(scope="session")
def tinyshakespeare_dir() -> pathlib.Path:
  """Folder holding tfds's `tiny_shakespeare` manual file `input.txt`."""
  return _shared_file("tinyshakespeare/input.txt").parent


@pytest.fixture(scope="session")
def wikitext2_dir() -> pathlib.Path:
  """Folder holding WikiText-2's `valid.txt` and `test.txt`."""
  return _shared_file("wikitext-2/valid.txt").parent


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> pathlib.Path:
  """<root>/{train,test}/<colour>/i.png: 16x16 noisy images whose dominant
  colour channel is the class (3 classes; 96 training, 24 test images), so
  a tiny ViT learns them in a few steps. Needs no shared data."""
  root = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  for split, count in (("train", 32), ("test", 8)):
    for label, name in enumerate(("red", "green", "blue")):
      (root / split / name).mkdir(parents=True)
      for i in range(count):
        pixels = rng.integers(0, 96, (16, 16, 3))
        pixels[..., label] += 150
        PIL.Image.fromarray(pixels.astype(np.uint8)).save(
          root / split / name / f"{i}.png"
        )
  return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  """End-to-end tests (subprocesses) are slow tests too."""
  for item in items:
    if item.get_closest_marker("e2e"):
      item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_args(image_folder, tmp_path_factory) -> tuple[str, ...]:
  """`main.py` flags of a 16-step run on `image_folder` (`main_runs`)."""
  from main_runs import TINY_OVERRIDES  # pylint: disable=g-import-not-at-top

  data_dir = tmp_path_factory.mktemp("tfds")
  return (
    f"--config.dataset.path={image_folder}",
    f"--config.dataset.data_dir={data_dir}",
  ) + TINY_OVERRIDES


@pytest.fixture(scope="session")
def finished_run(tiny_args, tmp_path_factory):
  """`(workdir, result)` of one uninterrupted `tiny_args` run."""
  from main_runs import run_main  # pylint: disable=g-import-not-at-top

  workdir = tmp_path_factory.mktemp("run")
  return workdir, run_main(workdir, *tiny_args)
