"""Models (`vit`, `lm`), how a config builds one (`factory`), and how it is
initialised (`init`: default, mimetic or trunc_normal)."""

from mimetic_jax.models.init import INITS, initialize, trunc_normal_params
from mimetic_jax.models.lm import TransformerLM
from mimetic_jax.models.vit import ViT, decode_variant

__all__ = [
  "INITS",
  "TransformerLM",
  "ViT",
  "decode_variant",
  "initialize",
  "trunc_normal_params",
]
