"""Transformer building blocks shared by the ViT and the language model.

Default initializers (what `init='default'` means): attention and MLP kernels
Xavier-uniform, MLP biases N(0, 1e-6), attention biases zero (as in
big_vision's ViT). Attention is `nn.MultiHeadDotProductAttention` (computed by
`jax.nn.dot_product_attention`), so its params are named `query`, `key`,
`value`, `out`, with kernels `(d, heads, head_dim)` and `(heads, head_dim, d)`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def posemb_sincos_1d(
  length: int, width: int, temperature: float = 10_000.0
) -> np.ndarray:
  """1-D sinusoidal position embedding (Vaswani et al.), `(length, width)`."""
  if width % 2:
    raise ValueError(f"1-D sin-cos posemb needs an even width; got {width}.")
  omega = 1.0 / temperature ** (np.arange(width // 2) / (width // 2))
  angles = np.arange(length)[:, None] * omega[None]
  return np.concatenate([np.sin(angles), np.cos(angles)], 1).astype(np.float32)


def dot_product_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  bias: jax.Array | None = None,
  mask: jax.Array | None = None,
  *,
  dropout_rate: float = 0.0,
  deterministic: bool = True,
  module: nn.Module | None = None,
  implementation: str | None = None,
  **kwargs,
) -> jax.Array:
  """`attention_fn` for `nn.MultiHeadDotProductAttention`: softmax attention
  through `jax.nn.dot_product_attention` (cuDNN flash attention on NVIDIA
  GPUs where it applies, XLA elsewhere).

  Shapes as Flax's: `query` (batch, q_len, heads, head_dim), `key`/`value`
  (batch, kv_len, heads, head_dim), `mask` broadcastable to (batch, heads,
  q_len, kv_len), True = attend. `implementation`: None lets JAX choose
  (cuDNN where it supports the shapes and dtype, else XLA), or 'xla' /
  'cudnn'. When the module asks for its attention
  weights (`sow_weights=True`, which passes `module`), Flax's own
  `nn.dot_product_attention` runs instead, since it materialises and sows
  them.
  """
  if module is not None:
    return nn.dot_product_attention(
      query,
      key,
      value,
      bias=bias,
      mask=mask,
      dropout_rate=dropout_rate,
      deterministic=deterministic,
      module=module,
      **kwargs,
    )
  if dropout_rate > 0 and not deterministic:
    raise NotImplementedError(
      "Attention-weight dropout is not supported by "
      "jax.nn.dot_product_attention; use dropout on the attention output."
    )
  if mask is not None:
    mask = mask.astype(bool)  # Flax's masks may be float (make_causal_mask).
  return jax.nn.dot_product_attention(
    query, key, value, bias=bias, mask=mask, implementation=implementation
  )


class MlpBlock(nn.Module):
  """Two-layer GELU MLP: `(..., d) -> (..., mlp_dim) -> (..., d)`.

  `gelu_approximate`: Flax's default tanh approximation of GELU (True), or
  the exact erf form (False) that PyTorch/timm use.
  """

  mlp_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32
  gelu_approximate: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    dense = lambda n, name: nn.Dense(
      n,
      dtype=self.dtype,
      kernel_init=nn.initializers.xavier_uniform(),
      bias_init=nn.initializers.normal(1e-6),
      name=name,
    )
    d = x.shape[-1]
    x = nn.gelu(
      dense(self.mlp_dim, "fc1")(x), approximate=self.gelu_approximate
    )
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return dense(d, "fc2")(x)


class EncoderBlock(nn.Module):
  """Pre-LN block: `x + Attn(LN(x))`, then `x + MLP(LN(x))`.

  `x` is `(batch, tokens, d)`; `mask` (None for none) broadcasts to
  `(batch, heads, tokens, tokens)`, True where attention is allowed. All
  three arguments are positional, so that `encoder_block` can mark `train`
  static for `nn.remat`.
  """

  mlp_dim: int
  num_heads: int
  dropout: float = 0.0
  dtype: Any = jnp.float32
  attention_implementation: str | None = None  # See dot_product_attention.
  gelu_approximate: bool = True  # See MlpBlock.

  @nn.compact
  def __call__(
    self, x: jnp.ndarray, mask: jnp.ndarray | None, train: bool
  ) -> jnp.ndarray:
    y = nn.LayerNorm(dtype=self.dtype, name="norm1")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dtype=self.dtype,
      kernel_init=nn.initializers.xavier_uniform(),
      attention_fn=functools.partial(
        dot_product_attention, implementation=self.attention_implementation
      ),
      deterministic=not train,
      name="attention",
    )(y, y, mask=mask)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
    y = nn.LayerNorm(dtype=self.dtype, name="norm2")(x)
    y = MlpBlock(
      self.mlp_dim,
      self.dropout,
      self.dtype,
      gelu_approximate=self.gelu_approximate,
      name="mlp",
    )(y, train=train)
    return x + nn.Dropout(self.dropout, deterministic=not train)(y)


# `jax.checkpoint_policies` a block can be rematerialised with, least memory
# first: `nothing_saveable` keeps only each block's input and recomputes the
# rest in the backward pass; the `dots_*` policies keep matmul outputs.
REMAT_POLICIES = (
  "nothing_saveable",
  "dots_with_no_batch_dims_saveable",
  "dots_saveable",
)


def encoder_block(remat: str = "") -> type[EncoderBlock]:
  """`EncoderBlock`, or (`remat`: a name in `REMAT_POLICIES`) the block under
  `nn.remat` with that policy: activations the policy does not save are
  recomputed in the backward pass, trading compute for memory. Params and
  outputs are the same either way."""
  if not remat:
    return EncoderBlock
  if remat not in REMAT_POLICIES:
    raise ValueError(
      f"Unknown remat policy {remat!r}; use '' (off) or one of "
      f"{REMAT_POLICIES}."
    )
  policy = getattr(jax.checkpoint_policies, remat)
  # Arguments are (self, x, mask, train): `train` is a Python bool.
  return nn.remat(EncoderBlock, policy=policy, static_argnums=(3,))
