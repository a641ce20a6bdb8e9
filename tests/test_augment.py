"""Tests for `mimetic_jax.augment`: each op on real and synthetic images.

Every op test runs twice: on a synthetic 8-bit image (always available) and on
the first JPEG of the shared CIFAR-10 archive (skipped without it). PIL is the
independent reference for the ops that copy PIL's definitions.
"""

import io
import tarfile
import types

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageEnhance, ImageOps
import pytest

from mimetic_jax import augment
from mimetic_jax.augment import ops as ops_lib
from mimetic_jax.augment import randaugment

_SIZE = 32
_ONE_LEVEL = 1.0 / 255.0

# Training traces the ops inside one jitted step; here each image-only op is
# jitted on its own (eager op-by-op dispatch of the resampling ops is slow).
ops = types.SimpleNamespace(
  **{
    name: jax.jit(getattr(ops_lib, name))
    for name in (
      "autocontrast",
      "equalize",
      "solarize",
      "posterize",
      "color",
      "contrast",
      "brightness",
      "sharpness",
      "rotate",
      "shear_x",
      "shear_y",
      "translate_x",
      "translate_y",
    )
  }
)


def _synthetic_uint8() -> np.ndarray:
  """A (32, 32, 3) uint8 image: gradients, a bright square and noise.

  Its levels stay inside roughly [30, 230], so autocontrast and equalize have
  work to do.
  """
  rows, cols = np.mgrid[0:_SIZE, 0:_SIZE]
  image = np.stack(
    [40 + 4 * rows, 60 + 3 * cols, 120 + 2 * (rows - cols)], axis=-1
  )
  image[8:16, 20:28] = 220
  noise = np.random.default_rng(0).integers(-10, 11, size=image.shape)
  return np.clip(image + noise, 0, 255).astype(np.uint8)


def _first_cifar_jpeg(archive) -> np.ndarray:
  """Decodes the archive's first JPEG member as a uint8 RGB array."""
  with tarfile.open(archive, "r:gz") as tar:
    for member in tar:
      if member.isfile() and member.name.endswith(".jpg"):
        data = tar.extractfile(member).read()
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  pytest.fail(f"no .jpg member in {archive}")


@pytest.fixture(params=["synthetic", "cifar10"], scope="module")
def image_u8(request) -> np.ndarray:
  if request.param == "synthetic":
    return _synthetic_uint8()
  return _first_cifar_jpeg(request.getfixturevalue("cifar10_archive"))


@pytest.fixture(scope="module")
def image(image_u8) -> np.ndarray:
  """`image_u8` as float32 in [0, 1], converted as the module quantises."""
  return np.asarray(jnp.asarray(image_u8, jnp.float32) / 255.0)


def _pil_reference(result: Image.Image) -> np.ndarray:
  return np.asarray(result, np.float32) / 255.0


def _shifted(image: np.ndarray, down: int, right: int) -> np.ndarray:
  """`image` moved `down` rows and `right` columns, uncovered pixels 0."""
  height, width = image.shape[:2]
  target = (
    slice(max(down, 0), height + min(down, 0)),
    slice(max(right, 0), width + min(right, 0)),
  )
  source = (
    slice(max(-down, 0), height - max(down, 0)),
    slice(max(-right, 0), width - max(right, 0)),
  )
  out = np.zeros_like(image)
  out[target] = image[source]
  return out


def _find_shift(
  out: np.ndarray, image: np.ndarray, padding: int
) -> tuple[int, int] | None:
  for down in range(-padding, padding + 1):
    for right in range(-padding, padding + 1):
      if np.array_equal(out, _shifted(image, down, right)):
        return down, right
  return None


def _cutout_square(
  out: np.ndarray, image: np.ndarray, size: int
) -> tuple[int, int]:
  """Asserts `out` is `image` with one (clipped) zero square; returns its shape.

  `image` must have no zeros, so that every covered pixel changes.
  """
  changed = np.any(out != image, axis=-1)
  assert changed.any()
  np.testing.assert_array_equal(out[changed], 0.0)
  np.testing.assert_array_equal(out[~changed], image[~changed])
  rows = np.flatnonzero(changed.any(axis=1))
  cols = np.flatnonzero(changed.any(axis=0))
  assert changed.sum() == rows.size * cols.size  # A filled rectangle...
  assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
  assert np.array_equal(cols, np.arange(cols[0], cols[-1] + 1))
  for covered, length in ((rows, out.shape[0]), (cols, out.shape[1])):
    # ... of side `size`, shorter only where clipped by a border.
    assert covered.size == size or (
      covered.size < size and (covered[0] == 0 or covered[-1] == length - 1)
    )
  return rows.size, cols.size


# Single-image ops.


def test_rotate_by_multiples_of_90_degrees(image):
  np.testing.assert_array_equal(ops.rotate(image, 0.0), image)
  interior = (slice(1, -1), slice(1, -1))
  for degrees, expected in (
    (90.0, np.rot90(image)),  # counter-clockwise
    (-90.0, np.rot90(image, k=-1)),
    (180.0, image[::-1, ::-1]),
  ):
    np.testing.assert_allclose(
      ops.rotate(image, degrees)[interior], expected[interior], atol=1e-5
    )
  wide = image[:, :20]
  np.testing.assert_allclose(
    ops.rotate(wide, 180.0)[interior], wide[::-1, ::-1][interior], atol=1e-5
  )


def test_rotate_fills_corners(image):
  rotated = np.asarray(ops.rotate(image, 45.0, fill=0.25))
  np.testing.assert_array_equal(rotated[0, 0], 0.25)
  np.testing.assert_allclose(rotated[-1, -1], 0.25)


def test_solarize_inverts_exactly_the_pixels_at_or_above_threshold(
  image, image_u8
):
  out = np.asarray(ops.solarize(image, 128 / 255))
  above = image_u8 >= 128
  assert above.any() and (~above).any()
  np.testing.assert_allclose(out[above], 1.0 - image[above], atol=1e-6)
  np.testing.assert_array_equal(out[~above], image[~above])
  reference = ImageOps.solarize(Image.fromarray(image_u8), threshold=128)
  np.testing.assert_allclose(out, _pil_reference(reference), atol=1e-6)


def test_posterize_keeps_top_bits_like_pil(image, image_u8):
  for bits in range(1, 9):
    reference = ImageOps.posterize(Image.fromarray(image_u8), bits)
    np.testing.assert_allclose(
      ops.posterize(image, bits),
      _pil_reference(reference),
      atol=1e-6,
      err_msg=f"bits={bits}",
    )
  # Floats count as their nearest 8-bit level: 8 bits only quantise.
  nudged = np.clip(image + np.where(image_u8 % 2, 0.4, -0.4) / 255, 0.0, 1.0)
  np.testing.assert_allclose(ops.posterize(nudged, 8), image, atol=1e-6)


def test_autocontrast_matches_pil(image, image_u8):
  out = np.asarray(ops.autocontrast(image))
  np.testing.assert_allclose(out.min(axis=(0, 1)), 0.0, atol=1e-6)
  np.testing.assert_allclose(out.max(axis=(0, 1)), 1.0, atol=1e-6)
  reference = ImageOps.autocontrast(Image.fromarray(image_u8))
  # PIL truncates to 8-bit levels; the float op does not round.
  np.testing.assert_allclose(
    out, _pil_reference(reference), atol=_ONE_LEVEL + 1e-6
  )


def test_autocontrast_leaves_constant_channels_alone():
  flat = np.full((8, 8, 3), 0.3, np.float32)
  np.testing.assert_array_equal(ops.autocontrast(flat), flat)


def test_equalize_matches_pil(image, image_u8):
  reference = ImageOps.equalize(Image.fromarray(image_u8))
  out = ops.equalize(image)
  np.testing.assert_allclose(out, _pil_reference(reference), atol=1e-5)
  assert not np.allclose(out, image, atol=_ONE_LEVEL)


@pytest.mark.parametrize(
  "op", [ops.brightness, ops.contrast, ops.color, ops.sharpness]
)
def test_enhance_ops_are_identity_at_factor_one(image, op):
  np.testing.assert_allclose(op(image, 1.0), image, atol=1e-6)
  assert not np.allclose(op(image, 0.3), image, atol=_ONE_LEVEL)


@pytest.mark.parametrize(
  "op, pil_enhance",
  [
    (ops.brightness, ImageEnhance.Brightness),
    (ops.color, ImageEnhance.Color),
    (ops.sharpness, ImageEnhance.Sharpness),
  ],
)
@pytest.mark.parametrize("factor", [0.3, 1.7])
def test_enhance_ops_match_pil(image, image_u8, op, pil_enhance, factor):
  reference = pil_enhance(Image.fromarray(image_u8)).enhance(factor)
  # PIL rounds its greyscale / smoothed intermediates to 8-bit levels.
  np.testing.assert_allclose(
    op(image, factor), _pil_reference(reference), atol=2 * _ONE_LEVEL
  )


def test_contrast_scales_around_channel_means(image):
  # float32 channel means over 1,024 pixels differ from numpy's by ~1e-6
  # (jax 0.10.2 here); 1e-5 is still 1/400 of one 8-bit level.
  means = image.mean(axis=(0, 1))
  np.testing.assert_allclose(
    ops.contrast(image, 0.0), np.broadcast_to(means, image.shape), atol=1e-5
  )
  np.testing.assert_allclose(
    ops.contrast(image, 0.5), means + 0.5 * (image - means), atol=1e-5
  )


@pytest.mark.slow
def test_translate_shifts_by_whole_pixels(image):
  for pixels in (5, -3):
    np.testing.assert_allclose(
      ops.translate_x(image, pixels), _shifted(image, 0, pixels), atol=1e-6
    )
    np.testing.assert_allclose(
      ops.translate_y(image, pixels), _shifted(image, pixels, 0), atol=1e-6
    )


def test_shear_moves_rows_and_columns_away_from_centre(image):
  # Centre row/column is 15.5; factor 0.4 moves the line 2.5 away by 1 pixel.
  below, above = 18, 13
  sheared = np.asarray(ops.shear_x(image, 0.4))
  np.testing.assert_allclose(  # Below the centre: content moves left...
    sheared[below, 2:-2], image[below, 3:-1], atol=1e-4
  )
  np.testing.assert_array_equal(sheared[below, -1], 0.0)
  np.testing.assert_allclose(  # ... above it: right.
    sheared[above, 2:-2], image[above, 1:-3], atol=1e-4
  )
  np.testing.assert_array_equal(sheared[above, 0], 0.0)
  sheared = np.asarray(ops.shear_y(image, 0.4))
  np.testing.assert_allclose(  # Right of the centre: content moves up.
    sheared[2:-2, below], image[3:-1, below], atol=1e-4
  )
  np.testing.assert_array_equal(sheared[-1, below], 0.0)
  np.testing.assert_allclose(
    sheared[2:-2, above], image[1:-3, above], atol=1e-4
  )


def test_cutout_fills_one_clipped_square(image):
  lifted = 0.2 + 0.8 * image  # No zeros, so the square shows.
  keys = jax.random.split(jax.random.key(0), 48)
  outs = jax.jit(
    jax.vmap(ops_lib.cutout, in_axes=(0, None, None)), static_argnums=2
  )(keys, lifted, 12)
  shapes = [_cutout_square(out, lifted, 12) for out in np.asarray(outs)]
  assert (12, 12) in shapes  # Whole squares ...
  assert any(shape != (12, 12) for shape in shapes)  # ... and clipped ones.


def test_random_crop_with_padding_shifts_with_zero_border(image):
  keys = jax.random.split(jax.random.key(1), 48)
  outs = jax.jit(
    jax.vmap(ops_lib.random_crop_with_padding, in_axes=(0, None, None)),
    static_argnums=2,
  )(keys, image, 3)
  shifts = {_find_shift(out, image, 3) for out in np.asarray(outs)}
  assert None not in shifts
  assert len(shifts) > 10


# The batch pipeline.

# `augment_batch` is meant to run inside a jitted step; so it runs here.
_augment_batch = jax.jit(
  augment.augment_batch,
  static_argnames=(
    "crop_padding",
    "flip",
    "randaugment_num_ops",
    "randaugment_magnitude",
    "cutout_size",
  ),
)


def _random_batch(shape) -> jax.Array:
  return jax.random.uniform(jax.random.key(42), shape, jnp.float32)


@pytest.mark.slow
def test_augment_batch_keeps_shape_dtype_range_inside_jit():
  images = _random_batch((8, _SIZE, _SIZE, 3))
  out = _augment_batch(jax.random.key(0), images)
  assert out.shape == images.shape and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.slow  # Compiles the whole default pipeline: ~15 s.
def test_augment_batch_is_deterministic_in_its_key():
  images = _random_batch((8, _SIZE, _SIZE, 3))
  first = np.asarray(_augment_batch(jax.random.key(3), images))
  np.testing.assert_array_equal(
    _augment_batch(jax.random.key(3), images), first
  )
  other = np.asarray(_augment_batch(jax.random.key(4), images))
  assert all(not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.slow
def test_augment_batch_handles_non_square_images():
  images = _random_batch((4, 20, 28, 3))
  out = _augment_batch(jax.random.key(0), images)
  assert out.shape == images.shape and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert not np.allclose(out, images)


_ALL_OFF = dict(
  crop_padding=0, flip=False, randaugment_num_ops=0, cutout_size=0
)


def _only(image: np.ndarray, batch_size: int, **step) -> np.ndarray:
  """Augments `batch_size` copies of `image` with only `step` enabled."""
  images = jnp.broadcast_to(image, (batch_size, *image.shape))
  options = {**_ALL_OFF, **step}
  return np.asarray(_augment_batch(jax.random.key(7), images, **options))


def test_augment_batch_with_every_step_off_is_identity(image):
  np.testing.assert_array_equal(
    _only(image, 4), np.broadcast_to(image, (4, *image.shape))
  )


@pytest.mark.slow
def test_augment_batch_crop_only_shifts(image):
  shifts = {
    _find_shift(out, image, 2) for out in _only(image, 16, crop_padding=2)
  }
  assert None not in shifts and len(shifts) > 1


def test_augment_batch_flip_only_mirrors_about_half(image):
  outs = _only(image, 16, flip=True)
  flipped = [np.array_equal(out, image[:, ::-1]) for out in outs]
  kept = [np.array_equal(out, image) for out in outs]
  assert all(f or k for f, k in zip(flipped, kept))
  assert any(flipped) and any(kept)


def test_augment_batch_cutout_only_fills_squares(image):
  lifted = 0.2 + 0.8 * image
  for out in _only(lifted, 8, cutout_size=10):
    _cutout_square(out, lifted, 10)


def _magnitude_9_candidates(
  image: np.ndarray,
) -> list[tuple[str, float, jax.Array]]:
  """(name, sign, output) of each op at magnitude 9 (level 0.9).

  Signed ops appear with both signs, unsigned ones once with sign 0, all on
  the documented scale.
  """
  candidates = [
    ("Identity", 0.0, image),
    ("AutoContrast", 0.0, ops.autocontrast(image)),
    ("Equalize", 0.0, ops.equalize(image)),
    ("Solarize", 0.0, ops.solarize(image, 0.1 * 256 / 255)),
    ("Posterize", 0.0, ops.posterize(image, 5)),
  ]
  translate = round(0.45 * 0.9 * _SIZE)
  for sign in (1.0, -1.0):
    candidates += [
      ("Rotate", sign, ops.rotate(image, 27.0 * sign)),
      ("Color", sign, ops.color(image, 1.0 + 0.81 * sign)),
      ("Contrast", sign, ops.contrast(image, 1.0 + 0.81 * sign)),
      ("Brightness", sign, ops.brightness(image, 1.0 + 0.81 * sign)),
      ("Sharpness", sign, ops.sharpness(image, 1.0 + 0.81 * sign)),
      ("ShearX", sign, ops.shear_x(image, 0.27 * sign)),
      ("ShearY", sign, ops.shear_y(image, 0.27 * sign)),
      ("TranslateX", sign, ops.translate_x(image, translate * sign)),
      ("TranslateY", sign, ops.translate_y(image, translate * sign)),
    ]
  return candidates


def test_randaugment_ops_list():
  assert randaugment.RANDAUGMENT_OPS == (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Solarize",
    "Color",
    "Posterize",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
  )


@pytest.mark.slow
def test_augment_batch_randaugment_only_applies_one_listed_op(image):
  candidates = _magnitude_9_candidates(image)
  assert {name for name, _, _ in candidates} == set(randaugment.RANDAUGMENT_OPS)
  applied = set()
  # 96 draws from 14 ops (fixed key): every op shows up, so every branch of
  # the dispatch is checked against its public function.
  for out in _only(image, 96, randaugment_num_ops=1, randaugment_magnitude=9.0):
    matches = {
      (name, sign)
      for name, sign, candidate in candidates
      if np.allclose(out, candidate, atol=1e-4)
    }
    assert matches, "output is none of the RandAugment ops at magnitude 9"
    applied |= matches
  assert {name for name, _ in applied} == set(randaugment.RANDAUGMENT_OPS)
  assert {sign for _, sign in applied} == {0.0, 1.0, -1.0}  # Random signs.


def test_randaugment_rejects_magnitude_outside_scale():
  with pytest.raises(ValueError, match="magnitude"):
    randaugment.randaugment(
      jax.random.key(0), jnp.zeros((8, 8, 3)), magnitude=11.0
    )
