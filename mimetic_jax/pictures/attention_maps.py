"""Softmax attention weights of a model on an input, and how far they reach.

`attention_weights` works on any Flax model built from
`nn.MultiHeadDotProductAttention`; `patch_attention` turns a ViT's weights on
one image (`load_image`) into patch-to-patch maps, and
`mean_attention_distance` measures how local they are (in patches).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mimetic_jax import diagnostics, tasks
from mimetic_jax.errors import UserError
from mimetic_jax.pictures import sources


def _sow_attention_weights(next_fun, args, kwargs, context):
  """Asks every `nn.MultiHeadDotProductAttention` to sow its weights."""
  if (
    isinstance(context.module, nn.MultiHeadDotProductAttention)
    and context.method_name == "__call__"
  ):
    kwargs = dict(kwargs, sow_weights=True)
  return next_fun(*args, **kwargs)


def attention_weights(
  model: nn.Module, params: Any, inputs: jax.Array
) -> dict[str, jax.Array]:
  """Softmax attention weights of every attention layer of `model`.

  Uses Flax's own `sow_weights` of `nn.MultiHeadDotProductAttention`
  (switched on from outside with a method interceptor), so any model built
  from it works unchanged. Dropout is off (`model.apply` without `train`).

  Args:
    model: a Flax module whose attention is `nn.MultiHeadDotProductAttention`.
    params: its params.
    inputs: what `model.apply` takes, e.g. images `(batch, H, W, 3)`.

  Returns:
    Layer name (the attention module's path, as in
    `diagnostics.attention_products`) -> `(batch, heads, queries, keys)`
    float32 weights, in layer order.
  """

  def run(params, inputs):
    with nn.intercept_methods(_sow_attention_weights):
      _, state = model.apply(
        {"params": params}, inputs, mutable=["intermediates"]
      )
    return state["intermediates"]

  intermediates = jax.jit(run)(params, inputs)
  found = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(intermediates)[0]:
    names = [str(getattr(p, "key", getattr(p, "idx", p))) for p in path]
    if "attention_weights" in names:
      name = "/".join(names[: names.index("attention_weights")])
      found[name] = leaf.astype(jnp.float32)
  order = sorted(found, key=diagnostics.layer_sort_key)
  return {name: found[name] for name in order}


def load_image(path: str, size: int) -> np.ndarray:
  """`(size, size, 3)` float32 in [0, 1]: RGB, centre-cropped to a square
  and resized (bicubic) when needed."""
  import PIL.Image  # pylint: disable=g-import-not-at-top

  try:
    with PIL.Image.open(path) as image:
      image = image.convert("RGB")
  except (OSError, ValueError) as e:
    raise UserError(
      f"Cannot read the image {path!r} ({e}). Pass a JPEG or PNG file with "
      "--image."
    ) from e
  w, h = image.size
  side = min(w, h)
  left, top = (w - side) // 2, (h - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side != size:
    image = image.resize((size, size), PIL.Image.Resampling.BICUBIC)
  return np.asarray(image, np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class PatchAttention:
  """Patch-to-patch attention of one layer (class token left out).

  `weights`: `(heads, P, P)` with `P = grid[0] * grid[1]` patches in
  row-major order; `weights[h, i, j]` is how much patch `i` attends to patch
  `j` (rows sum to 1 minus what went to the class token).
  `class_token_self`: `(heads,)` weight the class token puts on itself, or
  None without a class token. Near 1 means the class token reads nothing
  from the patches in that layer (what mimetic init's identity-like
  `W_q W_k^T` does to a class token from the second layer on).
  """

  name: str
  weights: np.ndarray
  grid: tuple[int, int]
  class_token_self: np.ndarray | None = None


def patch_attention(
  source: sources.Source, image: np.ndarray
) -> list[PatchAttention]:
  """Attention of every layer of a ViT source on one image.

  Args:
    source: an image-task source (a `ViT`).
    image: `(H, W, 3)` in [0, 1], at the model's input size; mapped to the
      config's `dataset.value_range` as the trainer does.
  """
  if source.config.task != "image":
    raise UserError(
      "Attention maps on an image need an image model "
      f"(task='image'); this source has task="
      f"{source.config.task!r}."
    )
  p = source.model.patch_size
  grid = (image.shape[0] // p, image.shape[1] // p)
  inputs = tasks.to_value_range(jnp.asarray(image)[None], source.config.dataset)
  weights = attention_weights(source.model, source.params, inputs)
  maps = []
  for name, w in weights.items():
    w = np.asarray(w[0])  # (heads, tokens, tokens).
    prefix = w.shape[-1] - grid[0] * grid[1]  # 1 with a class token.
    maps.append(
      PatchAttention(
        name,
        w[:, prefix:, prefix:],
        grid,
        class_token_self=w[:, 0, 0] if prefix else None,
      )
    )
  return maps


def _patch_distances(grid: tuple[int, int]) -> np.ndarray:
  """`(P, P)` Euclidean distances between patch centres, in patches."""
  rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
  return np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])


def mean_attention_distance(attention: PatchAttention) -> float:
  """Attention-weighted distance (in patches) from query to key patches,
  averaged over queries and heads; each query's weights renormalised over
  patches. Uniform attention gives `uniform_distance(grid)`; local
  (convolution-like) attention much less."""
  w = attention.weights / attention.weights.sum(-1, keepdims=True)
  return float((w * _patch_distances(attention.grid)).sum(-1).mean())


def uniform_distance(grid: tuple[int, int]) -> float:
  """Mean distance between two patches: what uniform attention gives."""
  return float(_patch_distances(grid).mean())
