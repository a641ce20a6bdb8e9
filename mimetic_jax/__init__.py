"""mimetic-jax: mimetic initialization of self-attention layers in JAX/Flax.

from mimetic_jax import mimetic_params, mimetic_init
from mimetic_jax import MimeticMultiHeadDotProductAttention  # Linen
from mimetic_jax import MimeticMultiHeadAttention            # NNX
"""

from mimetic_jax.attention import (
  MimeticMultiHeadAttention,
  MimeticMultiHeadDotProductAttention,
)
from mimetic_jax.initializers import mimetic_init
from mimetic_jax.mimetic import (
  attention_kernels,
  mimetic_factors,
  mimetic_params,
)

__all__ = [
  "MimeticMultiHeadAttention",
  "MimeticMultiHeadDotProductAttention",
  "attention_kernels",
  "mimetic_factors",
  "mimetic_init",
  "mimetic_params",
]
__version__ = "0.1.0"
