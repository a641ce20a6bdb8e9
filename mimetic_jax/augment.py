"""On-device data augmentation for the ViT-on-CIFAR recipe.

The paper trains ViTs on CIFAR with "RandAugment and Cutout" on top of the
standard random crop with padding and horizontal flip. `augment_batch` runs the
whole pipeline inside a jitted step, vectorised over the batch with one key per
example, and is deterministic given its key:

  1. `random_crop_with_padding`: zero-pad every side by `crop_padding` pixels,
     then take a uniformly placed crop of the original size (the CIFAR
     convention).
  2. Horizontal flip with probability 0.5 (`dm_pix.random_flip_left_right`).
  3. `randaugment`: `num_ops` ops, each drawn uniformly from `RANDAUGMENT_OPS`
     per example and always applied, at one shared magnitude.
  4. `cutout`: one `size x size` square, centre uniform over the image, clipped
     at the borders, filled with 0.

Conventions. Images are float32 `(H, W, C)` with `C = 3` (RGB) and values in
[0, 1]; every op here maps [0, 1] to [0, 1]. Rows run top to bottom, columns
left to right. Everything that uncovers pixels (crop padding, rotate, shear,
translate, cutout) fills them with 0 (black, like torchvision's RandAugment);
the public geometric ops and `cutout` take `fill=` for another constant (e.g. a
dataset mean). Geometric ops resample bilinearly with
`dm_pix.affine_transform`. The public ops are jitted (static: `size`,
`padding`, `num_ops`, `magnitude` and `augment_batch`'s options), so eager
calls compile once per shape and calls inside a jitted step are inlined.

RandAugment magnitudes use the usual 0..10 scale. With `level = magnitude / 10`
severity grows with the magnitude for every op (torchvision's convention, and
timm's "increasing" variants); at magnitude 0 every op except AutoContrast and
Equalize is the identity (Posterize at 8 bits only quantises to 8-bit levels):

  * Rotate: `30 * level` degrees; ShearX/ShearY: factor `0.3 * level`;
    TranslateX/TranslateY: `round(0.45 * level * size)` pixels (timm's
    relative translate). All with a random sign.
  * Color, Contrast, Brightness, Sharpness: factor `1 + 0.9 * level` with a
    random sign, so within [0.1, 1.9].
  * Solarize: threshold `256 * (1 - level)` on the 8-bit scale: a no-op at
    magnitude 0, inverting everything at 10.
  * Posterize: keep `8 - floor(4 * level)` bits (8 down to 4).

The enhance ops follow PIL's `ImageEnhance` (blend with a degenerate image,
clipped to [0, 1]) except Contrast, which is `dm_pix.adjust_contrast`
(tf.image semantics: each channel around its own mean, not PIL's one grey
mean). Brightness is PIL's multiplicative blend with black, not
`dm_pix.adjust_brightness` (an additive shift), and Color blends with
`dm_pix.rgb_to_grayscale`, not `dm_pix.adjust_saturation` (HSV saturation).
AutoContrast, Equalize and Posterize follow `PIL.ImageOps`; Equalize and
Posterize work on the 8-bit quantisation of the image, as PIL does.
"""

from collections.abc import Callable
import functools

import dm_pix as pix
import jax
import jax.numpy as jnp

MAX_MAGNITUDE = 10.0
_MAX_ROTATE_DEGREES = 30.0
_MAX_SHEAR = 0.3
_MAX_TRANSLATE_FRACTION = 0.45
_MAX_ENHANCE_DELTA = 0.9

# A pull-back affine map `(matrix, offset)`: output pixel `o = (row, col,
# channel)` samples the input at `matrix @ o + offset`.
AffineMap = tuple[jax.Array, jax.Array]


def _quantize(image: jax.Array) -> jax.Array:
  """Maps [0, 1] floats to int32 8-bit levels in [0, 255]."""
  return jnp.round(image * 255.0).astype(jnp.int32)


def _blend(degenerate: jax.Array, image: jax.Array,
           factor: jax.Array | float) -> jax.Array:
  """PIL's `Image.blend(degenerate, image, factor)`, clipped to [0, 1].

  `factor` 0 gives `degenerate`, 1 gives `image`, > 1 extrapolates.
  """
  return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


@jax.jit
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


@jax.jit
def equalize(image: jax.Array) -> jax.Array:
  """Histogram-equalizes each channel of the image's 8-bit quantisation.

  `PIL.ImageOps.equalize`'s lookup table: with `n` pixels and
  `step = (n - count of the brightest level) // 255`, level `i` maps to
  `(#pixels below i + step // 2) // step`, clipped to 255. A channel with
  `step == 0` (e.g. a constant one) is returned unchanged.
  """
  return jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(image)


@jax.jit
def solarize(image: jax.Array, threshold: jax.Array | float) -> jax.Array:
  """Inverts (`1 - x`) every value `>= threshold`; `threshold` is in [0, 1].

  `PIL.ImageOps.solarize`'s rule with its threshold divided by 255.
  """
  return pix.solarize(image, threshold)


@jax.jit
def posterize(image: jax.Array, bits: jax.Array | int) -> jax.Array:
  """Keeps the top `bits` (0..8) bits of each 8-bit level.

  `PIL.ImageOps.posterize` on the image's 8-bit quantisation; `bits = 8`
  only quantises.
  """
  shift = 8 - jnp.asarray(bits, jnp.int32)
  levels = jnp.left_shift(jnp.right_shift(_quantize(image), shift), shift)
  return levels.astype(image.dtype) / 255.0


@jax.jit
def color(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """`PIL.ImageEnhance.Color`: blend with the (rec601) greyscale image.

  0 gives greyscale, 1 the identity, > 1 more saturated colours.
  """
  return _blend(pix.rgb_to_grayscale(image, keep_dims=True), image, factor)


@jax.jit
def contrast(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """Scales each channel's deviation from its mean by `factor`, clipped.

  `dm_pix.adjust_contrast` (tf.image semantics): 0 makes each channel its
  constant mean, 1 is the identity.
  """
  return jnp.clip(pix.adjust_contrast(image, factor), 0.0, 1.0)


@jax.jit
def brightness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """`PIL.ImageEnhance.Brightness`: blend with black, i.e. `factor * image`.

  0 gives black, 1 the identity; clipped to [0, 1].
  """
  return jnp.clip(factor * image, 0.0, 1.0)


def _smooth(image: jax.Array) -> jax.Array:
  """PIL's `ImageFilter.SMOOTH` (3x3, centre weight 5 of 13); borders kept."""
  height, width = image.shape[:2]
  weights = ((1, 1, 1), (1, 5, 1), (1, 1, 1))
  interior = sum(
      weights[dy][dx] * image[dy:height - 2 + dy, dx:width - 2 + dx]
      for dy in range(3) for dx in range(3)) / 13.0
  return image.at[1:-1, 1:-1].set(interior)


@jax.jit
def sharpness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """`PIL.ImageEnhance.Sharpness`: blend with a smoothed copy.

  0 gives the smoothed image, 1 the identity, > 1 sharpens. Needs H, W >= 3.
  """
  return _blend(_smooth(image), image, factor)


def _affine(image: jax.Array, affine_map: AffineMap,
            fill: float) -> jax.Array:
  """Resamples `image` bilinearly through a pull-back map; outside: `fill`."""
  matrix, offset = affine_map
  return pix.affine_transform(
      image, matrix, offset=offset, mode="constant", cval=fill)


def _identity_map() -> AffineMap:
  return jnp.eye(3), jnp.zeros(3)


def _rotation_map(shape: tuple[int, ...],
                  degrees: jax.Array | float) -> AffineMap:
  """Counter-clockwise rotation about `(shape - 1) / 2`; as `dm_pix.rotate`."""
  angle = jnp.deg2rad(degrees)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  matrix = jnp.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
  centre = (jnp.asarray(shape, jnp.float32) - 1.0) / 2.0
  return matrix, centre - matrix @ centre


def _shear_x_map(shape: tuple[int, ...],
                 factor: jax.Array | float) -> AffineMap:
  """Samples `(r, c + factor * (r - centre_row))`; see `shear_x`."""
  centre_row = (shape[0] - 1) / 2.0
  matrix = jnp.array([[1.0, 0.0, 0.0], [factor, 1.0, 0.0], [0.0, 0.0, 1.0]])
  return matrix, jnp.array([0.0, -factor * centre_row, 0.0])


def _shear_y_map(shape: tuple[int, ...],
                 factor: jax.Array | float) -> AffineMap:
  """Samples `(r + factor * (c - centre_col), c)`; see `shear_y`."""
  centre_col = (shape[1] - 1) / 2.0
  matrix = jnp.array([[1.0, factor, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  return matrix, jnp.array([-factor * centre_col, 0.0, 0.0])


def _translation_map(down: jax.Array | float,
                     right: jax.Array | float) -> AffineMap:
  """Moves content `down` rows and `right` columns."""
  return jnp.eye(3), jnp.array([-down, -right, 0.0])


@jax.jit
def rotate(image: jax.Array, degrees: jax.Array | float, *,
           fill: float = 0.0) -> jax.Array:
  """Rotates about the image centre; positive `degrees` is counter-clockwise.

  Counter-clockwise as displayed (row 0 at the top), like `PIL.Image.rotate`
  and `np.rot90`: `rotate(image, 90)` equals `np.rot90(image)` for a square
  image, up to the outermost ring of pixels, which float error in the sampling
  coordinates can push out of bounds (they then get `fill`).
  """
  return _affine(image, _rotation_map(image.shape, degrees), fill)


@jax.jit
def shear_x(image: jax.Array, factor: jax.Array | float, *,
            fill: float = 0.0) -> jax.Array:
  """Horizontal shear about the centre row `(H - 1) / 2`.

  Output pixel `(r, c)` samples the input at
  `(r, c + factor * (r - centre_row))` (PIL's `(1, factor, 0, 0, 1, 0)`
  affine, re-centred): for `factor > 0` rows below the centre move left.
  """
  return _affine(image, _shear_x_map(image.shape, factor), fill)


@jax.jit
def shear_y(image: jax.Array, factor: jax.Array | float, *,
            fill: float = 0.0) -> jax.Array:
  """Vertical shear about the centre column `(W - 1) / 2`.

  Output pixel `(r, c)` samples the input at
  `(r + factor * (c - centre_col), c)`: for `factor > 0` columns right of the
  centre move up.
  """
  return _affine(image, _shear_y_map(image.shape, factor), fill)


@jax.jit
def translate_x(image: jax.Array, pixels: jax.Array | float, *,
                fill: float = 0.0) -> jax.Array:
  """Moves content `pixels` to the right (left if negative).

  `out[:, c] = image[:, c - pixels]`, uncovered columns `fill`; exact for
  integer `pixels`.
  """
  return _affine(image, _translation_map(0.0, pixels), fill)


@jax.jit
def translate_y(image: jax.Array, pixels: jax.Array | float, *,
                fill: float = 0.0) -> jax.Array:
  """Moves content `pixels` down (up if negative).

  `out[r] = image[r - pixels]`, uncovered rows `fill`; exact for integer
  `pixels`.
  """
  return _affine(image, _translation_map(pixels, 0.0), fill)


@functools.partial(jax.jit, static_argnames="size")
def cutout(key: jax.Array, image: jax.Array, size: int, *,
           fill: float = 0.0) -> jax.Array:
  """Fills one `size x size` square with `fill` (DeVries & Taylor, 2017).

  The square covers rows `[cy - size // 2, cy - size // 2 + size)` and the
  matching columns, for a centre `(cy, cx)` drawn uniformly over the pixels,
  clipped at the borders (near an edge fewer rows or columns are covered).
  """
  height, width = image.shape[:2]
  centre = jax.random.randint(key, (2,), 0, jnp.array([height, width]))
  start = centre - size // 2
  rows = jnp.arange(height) - start[0]
  cols = jnp.arange(width) - start[1]
  inside = (((rows >= 0) & (rows < size))[:, None]
            & ((cols >= 0) & (cols < size))[None, :])
  return jnp.where(inside[..., None], jnp.asarray(fill, image.dtype), image)


@functools.partial(jax.jit, static_argnames="padding")
def random_crop_with_padding(key: jax.Array, image: jax.Array,
                             padding: int) -> jax.Array:
  """Zero-pads `padding` pixels on every side, then crops `(H, W)` at random.

  The CIFAR convention: the result is the image moved by a uniform
  `(down, right)` in `[-padding, padding]^2`, uncovered pixels 0.
  """
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  return pix.random_crop(key, padded, image.shape)


# RandAugment ops as (name, geometric part, pixel part), either part None.
# `strength = sign * level` lies in [-1, 1]; unsigned ops use `|strength|`.
# Geometric part: (shape, strength) -> pull-back map; pixel part:
# (image, strength) -> image.
_RANDAUGMENT: tuple[tuple[str, Callable[..., AffineMap] | None,
                          Callable[..., jax.Array] | None], ...] = (
    ("Identity", None, None),
    ("AutoContrast", None, lambda image, _: autocontrast(image)),
    ("Equalize", None, lambda image, _: equalize(image)),
    ("Rotate", lambda shape, strength: _rotation_map(
        shape, _MAX_ROTATE_DEGREES * strength), None),
    ("Solarize", None, lambda image, strength: solarize(
        image, (1.0 - jnp.abs(strength)) * 256.0 / 255.0)),
    ("Color", None, lambda image, strength: color(
        image, 1.0 + _MAX_ENHANCE_DELTA * strength)),
    ("Posterize", None, lambda image, strength: posterize(
        image, 8 - jnp.floor(4.0 * jnp.abs(strength)).astype(jnp.int32))),
    ("Contrast", None, lambda image, strength: contrast(
        image, 1.0 + _MAX_ENHANCE_DELTA * strength)),
    ("Brightness", None, lambda image, strength: brightness(
        image, 1.0 + _MAX_ENHANCE_DELTA * strength)),
    ("Sharpness", None, lambda image, strength: sharpness(
        image, 1.0 + _MAX_ENHANCE_DELTA * strength)),
    ("ShearX", lambda shape, strength: _shear_x_map(
        shape, _MAX_SHEAR * strength), None),
    ("ShearY", lambda shape, strength: _shear_y_map(
        shape, _MAX_SHEAR * strength), None),
    ("TranslateX", lambda shape, strength: _translation_map(
        0.0, jnp.round(_MAX_TRANSLATE_FRACTION * strength * shape[1])), None),
    ("TranslateY", lambda shape, strength: _translation_map(
        jnp.round(_MAX_TRANSLATE_FRACTION * strength * shape[0]), 0.0), None),
)
RANDAUGMENT_OPS: tuple[str, ...] = tuple(name for name, _, _ in _RANDAUGMENT)


@functools.partial(jax.jit, static_argnames=("num_ops", "magnitude"))
def randaugment(key: jax.Array, image: jax.Array, *, num_ops: int = 2,
                magnitude: float = 9.0) -> jax.Array:
  """Applies `num_ops` ops drawn uniformly (with replacement) from the list.

  Each op gets a fresh uniform index into `RANDAUGMENT_OPS` and a fresh random
  sign; `magnitude` in [0, 10] is shared (scaling in the module docstring).
  Ops are chosen with `jax.lax.switch`, which under `vmap` evaluates every
  branch and selects. To keep that cheap, the geometric ops only choose an
  affine map (the identity for the others) and every op application does a
  single resample, exact for the identity map, followed by a switch over the
  pixel ops.
  """
  if not 0.0 <= magnitude <= MAX_MAGNITUDE:
    raise ValueError(f"magnitude must be in [0, 10], got {magnitude}")
  level = magnitude / MAX_MAGNITUDE
  maps = [functools.partial(geometric, image.shape) if geometric
          else lambda _: _identity_map()
          for _, geometric, _ in _RANDAUGMENT]
  pixel_ops = [pixel or (lambda image, _: image)
               for _, _, pixel in _RANDAUGMENT]

  def apply_one(image, op_key):
    index_key, sign_key = jax.random.split(op_key)
    index = jax.random.randint(index_key, (), 0, len(_RANDAUGMENT))
    strength = jnp.where(jax.random.bernoulli(sign_key), level, -level)
    image = _affine(image, jax.lax.switch(index, maps, strength), fill=0.0)
    return jax.lax.switch(index, pixel_ops, image, strength), None

  image, _ = jax.lax.scan(apply_one, image, jax.random.split(key, num_ops))
  return image


@functools.partial(
    jax.jit,
    static_argnames=("crop_padding", "flip", "randaugment_num_ops",
                     "randaugment_magnitude", "cutout_size"))
def augment_batch(key: jax.Array, images: jax.Array, *, crop_padding: int = 4,
                  flip: bool = True, randaugment_num_ops: int = 2,
                  randaugment_magnitude: float = 9.0,
                  cutout_size: int = 16) -> jax.Array:
  """images: float32 (B, H, W, C) in [0, 1] -> float32 (B, H, W, C) in [0, 1].

  Crop with zero padding, horizontal flip (p = 0.5), RandAugment, Cutout, in
  that order, each example with its own key from `jax.random.split(key, B)`.
  `crop_padding=0`, `flip=False`, `randaugment_num_ops=0` and `cutout_size=0`
  each disable their step; with all four off the output is `images`. The
  options are static (each combination compiles once); inside a jitted
  training step this is inlined.
  """
  if images.ndim != 4:
    raise ValueError(f"images must be (B, H, W, C), got shape {images.shape}")

  def augment_one(key, image):
    crop_key, flip_key, randaugment_key, cutout_key = jax.random.split(key, 4)
    if crop_padding:
      image = random_crop_with_padding(crop_key, image, crop_padding)
    if flip:
      image = pix.random_flip_left_right(flip_key, image)
    if randaugment_num_ops:
      image = randaugment(randaugment_key, image, num_ops=randaugment_num_ops,
                          magnitude=randaugment_magnitude)
    if cutout_size:
      image = cutout(cutout_key, image, cutout_size)
    return image

  return jax.vmap(augment_one)(jax.random.split(key, images.shape[0]), images)
