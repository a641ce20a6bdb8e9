"""Models from a config and a dataset description (never from loaded arrays).

`make_model(config, info)` builds the ViT (`task='image'`) or the causal LM
(`task='lm'`); `dummy_inputs(config, info)` is one zero example of what it
takes.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mimetic_jax.data import DatasetInfo
from mimetic_jax.errors import UserError
from mimetic_jax.models import layers
from mimetic_jax.models.lm import TransformerLM
from mimetic_jax.models.vit import ViT, decode_variant

TASKS = ("image", "lm")


def _dtype(name: str) -> jnp.dtype:
  if name not in ("float32", "bfloat16"):
    raise UserError(
      f"model.dtype={name!r} must be 'float32' or 'bfloat16' "
      "(the compute dtype; params stay float32)."
    )
  return jnp.dtype(name)


def remat_policy(model_config: ml_collections.ConfigDict) -> str:
  """`model.remat`: '' (off) or a `layers.REMAT_POLICIES` name."""
  remat = model_config.get("remat", "")  # Absent in older workdirs' configs.
  if remat and remat not in layers.REMAT_POLICIES:
    raise UserError(
      f"model.remat={remat!r} is not a rematerialisation policy: use '' "
      f"(off, fastest) or one of {layers.REMAT_POLICIES} (least memory "
      "first), e.g. --config.model.remat=nothing_saveable when the batch "
      "does not fit in memory."
    )
  return remat


def vit_architecture(model_config: ml_collections.ConfigDict) -> dict:
  """`width, depth, mlp_dim, num_heads, patch_size` of `config.model`: from
  `variant` (e.g. 'Ti/2') when set, else from the explicit keys."""
  m = model_config
  if m.variant:
    try:
      return decode_variant(m.variant)
    except ValueError as e:
      raise UserError(f"model.variant={m.variant!r}: {e}") from None
  return dict(
    width=m.width,
    depth=m.depth,
    mlp_dim=m.mlp_dim,
    num_heads=m.num_heads,
    patch_size=m.patch_size,
  )


def make_model(
  config: ml_collections.ConfigDict, info: DatasetInfo
) -> nn.Module:
  """The model `config` describes, with `info.num_classes` outputs (image)
  or `info.vocab_size` tokens (LM)."""
  m = config.model
  if config.task == "image":
    return ViT(
      num_classes=info.num_classes,
      pool=m.pool,
      posemb=m.posemb,
      dropout=m.dropout,
      gelu_approximate=m.gelu_approximate,
      dtype=_dtype(m.dtype),
      attention_implementation=(None if m.attention == "auto" else m.attention),
      remat=remat_policy(m),
      **vit_architecture(m),
    )
  if config.task == "lm":
    return TransformerLM(
      vocab_size=info.vocab_size,
      width=m.width,
      depth=m.depth,
      num_heads=m.num_heads,
      mlp_dim=m.mlp_dim,
      max_len=config.seq_len,
      posemb=m.posemb,
      tie_embeddings=m.tie_embeddings,
      dropout=m.dropout,
      dtype=_dtype(m.dtype),
      remat=remat_policy(m),
    )
  raise UserError(f"task={config.task!r} is not one of {TASKS}.")


def dummy_inputs(
  config: ml_collections.ConfigDict, info: DatasetInfo
) -> jax.Array:
  """One zero example: an image `(1, S, S, info.image_channels)` float32 with
  `S = dataset.image_size`, or a token window `(1, seq_len)` int32."""
  if config.task == "image":
    size = config.dataset.image_size
    return jnp.zeros((1, size, size, info.image_channels), jnp.float32)
  return jnp.zeros((1, config.seq_len), jnp.int32)
