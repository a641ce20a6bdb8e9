"""Vision Transformer (Dosovitskiy et al.), sized for small images.

Pre-LayerNorm encoder blocks built from `nn.MultiHeadDotProductAttention`, so
attention params are named `query`, `key`, `value`, `out` and both mimetic
routes (`mimetic_params`, `mimetic_init`) apply. The forward pass returns
`(logits, intermediates)`; `intermediates` holds the tokens after each block
and the pre-logits features, handy for diagnostics and tests.

Conventions: images are `(batch, height, width, channels)`, float, already in
the range the model should see: the model applies no normalisation of its own
(the image task maps pixels onto `dataset.value_range`, `tasks.to_value_range`).
Flax kernels are `(in, out)`; params are float32 and `dtype` sets the compute
dtype.
"""

import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mimetic_jax.models import layers

# width, depth, mlp_dim, heads (big_vision's table).
_VARIANTS = {
  "Ti": (192, 12, 768, 3),
  "S": (384, 12, 1536, 6),
  "M": (512, 12, 2048, 8),
  "B": (768, 12, 3072, 12),
  "L": (1024, 24, 4096, 16),
}


def decode_variant(variant: str) -> dict[str, Any]:
  """`'Ti/2'` -> `dict(width=192, depth=12, mlp_dim=768, num_heads=3,
  patch_size=2)`. Known sizes: Ti, S, M, B, L; any integer patch size."""
  match = re.fullmatch(r"(\w+)/(\d+)", variant)
  if not match or match.group(1) not in _VARIANTS:
    raise ValueError(
      f"Unknown ViT variant {variant!r}; use '<size>/<patch>' with size in "
      f"{sorted(_VARIANTS)} (e.g. 'Ti/2', 'S/16'), or set model.variant='' "
      "and give width, depth, mlp_dim, num_heads and patch_size explicitly."
    )
  width, depth, mlp_dim, heads = _VARIANTS[match.group(1)]
  return dict(
    width=width,
    depth=depth,
    mlp_dim=mlp_dim,
    num_heads=heads,
    patch_size=int(match.group(2)),
  )


def posemb_sincos_2d(
  h: int, w: int, width: int, temperature: float = 10_000.0
) -> np.ndarray:
  """2-D sin-cos position embedding (MoCo v3), `(1, h * w, width)`."""
  if width % 4:
    raise ValueError(f"2-D sin-cos posemb needs width % 4 == 0; got {width}.")
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1))
  y = y.reshape(-1)[:, None] * omega[None]
  x = x.reshape(-1)[:, None] * omega[None]
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return pe[None].astype(np.float32)


class ViT(nn.Module):
  """Vision Transformer classifier.

  Attributes:
    num_classes: size of the (zero-initialised) head; 0 returns features.
    patch_size, width, depth, mlp_dim, num_heads: architecture.
    pool: 'token' (class token, as in the paper) or 'gap' (mean of tokens).
    posemb: 'sincos2d' (default), 'sincos1d' or 'learn'.
    dropout: dropout rate in attention outputs and MLPs.
    dtype: compute dtype (params stay float32).
    attention_implementation: None (JAX picks cuDNN or XLA), 'xla' or
      'cudnn'; see `layers.dot_product_attention`.
    gelu_approximate: tanh-approximate GELU (Flax's default) or exact erf
      GELU (False; PyTorch's and timm's).
    remat: '' or a `layers.REMAT_POLICIES` name: rematerialise each block
      in the backward pass (less memory, more compute; same params).
  """

  num_classes: int
  patch_size: int = 2
  width: int = 192
  depth: int = 12
  mlp_dim: int = 768
  num_heads: int = 3
  pool: str = "token"
  posemb: str = "sincos2d"
  dropout: float = 0.0
  dtype: Any = jnp.float32
  attention_implementation: str | None = None
  gelu_approximate: bool = True
  remat: str = ""

  def _posemb(self, h: int, w: int) -> jnp.ndarray:
    if self.posemb == "sincos2d":
      return jnp.asarray(posemb_sincos_2d(h, w, self.width))
    if self.posemb == "sincos1d":
      return jnp.asarray(layers.posemb_sincos_1d(h * w, self.width))[None]
    if self.posemb == "learn":
      return self.param(
        "pos_embedding",
        nn.initializers.normal(0.02),
        (1, h * w, self.width),
        jnp.float32,
      )
    raise ValueError(
      f"Unknown posemb {self.posemb!r}; use 'sincos2d', 'sincos1d' or 'learn'."
    )

  @nn.compact
  def __call__(self, images: jnp.ndarray, *, train: bool = False):
    """`images`: `(batch, H, W, C)`, used as given -> `(logits,
    intermediates)`."""
    p = self.patch_size
    if images.shape[1] % p or images.shape[2] % p:
      raise ValueError(
        f"Image size {images.shape[1:3]} is not divisible by patch size {p}."
      )
    x = nn.Conv(
      self.width,
      (p, p),
      strides=(p, p),
      padding="VALID",
      dtype=self.dtype,
      name="embedding",
    )(images.astype(self.dtype))
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c) + self._posemb(h, w).astype(self.dtype)
    if self.pool == "token":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c), jnp.float32)
      x = jnp.concatenate([jnp.tile(cls.astype(self.dtype), (b, 1, 1)), x], 1)
    elif self.pool != "gap":
      raise ValueError(f"Unknown pool {self.pool!r}; use 'token' or 'gap'.")
    x = nn.Dropout(self.dropout, deterministic=not train)(x)

    intermediates = {}
    for i in range(self.depth):
      x = layers.encoder_block(self.remat)(
        mlp_dim=self.mlp_dim,
        num_heads=self.num_heads,
        dropout=self.dropout,
        dtype=self.dtype,
        attention_implementation=self.attention_implementation,
        gelu_approximate=self.gelu_approximate,
        name=f"encoderblock_{i}",
      )(x, None, train)
      intermediates[f"block{i:02d}"] = x
    x = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)
    x = x[:, 0] if self.pool == "token" else x.mean(axis=1)
    intermediates["pre_logits"] = x
    if not self.num_classes:
      return x, intermediates
    logits = nn.Dense(
      self.num_classes,
      kernel_init=nn.initializers.zeros,
      dtype=self.dtype,
      name="head",
    )(x)
    return logits.astype(jnp.float32), intermediates
