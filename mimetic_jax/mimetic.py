"""Mimetic initialization of self-attention (Trockman & Kolter, ICML 2023).

Pre-trained ViTs have, per head, `W_q W_k^T` with a strong positive diagonal
and, per layer, `W_v W_o` with a strong negative diagonal. Mimetic
initialization draws random weights whose products already look like that:

    W_q^h (W_k^h)^T ~= alpha_qk Z + beta_qk I   (per head; rank head_dim)
    W_v W_o          = alpha_vo Z + beta_vo I   (per layer; full rank)

with `Z` i.i.d., zero mean and variance `1/d`, fresh for every head (QK) and
every layer (VO). The factors come from an SVD of the target `A = U S V^T`,
the square roots of the singular values split between them:
`left = U_r S_r^{1/2}`, `right = V_r S_r^{1/2}`, so `left @ right.T` is the best
rank-`r` approximation of `A` (exactly `A` when `r = d`).

`beta` is *signed*: the paper's ViT setting is `qk=(0.7, 0.7)` and
`vo=(0.4, -0.4)`; language models may want other signs or only one pair.

Kernels follow Flax's layout (`nn.MultiHeadDotProductAttention`):
query/key/value kernels are `(d, heads, head_dim)` (in, out) and the output
kernel is `(heads, head_dim, d)`.

Entry points, all pure:
  * `mimetic_factors`: target -> factors for an explicit `Z` (for tests and
    for anyone who wants the raw math).
  * `attention_kernels`: the four coupled kernels of one attention layer.
  * `mimetic_params`: transform a whole Flax params tree or NNX `State` (any
    model built from `nn.MultiHeadDotProductAttention` or
    `nnx.MultiHeadAttention`, stacked layers and boxed params too).
  * `mimetic_init` (in `initializers.py`): Flax initializers (`kernel_init=`)
    for a user's own attention module, built on `attention_kernels`.
"""

from collections.abc import Mapping
import math
from typing import Any, Literal
import zlib

import jax
import jax.numpy as jnp

from mimetic_jax import low_rank

Distribution = Literal["normal", "uniform"]
Strength = tuple[float, float] | None  # (alpha, signed beta); None = untouched.
Role = Literal["query", "key", "value", "out"]
# How the QK factors are computed: `exact` (the best rank-head_dim
# approximation) or `randomized` (a randomized range finder; see
# `low_rank.randomized_top_factors`). VO factors are always exact.
Method = Literal["exact", "randomized"]
METHODS: tuple[Method, ...] = ("exact", "randomized")

ROLES: tuple[Role, ...] = ("query", "key", "value", "out")
PAPER_QK: tuple[float, float] = (0.7, 0.7)
PAPER_VO: tuple[float, float] = (0.4, -0.4)


def sample_z(
  key: jax.Array,
  d: int,
  distribution: Distribution = "normal",
  dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
  """Draws a `(d, d)` matrix with i.i.d. zero-mean entries of variance `1/d`.

  `normal` draws N(0, 1/d); `uniform` draws U(-sqrt(3/d), sqrt(3/d)), which
  has the same variance.
  """
  if distribution == "normal":
    return jax.random.normal(key, (d, d), dtype) / jnp.sqrt(d).astype(dtype)
  if distribution == "uniform":
    bound = jnp.sqrt(3.0 / d).astype(dtype)
    return jax.random.uniform(key, (d, d), dtype, -bound, bound)
  raise ValueError(
    f"Unknown mimetic distribution {distribution!r}; use 'normal' or "
    "'uniform' (both have variance 1/d)."
  )


def mimetic_factors(
  z: jax.Array, *, alpha: float, beta: float, rank: int
) -> tuple[jax.Array, jax.Array]:
  """Factors `alpha * z + beta * I` into two `(d, rank)` matrices by SVD.

  Args:
    z: `(d, d)` noise matrix.
    alpha: scale of the noise.
    beta: signed scale of the identity.
    rank: number of singular triplets kept, `1 <= rank <= d`.

  Returns:
    `(left, right)`, each `(d, rank)`, with `left = U_r S_r^{1/2}` and
    `right = V_r S_r^{1/2}`, so `left @ right.T` is the best rank-`rank`
    approximation of the target (the target itself when `rank == d`).
  """
  d = z.shape[-1]
  if z.shape != (d, d):
    raise ValueError(f"z must be square (d, d); got shape {z.shape}.")
  if not 1 <= rank <= d:
    raise ValueError(f"rank must be in [1, {d}]; got {rank}.")
  target = alpha * z + beta * jnp.eye(d, dtype=z.dtype)
  return low_rank.exact_top_factors(target, rank)


def qk_kernels(
  key: jax.Array,
  d: int,
  heads: int,
  head_dim: int,
  *,
  alpha: float,
  beta: float,
  distribution: Distribution = "normal",
  method: Method = "exact",
  dtype: jnp.dtype = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
  """Query and key kernels, `(d, heads, head_dim)` each.

  Every head gets its own `Z`; `W_q^h (W_k^h)^T` is the best rank-`head_dim`
  approximation of `alpha * Z_h + beta * I` (`method='exact'`), or a
  randomized approximation of it (`'randomized'`, same `Z`).
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r} is not one of {METHODS}.")

  def one_head(head_key):
    z = sample_z(head_key, d, distribution, jnp.float32)
    if method == "exact":
      return mimetic_factors(z, alpha=alpha, beta=beta, rank=head_dim)
    target = alpha * z + beta * jnp.eye(d, dtype=z.dtype)
    sketch_key = jax.random.fold_in(head_key, 1)  # Z keeps the exact draw.
    return low_rank.randomized_top_factors(target, head_dim, sketch_key)

  # lax.map, not vmap: one (d, d) factorization at a time. That bounds
  # memory (an LM of width 2048 has 16 heads per layer) and avoids jaxlib's
  # batched CPU linear algebra, which deadlocks when several host devices
  # run it at once (jaxlib 0.10, --xla_force_host_platform_device_count=8).
  q, k = jax.lax.map(one_head, jax.random.split(key, heads))  # (h, d, hd).
  return (
    q.transpose(1, 0, 2).astype(dtype),
    k.transpose(1, 0, 2).astype(dtype),
  )


def vo_kernels(
  key: jax.Array,
  d: int,
  heads: int,
  head_dim: int,
  *,
  alpha: float,
  beta: float,
  distribution: Distribution = "normal",
  dtype: jnp.dtype = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
  """Value kernel `(d, heads, head_dim)` and out kernel `(heads, head_dim, d)`.

  One `Z` per layer. With `heads * head_dim == d`,
  `W_v.reshape(d, d) @ W_o.reshape(d, d) == alpha * Z + beta * I` exactly (to
  float precision); with `heads * head_dim < d` the product is the best
  rank-`heads * head_dim` approximation of that target.
  """
  z = sample_z(key, d, distribution, jnp.float32)
  v, o = mimetic_factors(z, alpha=alpha, beta=beta, rank=heads * head_dim)
  return (
    v.reshape(d, heads, head_dim).astype(dtype),
    o.T.reshape(heads, head_dim, d).astype(dtype),
  )


def attention_kernels(
  key: jax.Array,
  d: int,
  heads: int,
  head_dim: int,
  *,
  qk: Strength = PAPER_QK,
  vo: Strength = PAPER_VO,
  distribution: Distribution = "normal",
  method: Method = "exact",
  dtype: jnp.dtype = jnp.float32,
) -> dict[Role, jax.Array]:
  """The mimetic kernels of one attention layer, keyed by role.

  `key` is split into independent QK and VO keys; a pair set to `None` is
  left out of the result. Shapes: query/key/value `(d, heads, head_dim)`,
  out `(heads, head_dim, d)`. `method` applies to the QK factors (see
  `qk_kernels`); the VO product is always exact.
  """
  _check_dims(d, heads, head_dim, vo is not None)
  qk_key, vo_key = jax.random.split(key)
  kernels = {}
  if qk is not None:
    kernels["query"], kernels["key"] = qk_kernels(
      qk_key,
      d,
      heads,
      head_dim,
      alpha=qk[0],
      beta=qk[1],
      distribution=distribution,
      method=method,
      dtype=dtype,
    )
  if vo is not None:
    kernels["value"], kernels["out"] = vo_kernels(
      vo_key,
      d,
      heads,
      head_dim,
      alpha=vo[0],
      beta=vo[1],
      distribution=distribution,
      dtype=dtype,
    )
  return kernels


def _check_dims(d: int, heads: int, head_dim: int, with_vo: bool) -> None:
  if head_dim > d:
    raise ValueError(
      f"head_dim={head_dim} exceeds the model width d={d}: a rank-head_dim "
      "factorization of a (d, d) target does not exist. Use "
      "head_dim <= d (usually head_dim = d // heads)."
    )
  if with_vo and heads * head_dim > d:
    raise ValueError(
      f"heads * head_dim = {heads} * {head_dim} = {heads * head_dim} "
      f"exceeds the model width d={d}: W_v W_o has rank at most d, so "
      "mimetic VO factors would leave value channels at exactly zero, "
      "where they would never train. Use heads * head_dim <= d, or pass "
      "vo=None to initialise only the QK pair."
    )


# ----------------------------------------------------------------------------
# Flax params trees.
# ----------------------------------------------------------------------------


def _value(leaf: Any) -> Any:
  """The array of a params leaf: a plain array, a Linen box
  (`nn.Partitioned`, ...) or an NNX variable (`nnx.Param`); each is a pytree
  around exactly one array."""
  (value,) = jax.tree.leaves(leaf)
  return value


def _with_value(leaf: Any, value: jax.Array) -> Any:
  """`leaf` with its array replaced, keeping its box and metadata."""
  return jax.tree.unflatten(jax.tree.structure(leaf), [value])


def _is_attention_block(node: Any) -> bool:
  return isinstance(node, Mapping) and all(
    isinstance(node.get(role), Mapping) and "kernel" in node[role]
    for role in ROLES
  )


def find_attention_blocks(params: Any) -> list[tuple[Any, ...]]:
  """Paths (tuples of mapping keys) of every self-attention block in `params`.

  A block is a mapping with `query`, `key`, `value` and `out` sub-mappings
  that each hold a `kernel`: the naming of `nn.MultiHeadDotProductAttention`
  and `nnx.MultiHeadAttention`.
  """
  return [path for path, _ in _attention_blocks(params)]


def _attention_blocks(params: Any) -> list[tuple[tuple[Any, ...], Mapping]]:
  found = []

  def visit(node, path):
    if _is_attention_block(node):
      found.append((path, node))
    elif isinstance(node, Mapping):
      for name, child in node.items():
        visit(child, path + (name,))

  visit(params, ())
  return found


def _block_key(key: jax.Array, path: tuple[Any, ...]) -> jax.Array:
  """A key for one block, stable under tree order (CRC32 of its path)."""
  return jax.random.fold_in(key, zlib.crc32(_path_name(path).encode()))


def _path_name(path: tuple[Any, ...]) -> str:
  return "/".join(map(str, path))


def _block_dims(
  block: Mapping, path: tuple[Any, ...]
) -> tuple[tuple[int, ...], int, int, int]:
  """Returns (leading_shape, d, heads, head_dim) of a block, or raises."""
  shapes = {role: tuple(_value(block[role]["kernel"]).shape) for role in ROLES}
  where = _path_name(path) or "<root>"
  q = shapes["query"]
  if len(q) < 3:
    raise ValueError(
      f"Attention block '{where}' has a query kernel of shape {q}; mimetic "
      "initialization needs the multi-head layout (..., d, heads, "
      "head_dim) of nn.MultiHeadDotProductAttention. Found kernel shapes: "
      f"{shapes}."
    )
  *lead, d, heads, head_dim = q
  lead = tuple(lead)
  expected = {
    "query": q,
    "key": q,
    "value": q,
    "out": lead + (heads, head_dim, d),
  }
  if shapes != expected:
    raise ValueError(
      f"Attention block '{where}' has kernel shapes {shapes}, but mimetic "
      f"initialization needs self-attention with one width d={d} for "
      f"inputs and outputs: {expected}. Cross-attention with different "
      "key/value widths, or an out projection to another width, has no "
      "identity to imitate; leave such blocks out of the params you pass."
    )
  return lead, d, heads, head_dim


def mimetic_params(
  key: jax.Array,
  params: Any,
  *,
  qk: Strength = PAPER_QK,
  vo: Strength = PAPER_VO,
  distribution: Distribution = "normal",
  method: Method = "exact",
) -> Any:
  """Returns `params` with every self-attention block mimetically initialised.

  Finds each block that uses the naming of `nn.MultiHeadDotProductAttention`
  and `nnx.MultiHeadAttention` (`query`, `key`, `value`, `out`, each with
  `kernel` and optional `bias`) and replaces its kernels by mimetic factors
  and its biases by zeros. Every other leaf is returned unchanged (the same
  object), and every container keeps its type. Works inside `jax.jit`.

  Args:
    key: a `jax.random.key`. Each block's key is `fold_in(key, crc32(path))`,
      so the draw of a block depends only on `key` and its path; blocks with
      leading (`nn.scan`, `nnx.vmap`) axes draw independently per index.
    params: a Linen params tree (plain or boxed with `nn.Partitioned`), or
      an NNX `State` (`nnx.state(model, nnx.Param)`, or the state of
      `nnx.split`); the result has the same structure (`nnx.Param` leaves
      for NNX), ready for `nnx.update(model, ...)` or `nnx.merge`.
    qk: `(alpha, beta)` for `W_q W_k^T ~= alpha Z + beta I` per head, or
      `None` to leave query/key untouched (VO-only ablation).
    vo: `(alpha, beta)` for `W_v W_o = alpha Z + beta I` per layer (beta is
      signed: the paper uses -0.4), or `None` to leave value/out untouched.
    distribution: `normal` (default) or `uniform` noise, both variance 1/d.
    method: `exact` (default): each head's QK product is the best
      rank-`head_dim` approximation of its target; `randomized`: a randomized
      range finder approximates it (same `Z`, a fraction of the cost for wide
      models on a CPU; its error is bounded in tests/test_mimetic.py).

  `heads * head_dim != d`: QK factors are always rank `head_dim` per head;
  VO factors are the best rank-`heads * head_dim` approximation when
  `heads * head_dim < d`, and an error when it exceeds `d`.

  Raises:
    ValueError: when `params` holds no attention block, when both `qk` and
      `vo` are `None`, or when a block's shapes cannot be honoured.
  """
  if qk is None and vo is None:
    raise ValueError(
      "mimetic_params(qk=None, vo=None) would change nothing; "
      "set at least one of the two pairs."
    )
  blocks = _attention_blocks(params)
  if not blocks:
    raise ValueError(
      "mimetic_params found no self-attention block in params. It looks for "
      "mappings with 'query', 'key', 'value' and 'out' entries that each "
      "hold a 'kernel', as flax.linen.MultiHeadDotProductAttention creates "
      "them. Top-level keys found: "
      f"{list(params) if isinstance(params, Mapping) else type(params)}. "
      "Pass the 'params' collection (variables['params']), or use "
      "mimetic_init for attention layers with other names."
    )

  def new_leaves(block, path):
    """{path of a kernel or bias leaf: its replacement} for one block."""
    lead, d, heads, head_dim = _block_dims(block, path)
    dtype = _value(block["query"]["kernel"]).dtype
    init = lambda k: attention_kernels(
      k,
      d,
      heads,
      head_dim,
      qk=qk,
      vo=vo,
      distribution=distribution,
      method=method,
      dtype=dtype,
    )
    block_key = _block_key(key, path)
    if lead:  # Stacked layers (nn.scan, nnx.vmap): one independent draw per
      # index, one layer at a time (lax.map, as in `qk_kernels`).
      keys = jax.random.split(block_key, math.prod(lead))
      kernels = jax.tree.map(
        lambda x: x.reshape(lead + x.shape[1:]), jax.lax.map(init, keys)
      )
    else:
      kernels = init(block_key)
    leaves = {}
    for role, kernel in kernels.items():
      layer = block[role]
      leaves[path + (role, "kernel")] = _with_value(layer["kernel"], kernel)
      if "bias" in layer:
        leaves[path + (role, "bias")] = _with_value(
          layer["bias"], jnp.zeros_like(_value(layer["bias"]))
        )
    return leaves

  replaced = {}
  for path, block in blocks:
    replaced.update(new_leaves(block, path))

  # Swap leaves in a pytree round trip, which keeps every container as it
  # was (dict, FrozenDict, nnx.State and whatever nests inside it).
  leaves, treedef = jax.tree_util.tree_flatten_with_path(
    params, is_leaf=lambda node: not isinstance(node, Mapping)
  )
  paths = [tuple(getattr(k, "key", k) for k in path) for path, _ in leaves]
  missing = replaced.keys() - set(paths)
  if missing:
    raise ValueError(
      "mimetic_params found attention params at "
      f"{sorted(map(_path_name, missing))} but cannot rebuild them: a "
      "container on the way is a Mapping that "
      "JAX does not flatten as a pytree of its items. Convert params to "
      "nested dicts (or a FrozenDict / nnx.State) first."
    )
  return jax.tree.unflatten(
    treedef,
    [replaced.get(path, leaf) for path, (_, leaf) in zip(paths, leaves)],
  )
