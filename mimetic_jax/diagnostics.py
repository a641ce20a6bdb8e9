"""The attention structure mimetic init imitates, measured on any params tree.

Per attention layer: the per-head products `W_q^h (W_k^h)^T` and the layer's
`W_v W_o`, and summary numbers of them (mean diagonal entry and mean absolute
off-diagonal entry), so a user can watch the structure evolve during training
(the trainer logs `attention_summary` at every evaluation) or draw it
(`pictures`, whose summary.json holds the same `layer_stats`).

Blocks are found by `mimetic.find_attention_blocks` (the naming of
`nn.MultiHeadDotProductAttention`). Kernels follow Flax's layout: query, key
and value `(..., d, heads, head_dim)`, out `(..., heads, head_dim, d)`, where
`...` are leading axes stacked by `nn.scan` (one index per layer; empty for
ordinary layers). Boxed params (`nn.Partitioned`, ...) are unboxed.

Layer names: the block's path joined by '/' (`encoderblock_0/attention`),
with the index along the stacked axes appended for scanned layers
(`stack/attn/0`, `stack/attn/1`, ...). Layers are ordered by path with numbers
compared as numbers, so `block_10` follows `block_9` even when a restored
checkpoint has sorted its keys alphabetically.
"""

from collections.abc import Iterable, Iterator, Mapping
import itertools
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mimetic_jax import mimetic

STAT_NAMES = ("qk_diag", "qk_offdiag", "vo_diag", "vo_offdiag")


def _get(tree, path):
  for name in path:
    tree = tree[name]
  return tree


def layer_sort_key(name: str) -> tuple:
  """Sort key for layer names comparing digit runs as numbers: `b_2` <
  `b_10`."""
  return tuple(
    (0, int(part), "") if part.isdigit() else (1, 0, part)
    for part in re.split(r"(\d+)", name)
    if part
  )


def _kernel(block, role: str) -> jax.Array:
  return nn.meta.unbox(block[role]["kernel"])


@jax.jit
def _products(q, k, v, o) -> tuple[jax.Array, jax.Array]:
  qk = jnp.einsum("...dhk,...ehk->...hde", q, k)
  vo = jnp.einsum("...dhk,...hke->...de", v, o)
  return qk, vo


def block_products(block: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
  """`(qk, vo)` of one attention block, stacked or not, boxed or not.

  Args:
    block: a mapping with `query`, `key`, `value` and `out`, each holding a
      `kernel` (plain array or boxed).

  Returns:
    `qk`: `(..., heads, d, d)`, `qk[..., h, :, :] = W_q^h (W_k^h)^T` with
      `W_q^h = query_kernel[..., :, h, :]` (`(d, head_dim)`).
    `vo`: `(..., d, d)`, `W_v W_o` with `W_v` the value kernel reshaped to
      `(d, heads * head_dim)` and `W_o` the out kernel reshaped to
      `(heads * head_dim, d)`.
    `...` are the block's leading (scan) axes. Computed in float32.
  """
  q, k, v, o = (
    _kernel(block, role).astype(jnp.float32) for role in mimetic.ROLES
  )
  return _products(q, k, v, o)


def _layers(params) -> Iterator[tuple[str, Any, tuple[int, ...]]]:
  """`(name, block, index)` per layer, in natural order of names."""
  layers = []
  for path in mimetic.find_attention_blocks(params):
    block = _get(params, path)
    name = "/".join(map(str, path))
    lead = _kernel(block, "query").shape[:-3]
    for index in itertools.product(*(range(n) for n in lead)):
      layers.append(("/".join((name,) + tuple(map(str, index))), block, index))
  return iter(sorted(layers, key=lambda layer: layer_sort_key(layer[0])))


def _layer_block(block, index: tuple[int, ...]):
  """One layer's kernels (leading `index` applied), unboxed."""
  return {
    role: {"kernel": _kernel(block, role)[index]} for role in mimetic.ROLES
  }


def attention_products(params: Any) -> dict[str, dict[str, jax.Array]]:
  """Per attention layer, `{'qk': (heads, d, d), 'vo': (d, d)}` in float32.

  Args:
    params: a Flax params tree (the `params` collection), plain or boxed,
      with ordinary or `nn.scan`-stacked attention blocks.

  Returns:
    An ordered dict from layer name (see the module docstring) to that
    layer's products: `qk[h] = W_q^h (W_k^h)^T` and `vo = W_v W_o`. Empty
    when `params` holds no attention block.
  """
  products = {}
  for name, block, index in _layers(params):
    qk, vo = block_products(_layer_block(block, index))
    products[name] = {"qk": qk, "vo": vo}
  return products


@jax.jit
def _diag_and_off(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean diagonal entry and mean |off-diagonal| entry of `(..., d, d)`,
  averaged over the leading axes (heads)."""
  d = matrix.shape[-1]
  diagonal = jnp.diagonal(matrix, axis1=-2, axis2=-1)
  off = (jnp.abs(matrix).sum((-2, -1)) - jnp.abs(diagonal).sum(-1)).mean()
  return diagonal.mean(), off / max(d * d - d, 1)


def matrix_stats(matrix: jax.Array) -> tuple[float, float]:
  """`(mean diagonal, mean |off-diagonal|)` of `(..., d, d)` matrices,
  averaged over the leading axes."""
  diag, off = _diag_and_off(jnp.asarray(matrix, jnp.float32))
  return float(diag), float(off)


def layer_stats(qk: jax.Array, vo: jax.Array) -> dict[str, float]:
  """`{stat: value}` for `stat` in `STAT_NAMES`, of one layer's products.

  Args:
    qk: `(heads, d, d)` per-head `W_q^h (W_k^h)^T`; averaged over heads.
    vo: `(d, d)` `W_v W_o`.
  """
  stats = {}
  for label, matrix in (("qk", qk), ("vo", vo)):
    stats[f"{label}_diag"], stats[f"{label}_offdiag"] = matrix_stats(matrix)
  return stats


def mean_over_layers(
  per_layer: Iterable[Mapping[str, float]],
) -> dict[str, float]:
  """`{stat: mean over layers}` for `stat` in `STAT_NAMES`, from
  `layer_stats` of every layer; empty without layers."""
  per_layer = list(per_layer)
  if not per_layer:
    return {}
  return {
    stat: sum(layer[stat] for layer in per_layer) / len(per_layer)
    for stat in STAT_NAMES
  }


def _stats_per_layer(params) -> dict[str, dict[str, float]]:
  """Layer name -> `layer_stats`, computing one layer's products at a time
  (memory stays at one layer's products)."""
  return {
    name: layer_stats(*block_products(_layer_block(block, index)))
    for name, block, index in _layers(params)
  }


def _flatten(per_layer: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
  return {
    f"{name}/{stat}": value
    for name, stats in per_layer.items()
    for stat, value in stats.items()
  }


def attention_stats(params: Any) -> dict[str, float]:
  """`{'<layer>/qk_diag', '<layer>/qk_offdiag', '<layer>/vo_diag',
  '<layer>/vo_offdiag'}` for every attention layer of `params`.

  QK numbers are averaged over heads (see `layer_stats`).
  """
  return _flatten(_stats_per_layer(params))


def attention_summary(params: Any) -> dict[str, float]:
  """`attention_stats` plus their means over layers (`attn_qk_diag`,
  `attn_qk_offdiag`, `attn_vo_diag`, `attn_vo_offdiag`)."""
  per_layer = _stats_per_layer(params)
  means = mean_over_layers(per_layer.values())
  return {
    **_flatten(per_layer),
    **{f"attn_{stat}": value for stat, value in means.items()},
  }
