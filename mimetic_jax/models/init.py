"""The one place where `init='default' | 'mimetic' | 'trunc_normal'` is decided.

* `default`: each model's ordinary initializers (see `layers.py`: Xavier-uniform
  attention and MLP kernels, zero attention biases, LeCun-normal patch
  embedding, zero head).
* `mimetic`: `default`, then `mimetic_params` on every attention block.
* `trunc_normal`: `default`, then every attention and MLP kernel redrawn from a
  truncated normal with std 0.02 (as PyTorch/timm ViTs do).

`init_params(config, model, inputs)` is the trainer's recipe (key, inputs and
strengths from the config); the trainer, `pictures` and the cross-check all
call it, so a fresh init drawn anywhere equals the trainer's step-0 params.
"""

from collections.abc import Sequence
from typing import Any
import zlib

import flax.linen as nn
import jax
import ml_collections

from mimetic_jax import mimetic
from mimetic_jax.errors import UserError

INITS = ("default", "mimetic", "trunc_normal")
Strength = tuple[float, float] | None


def parse_strength(value: Sequence[float | None] | None, name: str) -> Strength:
  """`mimetic.qk` / `mimetic.vo` as `(alpha, beta)`, or None when disabled.

  Accepts None, `()` and `(None,)` (what `--config.mimetic.qk=None` gives)
  as "disabled".
  """
  if value is None or all(v is None for v in value):
    return None
  if len(value) != 2:
    raise UserError(
      f"{name}={value!r} must be a pair (alpha, beta), e.g. "
      f"--config.{name}='(0.7,0.7)', or None to leave that pair untouched."
    )
  return float(value[0]), float(value[1])


def mimetic_strengths(
  config: ml_collections.ConfigDict,
) -> tuple[Strength, Strength]:
  """`(qk, vo)` of `config.mimetic`; raises when both are disabled."""
  qk = parse_strength(config.mimetic.qk, "mimetic.qk")
  vo = parse_strength(config.mimetic.vo, "mimetic.vo")
  if qk is None and vo is None:
    raise UserError(
      "init='mimetic' with mimetic.qk=None and mimetic.vo=None changes "
      "nothing; set one of them, or use --config.init=default."
    )
  return qk, vo


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


def initialize(
  model: nn.Module,
  key: jax.Array,
  inputs: jax.Array,
  *,
  init: str = "default",
  qk: Strength = mimetic.PAPER_QK,
  vo: Strength = mimetic.PAPER_VO,
  distribution: str = "normal",
) -> Any:
  """Returns the model's params for `inputs` under the chosen scheme."""
  if init not in INITS:
    raise UserError(
      f"init={init!r} is not one of {INITS}; set "
      "--config.init=mimetic (or default / trunc_normal)."
    )
  model_key, init_key = jax.random.split(key)
  params = model.init(model_key, inputs)["params"]
  if init == "mimetic":
    params = mimetic.mimetic_params(
      init_key, params, qk=qk, vo=vo, distribution=distribution
    )
  elif init == "trunc_normal":
    params = trunc_normal_params(init_key, params)
  return params


def init_key(seed: int) -> jax.Array:
  """The key the trainer initialises with: `fold_in(key(seed), 0)`."""
  return jax.random.fold_in(jax.random.key(seed), 0)


def init_params(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  inputs: jax.Array,
  *,
  init: str | None = None,
  seed: int | None = None,
) -> Any:
  """The params the trainer starts from for `config` (traceable: wrap it in
  `jax.jit` or `jax.eval_shape`).

  Args:
    config: a trainer config; `config.mimetic` gives the strengths and noise.
    model: `factory.make_model(config, info)`.
    inputs: `factory.dummy_inputs(config, info)`.
    init: None = `config.init`.
    seed: None = `config.seed`.
  """
  init = config.init if init is None else init
  seed = config.seed if seed is None else seed
  kwargs = {}
  if init == "mimetic":
    qk, vo = mimetic_strengths(config)
    kwargs = dict(qk=qk, vo=vo, distribution=config.mimetic.distribution)
  return initialize(model, init_key(seed), inputs, init=init, **kwargs)
