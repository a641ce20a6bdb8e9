"""Decoder-only causal Transformer language model.

Pre-LN blocks shared with the ViT (`layers.EncoderBlock` with a causal mask),
so attention params are named `query`, `key`, `value`, `out` and mimetic
initialization applies unchanged. Tokens are `(batch, length)` int32; logits
are `(batch, length, vocab_size)` float32, position `i` predicting token
`i + 1`.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mimetic_jax.models import layers


class TransformerLM(nn.Module):
  """Causal LM.

  Attributes:
    vocab_size: number of token ids.
    width, depth, num_heads, mlp_dim: architecture (`mlp_dim=0` -> 4 * width).
    max_len: context length (size of the position table).
    posemb: 'learn' (N(0, 0.02) table) or 'sincos' (fixed 1-D sinusoids).
    tie_embeddings: read logits through the token embedding matrix.
    dropout: dropout rate on embeddings, attention outputs and MLPs.
    dtype: compute dtype (params stay float32).
    remat: '' or a `layers.REMAT_POLICIES` name: rematerialise each block
      in the backward pass (less memory, more compute; same params).
  """

  vocab_size: int
  width: int = 256
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 0
  max_len: int = 256
  posemb: str = "learn"
  tie_embeddings: bool = True
  dropout: float = 0.0
  dtype: Any = jnp.float32
  remat: str = ""

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, *, train: bool = False):
    """`tokens`: `(batch, length)` -> `(logits, intermediates)`."""
    length = tokens.shape[1]
    if length > self.max_len:
      raise ValueError(
        f"Sequence length {length} exceeds the model's max_len={self.max_len}."
      )
    embed = nn.Embed(
      self.vocab_size,
      self.width,
      embedding_init=nn.initializers.normal(0.02),
      dtype=self.dtype,
      name="embed",
    )
    # `perturb` is a no-op unless the caller passes a 'perturbations'
    # collection, through which gradients w.r.t. the embeddings can be taken.
    x = self.perturb("token_embeddings", embed(tokens))
    if self.posemb == "learn":
      pos = self.param(
        "pos_embedding",
        nn.initializers.normal(0.02),
        (self.max_len, self.width),
        jnp.float32,
      )
    elif self.posemb == "sincos":
      pos = jnp.asarray(layers.posemb_sincos_1d(self.max_len, self.width))
    else:
      raise ValueError(
        f"Unknown posemb {self.posemb!r}; use 'learn' or 'sincos'."
      )
    x = x + pos[None, :length].astype(self.dtype)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)

    mask = nn.make_causal_mask(tokens)
    intermediates = {}
    for i in range(self.depth):
      x = layers.encoder_block(self.remat)(
        mlp_dim=self.mlp_dim or 4 * self.width,
        num_heads=self.num_heads,
        dropout=self.dropout,
        dtype=self.dtype,
        name=f"block_{i}",
      )(x, mask, train)
      intermediates[f"block{i:02d}"] = x
    x = nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)
    if self.tie_embeddings:
      logits = embed.attend(x)
    else:
      logits = nn.Dense(
        self.vocab_size,
        dtype=self.dtype,
        kernel_init=nn.initializers.normal(0.02),
        name="head",
      )(x)
    return logits.astype(jnp.float32), intermediates
