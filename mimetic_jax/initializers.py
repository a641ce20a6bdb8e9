"""`mimetic_init`: mimetic Flax kernel initializers for one attention layer.

All four roles (query, key, value, out) built from one shared key are
coupled: they are the kernels `mimetic.attention_kernels` gives for that key.
Given to Flax's stock attention modules, which share one `kernel_init`
between query, key and value, they raise (`attention.py` has drop-in modules
for those).
"""

from collections.abc import Callable
import math
import sys

from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp

from mimetic_jax.mimetic import (
  PAPER_QK,
  PAPER_VO,
  ROLES,
  Distribution,
  Method,
  Role,
  Strength,
  attention_kernels,
)


def mimetic_init(
  key: jax.Array,
  role: Role,
  num_heads: int,
  *,
  qk: Strength = PAPER_QK,
  vo: Strength = PAPER_VO,
  distribution: Distribution = "normal",
  method: Method = "exact",
  fallback: Callable | None = None,
) -> Callable:
  """A Flax kernel initializer for one role of a mimetic attention layer.

  Flax gives every parameter its own key, so coupled factors need a key they
  share: build the four initializers of one layer from the *same* `key` (for
  instance `self.make_rng('params')` inside the layer's `@nn.compact` method
  while initializing) and the kernels they produce are exactly those of
  `attention_kernels(key, ...)` (and of `mimetic_params` for that block key).
  The returned function ignores the key Flax passes it.

  Args:
    key: the key shared by the four roles of one layer.
    role: 'query', 'key', 'value' or 'out'.
    num_heads: number of heads. `nn.DenseGeneral` hands its initializer a
      flattened 2-D shape (`(d, heads * head_dim)`, or `(heads * head_dim, d)`
      for 'out'), so the head split must be given; 3-D shapes
      (`(d, heads, head_dim)` / `(heads, head_dim, d)`) must agree with it.
    qk, vo, distribution, method: as in `mimetic_params`. A role whose pair
      is `None` uses `fallback` (default `nn.initializers.lecun_normal()`).

  Returns:
    `init(unused_key, shape, dtype) -> kernel` for `kernel_init=`.
  """
  if role not in ROLES:
    raise ValueError(f"role must be one of {ROLES}; got {role!r}.")
  pair = qk if role in ("query", "key") else vo
  if pair is None:
    return fallback if fallback is not None else nn.initializers.lecun_normal()

  def init(unused_key, shape, dtype=jnp.float32):
    stock = _stock_attention_being_built()
    if stock is not None:
      raise ValueError(
        f"mimetic_init(key, {role!r}, ...) was given to {stock}, which "
        "passes one kernel_init to query, key and value and draws the out "
        "kernel independently of the value kernel, so the factors cannot "
        "be coupled: query, key and value would be equal, or W_v W_o would "
        "lack its -I part. Use the drop-in modules "
        "mimetic_jax.MimeticMultiHeadDotProductAttention (Linen) or "
        "mimetic_jax.MimeticMultiHeadAttention (NNX), which take the same "
        "arguments plus qk, vo and distribution; or initialise the stock "
        "module as usual and apply mimetic_params(key, params) (Linen "
        "params, or nnx.state(model, nnx.Param) with nnx.update). "
        "mimetic_init itself is for attention layers that give each "
        "projection its own initializer."
      )
    shape = tuple(shape)
    if role == "out":
      d, width = shape[-1], math.prod(shape[:-1])
    else:
      d, width = shape[0], math.prod(shape[1:])
    if (
      len(shape) not in (2, 3)
      or width % num_heads
      or (len(shape) == 3 and num_heads not in (shape[0], shape[1]))
    ):
      raise ValueError(
        f"mimetic_init({role!r}, num_heads={num_heads}) got a kernel of "
        f"shape {shape}; it needs (d, heads * head_dim) or (d, heads, "
        "head_dim) for query/key/value and (heads * head_dim, d) or (heads, "
        "head_dim, d) for out, with heads == num_heads."
      )
    kernels = attention_kernels(
      key,
      d,
      num_heads,
      width // num_heads,
      qk=qk if role in ("query", "key") else None,
      vo=vo if role in ("value", "out") else None,
      distribution=distribution,
      method=method,
      dtype=dtype,
    )
    return kernels[role].reshape(shape)

  return init


def linen_module_being_initialised() -> nn.Module | None:
  """The Linen module whose method is running (during `init`: the one
  creating a param), or None outside Linen. Flax keeps it on its module
  stack (`flax.linen.module._context`, unchanged from flax 0.6 to 0.12) and
  has no public accessor for it; tests cover the oldest and newest flax."""
  return nn.module._context.module_stack[-1]  # pylint: disable=protected-access


def _stock_attention_being_built() -> str | None:
  """Names the stock Flax attention module whose projection is being
  created right now, if any: a Linen `nn.MultiHeadDotProductAttention` (the
  running module's parent), or an `nnx.MultiHeadAttention` whose constructor
  is on the call stack (also inside `nnx.bridge.to_linen`)."""
  module = linen_module_being_initialised()
  if module is not None and isinstance(
    module.parent, nn.MultiHeadDotProductAttention
  ):
    return f"Linen's {type(module.parent).__name__}"
  # NNX passes no context to initializers; its attention constructor calls
  # them a few frames down (LinearGeneral.__init__ and its wrappers).
  frame = sys._getframe(2)  # pylint: disable=protected-access
  for _ in range(16):
    if frame is None:
      return None
    if frame.f_code is nnx.MultiHeadAttention.__init__.__code__:
      return f"NNX's {type(frame.f_locals['self']).__name__}"
    frame = frame.f_back
  return None
