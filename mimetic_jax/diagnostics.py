"""Summary numbers of the attention structure mimetic init imitates.

Per attention block: the mean diagonal of `W_q^h (W_k^h)^T` (averaged over
heads) and of `W_v W_o`, and the mean absolute off-diagonal entry of each,
so a user can watch the structure evolve during training.
"""

import jax
import jax.numpy as jnp

from mimetic_jax import mimetic


def _get(tree, path):
  for name in path:
    tree = tree[name]
  return tree


def block_products(block) -> tuple[jax.Array, jax.Array]:
  """`(qk, vo)`: `(heads, d, d)` per-head `W_q^h W_k^hT` and `(d, d)` `W_v W_o`
  for one unstacked attention block."""
  q, k = block["query"]["kernel"], block["key"]["kernel"]
  v, o = block["value"]["kernel"], block["out"]["kernel"]
  qk = jnp.einsum("dhk,ehk->hde", q, k)
  vo = jnp.einsum("dhk,hke->de", v, o)
  return qk, vo


def _diag_and_off(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  d = matrix.shape[-1]
  diag = jnp.diagonal(matrix, axis1=-2, axis2=-1).mean()
  off = (jnp.abs(matrix).sum((-2, -1)) - jnp.abs(
      jnp.diagonal(matrix, axis1=-2, axis2=-1)).sum(-1)).mean() / (d * d - d)
  return diag, off


def attention_stats(params) -> dict[str, float]:
  """`{'<block path>/qk_diag': ..., '/qk_offdiag', '/vo_diag', '/vo_offdiag'}`
  for every (unstacked) attention block in `params`."""
  stats = {}
  for path in mimetic.find_attention_blocks(params):
    qk, vo = block_products(_get(params, path))
    name = "/".join(path)
    for label, matrix in (("qk", qk), ("vo", vo)):
      diag, off = _diag_and_off(matrix)
      stats[f"{name}/{label}_diag"] = float(diag)
      stats[f"{name}/{label}_offdiag"] = float(off)
  return stats


def attention_summary(params) -> dict[str, float]:
  """Per-layer stats plus their means over layers (`attn_qk_diag`, ...)."""
  stats = attention_stats(params)
  summary = dict(stats)
  for suffix in ("qk_diag", "qk_offdiag", "vo_diag", "vo_offdiag"):
    values = [v for k, v in stats.items() if k.endswith("/" + suffix)]
    if values:
      summary[f"attn_{suffix}"] = sum(values) / len(values)
  return summary
