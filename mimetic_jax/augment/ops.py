"""Per-image augmentation ops in JAX: colour, geometry, crop and cutout.

Conventions. Images are float32 `(H, W, C)` with `C = 3` (RGB) and values in
[0, 1]; every op maps [0, 1] to [0, 1]. Rows run top to bottom, columns left
to right. Ops that uncover pixels (crop padding, rotate, shear, translate,
cutout) fill them with 0 (black, like torchvision's RandAugment) unless given
another `fill=` (e.g. a dataset mean). Geometric ops resample bilinearly with
`dm_pix.affine_transform`. Nothing here is jitted: the ops are meant to be
traced inside the caller's jitted step.

The enhance ops follow PIL's `ImageEnhance` (blend with a degenerate image,
clipped to [0, 1]) except Contrast, which is `dm_pix.adjust_contrast`
(tf.image semantics: each channel around its own mean, not PIL's one grey
mean). Brightness is PIL's multiplicative blend with black, not
`dm_pix.adjust_brightness` (an additive shift), and Color blends with
`dm_pix.rgb_to_grayscale`, not `dm_pix.adjust_saturation` (HSV saturation).
AutoContrast, Equalize and Posterize follow `PIL.ImageOps`; Equalize and
Posterize work on the 8-bit quantisation of the image, as PIL does.
"""

import dm_pix as pix
import jax
import jax.numpy as jnp

# A pull-back affine map `(matrix, offset)`: output pixel `o = (row, col,
# channel)` samples the input at `matrix @ o + offset`.
AffineMap = tuple[jax.Array, jax.Array]


def _quantize(image: jax.Array) -> jax.Array:
  """Maps [0, 1] floats to int32 8-bit levels in [0, 255]."""
  return jnp.round(image * 255.0).astype(jnp.int32)


def _blend(
  degenerate: jax.Array, image: jax.Array, factor: jax.Array | float
) -> jax.Array:
  """PIL's `Image.blend(degenerate, image, factor)`, clipped to [0, 1].

  `factor` 0 gives `degenerate`, 1 gives `image`, > 1 extrapolates.
  """
  return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


# Colour ops.


def autocontrast(image: jax.Array) -> jax.Array:
  """Stretches each channel linearly so that its min is 0 and its max is 1.

  `PIL.ImageOps.autocontrast` (no cutoff) without PIL's 8-bit rounding.
  Constant channels are left unchanged.
  """
  low = jnp.min(image, axis=(0, 1), keepdims=True)
  high = jnp.max(image, axis=(0, 1), keepdims=True)
  spread = high - low
  stretched = (image - low) / jnp.where(spread > 0, spread, 1.0)
  return jnp.where(spread > 0, stretched, image)


def _equalize_channel(channel: jax.Array) -> jax.Array:
  """Equalizes one `(H, W)` channel; see `equalize`."""
  levels = _quantize(channel)
  histogram = jnp.bincount(levels.ravel(), length=256)
  step = (levels.size - histogram[jnp.max(levels)]) // 255
  safe_step = jnp.maximum(step, 1)
  below = jnp.cumsum(histogram) - histogram
  lut = jnp.clip((below + safe_step // 2) // safe_step, 0, 255)
  return jnp.where(step > 0, lut[levels].astype(channel.dtype) / 255.0, channel)


def equalize(image: jax.Array) -> jax.Array:
  """Histogram-equalizes each channel of the image's 8-bit quantisation.

  `PIL.ImageOps.equalize`'s lookup table: with `n` pixels and
  `step = (n - count of the brightest level) // 255`, level `i` maps to
  `(#pixels below i + step // 2) // step`, clipped to 255. A channel with
  `step == 0` (e.g. a constant one) is returned unchanged.
  """
  return jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(image)


def solarize(image: jax.Array, threshold: jax.Array | float) -> jax.Array:
  """Inverts (`1 - x`) every value `>= threshold`; `threshold` is in [0, 1].

  `PIL.ImageOps.solarize`'s rule with its threshold divided by 255.
  """
  return pix.solarize(image, threshold)


def posterize(image: jax.Array, bits: jax.Array | int) -> jax.Array:
  """Keeps the top `bits` (0..8) bits of each 8-bit level.

  `PIL.ImageOps.posterize` on the image's 8-bit quantisation; `bits = 8`
  only quantises.
  """
  shift = 8 - jnp.asarray(bits, jnp.int32)
  levels = jnp.left_shift(jnp.right_shift(_quantize(image), shift), shift)
  return levels.astype(image.dtype) / 255.0


def color(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """`PIL.ImageEnhance.Color`: blend with the (rec601) greyscale image.

  0 gives greyscale, 1 the identity, > 1 more saturated colours.
  """
  return _blend(pix.rgb_to_grayscale(image, keep_dims=True), image, factor)


def contrast(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """Scales each channel's deviation from its mean by `factor`, clipped.

  `dm_pix.adjust_contrast` (tf.image semantics): 0 makes each channel its
  constant mean, 1 is the identity.
  """
  return jnp.clip(pix.adjust_contrast(image, factor), 0.0, 1.0)


def brightness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """`PIL.ImageEnhance.Brightness`: blend with black, i.e. `factor * image`.

  0 gives black, 1 the identity; clipped to [0, 1].
  """
  return jnp.clip(factor * image, 0.0, 1.0)


def _smooth(image: jax.Array) -> jax.Array:
  """PIL's `ImageFilter.SMOOTH` (3x3, centre weight 5 of 13); borders kept."""
  image = jnp.asarray(image)
  height, width = image.shape[:2]
  weights = ((1, 1, 1), (1, 5, 1), (1, 1, 1))
  interior = (
    sum(
      weights[dy][dx] * image[dy : height - 2 + dy, dx : width - 2 + dx]
      for dy in range(3)
      for dx in range(3)
    )
    / 13.0
  )
  return image.at[1:-1, 1:-1].set(interior)


def sharpness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """`PIL.ImageEnhance.Sharpness`: blend with a smoothed copy.

  0 gives the smoothed image, 1 the identity, > 1 sharpens. Needs H, W >= 3.
  """
  return _blend(_smooth(image), image, factor)


# Geometric ops: a pull-back map, then one bilinear resample.


def affine(
  image: jax.Array, affine_map: AffineMap, fill: float = 0.0
) -> jax.Array:
  """Resamples `image` bilinearly through a pull-back map; outside: `fill`.

  Exact (returns `image`) for `identity_map()`.
  """
  matrix, offset = affine_map
  return pix.affine_transform(
    image, matrix, offset=offset, mode="constant", cval=fill
  )


def identity_map() -> AffineMap:
  """The map that samples every pixel at its own position."""
  return jnp.eye(3), jnp.zeros(3)


def rotation_map(
  shape: tuple[int, ...], degrees: jax.Array | float
) -> AffineMap:
  """Counter-clockwise rotation about `(shape - 1) / 2`; as `dm_pix.rotate`."""
  angle = jnp.deg2rad(degrees)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  matrix = jnp.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
  centre = (jnp.asarray(shape, jnp.float32) - 1.0) / 2.0
  return matrix, centre - matrix @ centre


def shear_x_map(shape: tuple[int, ...], factor: jax.Array | float) -> AffineMap:
  """Samples `(r, c + factor * (r - centre_row))`; see `shear_x`."""
  centre_row = (shape[0] - 1) / 2.0
  matrix = jnp.array([[1.0, 0.0, 0.0], [factor, 1.0, 0.0], [0.0, 0.0, 1.0]])
  return matrix, jnp.array([0.0, -factor * centre_row, 0.0])


def shear_y_map(shape: tuple[int, ...], factor: jax.Array | float) -> AffineMap:
  """Samples `(r + factor * (c - centre_col), c)`; see `shear_y`."""
  centre_col = (shape[1] - 1) / 2.0
  matrix = jnp.array([[1.0, factor, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  return matrix, jnp.array([-factor * centre_col, 0.0, 0.0])


def translation_map(
  down: jax.Array | float, right: jax.Array | float
) -> AffineMap:
  """Moves content `down` rows and `right` columns."""
  return jnp.eye(3), jnp.array([-down, -right, 0.0])


def rotate(
  image: jax.Array, degrees: jax.Array | float, *, fill: float = 0.0
) -> jax.Array:
  """Rotates about the image centre; positive `degrees` is counter-clockwise.

  Counter-clockwise as displayed (row 0 at the top), like `PIL.Image.rotate`
  and `np.rot90`: `rotate(image, 90)` equals `np.rot90(image)` for a square
  image, up to the outermost ring of pixels, which float error in the sampling
  coordinates can push out of bounds (they then get `fill`).
  """
  return affine(image, rotation_map(image.shape, degrees), fill)


def shear_x(
  image: jax.Array, factor: jax.Array | float, *, fill: float = 0.0
) -> jax.Array:
  """Horizontal shear about the centre row `(H - 1) / 2`.

  Output pixel `(r, c)` samples the input at
  `(r, c + factor * (r - centre_row))` (PIL's `(1, factor, 0, 0, 1, 0)`
  affine, re-centred): for `factor > 0` rows below the centre move left.
  """
  return affine(image, shear_x_map(image.shape, factor), fill)


def shear_y(
  image: jax.Array, factor: jax.Array | float, *, fill: float = 0.0
) -> jax.Array:
  """Vertical shear about the centre column `(W - 1) / 2`.

  Output pixel `(r, c)` samples the input at
  `(r + factor * (c - centre_col), c)`: for `factor > 0` columns right of the
  centre move up.
  """
  return affine(image, shear_y_map(image.shape, factor), fill)


def translate_x(
  image: jax.Array, pixels: jax.Array | float, *, fill: float = 0.0
) -> jax.Array:
  """Moves content `pixels` to the right (left if negative).

  `out[:, c] = image[:, c - pixels]`, uncovered columns `fill`; exact for
  integer `pixels`.
  """
  return affine(image, translation_map(0.0, pixels), fill)


def translate_y(
  image: jax.Array, pixels: jax.Array | float, *, fill: float = 0.0
) -> jax.Array:
  """Moves content `pixels` down (up if negative).

  `out[r] = image[r - pixels]`, uncovered rows `fill`; exact for integer
  `pixels`.
  """
  return affine(image, translation_map(pixels, 0.0), fill)


# Random crop and cutout.


def random_crop_with_padding(
  key: jax.Array, image: jax.Array, padding: int
) -> jax.Array:
  """Zero-pads `padding` pixels on every side, then crops `(H, W)` at random.

  The CIFAR convention: the result is the image moved by a uniform
  `(down, right)` in `[-padding, padding]^2`, uncovered pixels 0. `padding`
  is a Python int (static under jit).
  """
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  return pix.random_crop(key, padded, image.shape)


def cutout(
  key: jax.Array, image: jax.Array, size: int, *, fill: float = 0.0
) -> jax.Array:
  """Fills one `size x size` square with `fill` (DeVries & Taylor, 2017).

  The square covers rows `[cy - size // 2, cy - size // 2 + size)` and the
  matching columns, for a centre `(cy, cx)` drawn uniformly over the pixels,
  clipped at the borders (near an edge fewer rows or columns are covered).
  `size` is a Python int (static under jit).
  """
  height, width = image.shape[:2]
  centre = jax.random.randint(key, (2,), 0, jnp.array([height, width]))
  start = centre - size // 2
  rows = jnp.arange(height) - start[0]
  cols = jnp.arange(width) - start[1]
  inside = ((rows >= 0) & (rows < size))[:, None] & (
    (cols >= 0) & (cols < size)
  )[None, :]
  return jnp.where(inside[..., None], jnp.asarray(fill, image.dtype), image)
