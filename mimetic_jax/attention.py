"""Drop-in mimetic self-attention modules for Flax Linen and Flax NNX.

    from mimetic_jax import MimeticMultiHeadDotProductAttention  # Linen
    from mimetic_jax import MimeticMultiHeadAttention            # NNX

Each takes the constructor of the Flax module it replaces
(`nn.MultiHeadDotProductAttention`, `nnx.MultiHeadAttention`) plus `qk`, `vo`
and `distribution` (as in `mimetic_params`), creates the same params with the
same names and shapes, and initialises query/key/value/out as one coupled
mimetic layer (biases zero) from a single key drawn from the `params` stream.
Roles whose pair is `None` keep Flax's initializer.

Why modules: the stock Flax modules pass one `kernel_init` to query, key and
value, so no single initializer can give each projection its own factor
(`mimetic_init` refuses to be used that way).
"""

from collections.abc import Iterator
import contextlib
import contextvars

from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp

from mimetic_jax import initializers, mimetic

# The kernels of the Linen layer being initialised, keyed by role; set only
# while `MimeticMultiHeadDotProductAttention.__call__` initialises.
_LAYER_KERNELS: contextvars.ContextVar[dict[str, jax.Array]] = (
  contextvars.ContextVar("mimetic_layer_kernels")
)


@contextlib.contextmanager
def _layer_kernels(kernels: dict[str, jax.Array]) -> Iterator[None]:
  token = _LAYER_KERNELS.set(kernels)
  try:
    yield
  finally:
    _LAYER_KERNELS.reset(token)


def _layer_kernel(rng, shape, dtype=jnp.float32):
  """`kernel_init` of `MimeticMultiHeadDotProductAttention`: the kernel of
  the projection being created (its module name is the role), or Flax's
  default initializer for a role whose pair is disabled and outside `init`
  (where Flax evaluates initializers abstractly to check param shapes)."""
  role = initializers.linen_module_being_initialised().name
  kernels = _LAYER_KERNELS.get({})
  if role not in kernels:
    return nn.linear.default_kernel_init(rng, shape, dtype)
  return kernels[role].reshape(shape).astype(dtype)


class MimeticMultiHeadDotProductAttention(nn.MultiHeadDotProductAttention):
  """`nn.MultiHeadDotProductAttention` with mimetic init of its four kernels.

  Self-attention only: `inputs_q`, `inputs_k` and `inputs_v` have one width
  `d`, and `qkv_features`/`out_features` are unset or `d`. Params are those
  of the stock module (query/key/value kernels `(d, heads, head_dim)`, out
  kernel `(heads, head_dim, d)`), so checkpoints and `mimetic_params` treat
  both alike. The kernels come from `attention_kernels(key, ...)` with `key`
  drawn once per layer from the `params` stream; `kernel_init` and
  `out_kernel_init` are set by this class and cannot be given (a pair set to
  `None` keeps Flax's default initializer).
  """

  qk: mimetic.Strength = mimetic.PAPER_QK
  vo: mimetic.Strength = mimetic.PAPER_VO
  distribution: mimetic.Distribution = "normal"
  kernel_init: nn.initializers.Initializer = _layer_kernel
  out_kernel_init: nn.initializers.Initializer | None = _layer_kernel

  @nn.compact
  def __call__(self, inputs_q, inputs_k=None, inputs_v=None, **kwargs):
    creates_params = self.is_mutable_collection(
      "params"
    ) and "query" not in self.variables.get("params", {})
    if not creates_params:  # Also lazy init inside `apply(mutable=True)`.
      return super().__call__(inputs_q, inputs_k, inputs_v, **kwargs)
    if self.kernel_init is not _layer_kernel or self.out_kernel_init not in (
      None,
      _layer_kernel,
    ):
      raise ValueError(
        "MimeticMultiHeadDotProductAttention sets its kernels itself, so it "
        "takes no kernel_init or out_kernel_init. To leave the query/key or "
        "value/out pair at Flax's default initializer, pass qk=None or "
        "vo=None; for another initializer altogether, use "
        "nn.MultiHeadDotProductAttention."
      )
    d = inputs_q.shape[-1]
    widths = {"inputs_k": inputs_k, "inputs_v": inputs_v}
    widths = {name: x.shape[-1] for name, x in widths.items() if x is not None}
    widths.update(
      qkv_features=self.qkv_features or d, out_features=self.out_features or d
    )
    if any(width != d for width in widths.values()):
      raise ValueError(
        f"MimeticMultiHeadDotProductAttention is self-attention of one width "
        f"d={d} (the width of inputs_q), but got {widths}. W_q W_k^T and "
        "W_v W_o imitate identities, which need square d x d products; use "
        "nn.MultiHeadDotProductAttention for cross-attention or other "
        "widths."
      )
    if d % self.num_heads:
      raise ValueError(
        f"num_heads={self.num_heads} does not divide the width d={d}."
      )
    kernels = mimetic.attention_kernels(
      self.make_rng("params"),
      d,
      self.num_heads,
      d // self.num_heads,
      qk=self.qk,
      vo=self.vo,
      distribution=self.distribution,
      dtype=self.param_dtype,
    )
    with _layer_kernels(kernels):
      return super().__call__(inputs_q, inputs_k, inputs_v, **kwargs)


class MimeticMultiHeadAttention(nnx.MultiHeadAttention):
  """`nnx.MultiHeadAttention` with mimetic init of its four kernels.

  Takes `nnx.MultiHeadAttention`'s arguments plus `qk`, `vo`, `distribution`.
  The stock module is built first (its `kernel_init` initialises roles whose
  pair is `None`), then one key from `rngs.params()` replaces the
  query/key/value/out kernels by mimetic factors and their biases by zeros,
  exactly as `mimetic_params(key, nnx.state(module, nnx.Param))` does.
  Self-attention only: `in_features`, `in_kv_features`, `qkv_features` and
  `out_features` must agree (a `ValueError` says which do not).
  """

  def __init__(
    self,
    *args,
    qk: mimetic.Strength = mimetic.PAPER_QK,
    vo: mimetic.Strength = mimetic.PAPER_VO,
    distribution: mimetic.Distribution = "normal",
    rngs: nnx.Rngs,
    **kwargs,
  ):
    given = [
      name
      for name in ("kernel_init", "out_kernel_init")
      if kwargs.get(name) is not None
    ]
    if given and qk is not None and vo is not None:
      raise ValueError(
        f"MimeticMultiHeadAttention got {' and '.join(given)}, but with "
        "both qk and vo set every attention kernel is mimetic, so it would "
        "be unused. Pass it only with qk=None or vo=None (it then "
        "initialises that pair), or use nnx.MultiHeadAttention."
      )
    super().__init__(*args, rngs=rngs, **kwargs)
    widths = {
      name: getattr(self, name)
      for name in ("in_kv_features", "qkv_features", "out_features")
      if hasattr(self, name)
    }
    if any(width != self.in_features for width in widths.values()):
      raise ValueError(
        "MimeticMultiHeadAttention is self-attention of one width "
        f"in_features={self.in_features}, but got {widths}. W_q W_k^T and "
        "W_v W_o imitate identities, which need square products; use "
        "nnx.MultiHeadAttention for cross-attention or other widths."
      )
    params = nnx.state(self, nnx.Param)
    nnx.update(
      self,
      mimetic.mimetic_params(
        rngs.params(), params, qk=qk, vo=vo, distribution=distribution
      ),
    )
