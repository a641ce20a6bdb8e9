"""The project's ViT as a `timm.models.vision_transformer.VisionTransformer`.

For cross-checking this implementation against PyTorch's most used ViT code.
Needs the `reference` extra (`pip install -e '.[reference]'`: torch, timm);
nothing else in the project imports this module.

`timm_vit(model)` builds timm's ViT with `model`'s architecture and
`load_params(vit, params)` copies Flax params into it, so that

    timm_vit_out = vit(torch.from_numpy(images).permute(0, 3, 1, 2))
    flax_out, _ = model.apply({"params": params}, images)

agree to float32 rounding (tests/test_reference.py). Conventions, and how
they are matched:

* Input: neither model normalises its input; both get the same pixels (what
  `tasks.to_value_range` gives the trainer), NHWC for Flax, NCHW for torch.
* Patch embedding: Flax `Conv` kernel `(p, p, C, d)` (HWIO) -> torch `Conv2d`
  weight `(d, C, p, p)` (OIHW).
* Position embedding: fixed 2-D sin-cos added to the patch tokens only, the
  class token prepended afterwards without one: timm's `no_embed_class=True`
  with `pos_embed` set to the same table (and frozen).
* Attention: Flax's `query`/`key`/`value` kernels `(d, heads, head_dim)` ->
  rows of timm's fused `qkv` Linear, `(3 d, d)`, head-major (`h * head_dim +
  j`); `out` `(heads, head_dim, d)` -> `proj`. Both scale logits by
  `head_dim ** -0.5`.
* Dense layers: Flax kernels are `(in, out)`, torch weights `(out, in)`.
* GELU: Flax's default is the tanh approximation, timm's the exact erf form;
  build the Flax ViT with `gelu_approximate=False` to match.
* LayerNorm: epsilon 1e-6 in both.
* Pooling: class token, or (`pool='gap'`) the mean of the final-normed
  tokens: timm's `global_pool='avg'` with `fc_norm=False`.
"""

from typing import TYPE_CHECKING, Any

import numpy as np

from mimetic_jax.models import ViT
from mimetic_jax.models.vit import posemb_sincos_2d

if TYPE_CHECKING:  # torch and timm are imported lazily (the `reference` extra).
  from timm.models.vision_transformer import VisionTransformer


def timm_vit(
  model: ViT, image_size: int, in_chans: int = 3
) -> "VisionTransformer":
  """timm's `VisionTransformer` with `model`'s architecture: timm's own
  initialization (see `load_params` to copy Flax weights in) except for the
  position embedding, which is `model`'s fixed 2-D sin-cos table and frozen."""
  from timm.models import vision_transformer  # pylint: disable=g-import-not-at-top

  if model.posemb != "sincos2d":
    raise ValueError(f"Only posemb='sincos2d' is ported, not {model.posemb!r}.")
  if model.mlp_dim % model.width:
    raise ValueError(
      "timm needs mlp_dim to be a multiple of width; got "
      f"{model.mlp_dim} and {model.width}."
    )
  import torch  # pylint: disable=g-import-not-at-top

  vit = vision_transformer.VisionTransformer(
    img_size=image_size,
    patch_size=model.patch_size,
    in_chans=in_chans,
    num_classes=model.num_classes,
    embed_dim=model.width,
    depth=model.depth,
    num_heads=model.num_heads,
    mlp_ratio=model.mlp_dim / model.width,
    qkv_bias=True,
    class_token=model.pool == "token",
    global_pool="token" if model.pool == "token" else "avg",
    fc_norm=False,
    no_embed_class=True,
  )
  with torch.no_grad():  # Fixed, as in the Flax ViT.
    vit.pos_embed.copy_(
      _tensor(posemb_sincos_2d(*vit.patch_embed.grid_size, vit.embed_dim))
    )
  vit.pos_embed.requires_grad_(False)
  return vit


def _tensor(array: Any):
  import torch  # pylint: disable=g-import-not-at-top

  return torch.from_numpy(np.array(array, np.float32))


def _linear(linear, kernel: Any, bias: Any) -> None:
  """Flax `(in, out)` kernel -> torch `(out, in)` weight."""
  linear.weight.copy_(_tensor(np.asarray(kernel).T))
  linear.bias.copy_(_tensor(bias))


def _layer_norm(norm, params: Any) -> None:
  norm.weight.copy_(_tensor(params["scale"]))
  norm.bias.copy_(_tensor(params["bias"]))


def load_params(vit, params: Any) -> None:
  """Copies Flax `ViT` params into `vit` (from `timm_vit`), in place."""
  import torch  # pylint: disable=g-import-not-at-top

  with torch.no_grad():
    embedding = params["embedding"]
    vit.patch_embed.proj.weight.copy_(
      _tensor(np.transpose(embedding["kernel"], (3, 2, 0, 1)))
    )
    vit.patch_embed.proj.bias.copy_(_tensor(embedding["bias"]))
    if vit.cls_token is not None:
      vit.cls_token.copy_(_tensor(params["cls"]))
    for i, block in enumerate(vit.blocks):
      p = params[f"encoderblock_{i}"]
      attention = p["attention"]
      d = vit.embed_dim
      flat = lambda name: np.asarray(attention[name]["kernel"]).reshape(d, d)  # noqa: B023 (used in this iteration)
      block.attn.qkv.weight.copy_(
        _tensor(
          np.concatenate([flat("query").T, flat("key").T, flat("value").T])
        )
      )
      block.attn.qkv.bias.copy_(
        _tensor(
          np.concatenate(
            [
              np.asarray(attention[n]["bias"]).reshape(d)
              for n in ("query", "key", "value")
            ]
          )
        )
      )
      _linear(
        block.attn.proj,
        np.asarray(attention["out"]["kernel"]).reshape(d, d),
        attention["out"]["bias"],
      )
      _layer_norm(block.norm1, p["norm1"])
      _layer_norm(block.norm2, p["norm2"])
      _linear(block.mlp.fc1, p["mlp"]["fc1"]["kernel"], p["mlp"]["fc1"]["bias"])
      _linear(block.mlp.fc2, p["mlp"]["fc2"]["kernel"], p["mlp"]["fc2"]["bias"])
    _layer_norm(vit.norm, params["encoder_norm"])
    if "head" in params:  # None when num_classes=0 (features only).
      _linear(vit.head, params["head"]["kernel"], params["head"]["bias"])
