"""RandAugment (Cubuk et al., 2020): random op choice at a shared magnitude.

Magnitudes use the usual 0..10 scale. With `level = magnitude / 10` severity
grows with the magnitude for every op (torchvision's convention, and timm's
"increasing" variants); at magnitude 0 every op except AutoContrast and
Equalize is the identity (Posterize at 8 bits only quantises to 8-bit levels):

  * Rotate: `30 * level` degrees; ShearX/ShearY: factor `0.3 * level`;
    TranslateX/TranslateY: `round(0.45 * level * size)` pixels (timm's
    relative translate). All with a random sign.
  * Color, Contrast, Brightness, Sharpness: factor `1 + 0.9 * level` with a
    random sign, so within [0.1, 1.9].
  * Solarize: threshold `256 * (1 - level)` on the 8-bit scale: a no-op at
    magnitude 0, inverting everything at 10.
  * Posterize: keep `8 - floor(4 * level)` bits (8 down to 4).

The ops themselves, and the image conventions, are `ops`'s.
"""

from collections.abc import Callable
import functools

import jax
import jax.numpy as jnp

from mimetic_jax.augment import ops

MAX_MAGNITUDE = 10.0
_MAX_ROTATE_DEGREES = 30.0
_MAX_SHEAR = 0.3
_MAX_TRANSLATE_FRACTION = 0.45
_MAX_ENHANCE_DELTA = 0.9

# RandAugment ops as (name, geometric part, pixel part), either part None.
# `strength = sign * level` lies in [-1, 1]; unsigned ops use `|strength|`.
# Geometric part: (shape, strength) -> pull-back map; pixel part:
# (image, strength) -> image.
_OPS: tuple[
  tuple[
    str, Callable[..., ops.AffineMap] | None, Callable[..., jax.Array] | None
  ],
  ...,
] = (
  ("Identity", None, None),
  ("AutoContrast", None, lambda image, _: ops.autocontrast(image)),
  ("Equalize", None, lambda image, _: ops.equalize(image)),
  (
    "Rotate",
    lambda shape, strength: ops.rotation_map(
      shape, _MAX_ROTATE_DEGREES * strength
    ),
    None,
  ),
  (
    "Solarize",
    None,
    lambda image, strength: ops.solarize(
      image, (1.0 - jnp.abs(strength)) * 256.0 / 255.0
    ),
  ),
  (
    "Color",
    None,
    lambda image, strength: ops.color(
      image, 1.0 + _MAX_ENHANCE_DELTA * strength
    ),
  ),
  (
    "Posterize",
    None,
    lambda image, strength: ops.posterize(
      image, 8 - jnp.floor(4.0 * jnp.abs(strength)).astype(jnp.int32)
    ),
  ),
  (
    "Contrast",
    None,
    lambda image, strength: ops.contrast(
      image, 1.0 + _MAX_ENHANCE_DELTA * strength
    ),
  ),
  (
    "Brightness",
    None,
    lambda image, strength: ops.brightness(
      image, 1.0 + _MAX_ENHANCE_DELTA * strength
    ),
  ),
  (
    "Sharpness",
    None,
    lambda image, strength: ops.sharpness(
      image, 1.0 + _MAX_ENHANCE_DELTA * strength
    ),
  ),
  (
    "ShearX",
    lambda shape, strength: ops.shear_x_map(shape, _MAX_SHEAR * strength),
    None,
  ),
  (
    "ShearY",
    lambda shape, strength: ops.shear_y_map(shape, _MAX_SHEAR * strength),
    None,
  ),
  (
    "TranslateX",
    lambda shape, strength: ops.translation_map(
      0.0, jnp.round(_MAX_TRANSLATE_FRACTION * strength * shape[1])
    ),
    None,
  ),
  (
    "TranslateY",
    lambda shape, strength: ops.translation_map(
      jnp.round(_MAX_TRANSLATE_FRACTION * strength * shape[0]), 0.0
    ),
    None,
  ),
)
RANDAUGMENT_OPS: tuple[str, ...] = tuple(name for name, _, _ in _OPS)


def randaugment(
  key: jax.Array, image: jax.Array, *, num_ops: int = 2, magnitude: float = 9.0
) -> jax.Array:
  """Applies `num_ops` ops drawn uniformly (with replacement) from the list.

  Each op gets a fresh uniform index into `RANDAUGMENT_OPS` and a fresh random
  sign; `magnitude` in [0, 10] is shared (scaling in the module docstring).
  `num_ops` and `magnitude` are Python numbers (static under jit). Ops are
  chosen with `jax.lax.switch`, which under `vmap` evaluates every branch and
  selects. To keep that cheap, the geometric ops only choose an affine map
  (the identity for the others) and every op application does a single
  resample, exact for the identity map, followed by a switch over the pixel
  ops.

  Args:
    key: PRNG key of this image.
    image: float32 (H, W, 3) in [0, 1].
    num_ops: ops applied one after the other.
    magnitude: shared magnitude in [0, 10].

  Returns:
    float32 (H, W, 3) in [0, 1].

  Raises:
    ValueError: `magnitude` is outside [0, 10].
  """
  if not 0.0 <= magnitude <= MAX_MAGNITUDE:
    raise ValueError(f"magnitude must be in [0, 10], got {magnitude}")
  level = magnitude / MAX_MAGNITUDE
  maps = [
    functools.partial(geometric, image.shape)
    if geometric
    else lambda _: ops.identity_map()
    for _, geometric, _ in _OPS
  ]
  pixel_ops = [pixel or (lambda image, _: image) for _, _, pixel in _OPS]

  def apply_one(image, op_key):
    index_key, sign_key = jax.random.split(op_key)
    index = jax.random.randint(index_key, (), 0, len(_OPS))
    strength = jnp.where(jax.random.bernoulli(sign_key), level, -level)
    image = ops.affine(image, jax.lax.switch(index, maps, strength), fill=0.0)
    return jax.lax.switch(index, pixel_ops, image, strength), None

  image, _ = jax.lax.scan(apply_one, image, jax.random.split(key, num_ops))
  return image
