"""On-device data augmentation for the ViT-on-CIFAR recipe: `augment_batch`.

The paper trains ViTs on CIFAR with "RandAugment and Cutout" on top of the
standard random crop with padding and horizontal flip. The single-image ops
are in `ops`, op choice and magnitudes in `randaugment`.
"""

import dm_pix as pix
import jax

from mimetic_jax.augment import ops, randaugment


def augment_batch(
  key: jax.Array,
  images: jax.Array,
  *,
  crop_padding: int = 4,
  flip: bool = True,
  randaugment_num_ops: int = 2,
  randaugment_magnitude: float = 9.0,
  cutout_size: int = 16,
) -> jax.Array:
  """images: float32 (B, H, W, C) in [0, 1] -> float32 (B, H, W, C) in [0, 1].

  Per example, with its own key from `jax.random.split(key, B)` (split again
  into crop, flip, RandAugment and cutout keys), in this order:

    1. `ops.random_crop_with_padding`: zero-pad every side by `crop_padding`
       pixels, then a uniformly placed crop of the original size.
    2. Horizontal flip with probability 0.5 (`dm_pix.random_flip_left_right`).
    3. `randaugment.randaugment`: `randaugment_num_ops` ops at
       `randaugment_magnitude` (0..10).
    4. `ops.cutout`: one `cutout_size` square filled with 0.

  `crop_padding=0`, `flip=False`, `randaugment_num_ops=0` and `cutout_size=0`
  each disable their step; with all four off the output is `images`. The
  options are Python values: call this inside a jitted step, where they are
  static. Deterministic given `key`.
  """
  if images.ndim != 4:
    raise ValueError(f"images must be (B, H, W, C), got shape {images.shape}")

  def augment_one(key, image):
    crop_key, flip_key, randaugment_key, cutout_key = jax.random.split(key, 4)
    if crop_padding:
      image = ops.random_crop_with_padding(crop_key, image, crop_padding)
    if flip:
      image = pix.random_flip_left_right(flip_key, image)
    if randaugment_num_ops:
      image = randaugment.randaugment(
        randaugment_key,
        image,
        num_ops=randaugment_num_ops,
        magnitude=randaugment_magnitude,
      )
    if cutout_size:
      image = ops.cutout(cutout_key, image, cutout_size)
    return image

  return jax.vmap(augment_one)(jax.random.split(key, images.shape[0]), images)
