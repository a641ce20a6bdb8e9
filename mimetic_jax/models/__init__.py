"""Models and their initialization schemes.

`initialize` is the one place where `init='default' | 'mimetic' |
'trunc_normal'` is decided:

* `default`: each model's ordinary initializers (see `layers.py`: Xavier-uniform
  attention and MLP kernels, zero attention biases, LeCun-normal patch
  embedding, zero head).
* `mimetic`: `default`, then `mimetic_params` on every attention block.
* `trunc_normal`: `default`, then every attention and MLP kernel redrawn from a
  truncated normal with std 0.02 (as PyTorch/timm ViTs do).
"""

import zlib
from typing import Any

import flax.linen as nn
import jax

from mimetic_jax import mimetic
from mimetic_jax.models.lm import TransformerLM
from mimetic_jax.models.vit import ViT, decode_variant

INITS = ("default", "mimetic", "trunc_normal")


def trunc_normal_params(key: jax.Array, params: Any, std: float = 0.02) -> Any:
  """Redraws every `kernel` inside an `attention` or `mlp` module."""
  init = nn.initializers.truncated_normal(std)

  def redraw(path, leaf):
    names = [getattr(p, "key", str(p)) for p in path]
    if names[-1] != "kernel" or not {"attention", "mlp"} & set(names):
      return leaf
    leaf_key = jax.random.fold_in(key, zlib.crc32("/".join(names).encode()))
    return init(leaf_key, leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(redraw, params)


def initialize(model: nn.Module, key: jax.Array, inputs: jax.Array, *,
               init: str = "default", qk=mimetic.PAPER_QK,
               vo=mimetic.PAPER_VO, distribution: str = "normal") -> Any:
  """Returns the model's params for `inputs` under the chosen scheme."""
  if init not in INITS:
    raise ValueError(f"Unknown init {init!r}; use one of {INITS}.")
  model_key, init_key = jax.random.split(key)
  params = model.init(model_key, inputs)["params"]
  if init == "mimetic":
    params = mimetic.mimetic_params(init_key, params, qk=qk, vo=vo,
                                    distribution=distribution)
  elif init == "trunc_normal":
    params = trunc_normal_params(init_key, params)
  return params


__all__ = ["INITS", "TransformerLM", "ViT", "decode_variant", "initialize",
           "trunc_normal_params"]
