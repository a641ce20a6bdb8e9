"""Every way into mimetic init from Flax Linen and Flax NNX, and the misuse
that must fail loudly: stock attention modules given `mimetic_init` (one
`kernel_init` serves query, key and value there).

The statistics are those of tests/test_mimetic.py: every head's
`W_q^h W_k^hT` has rank exactly `head_dim` (diagonal near 0.40 for 0.7/0.7
at these shapes), `W_v W_o` has diagonal near `beta_vo`, biases are zero.
README's Python examples are run here too.
"""

import pathlib
import re

from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimetic_jax import (
  MimeticMultiHeadAttention,
  MimeticMultiHeadDotProductAttention,
  mimetic,
  mimetic_init,
  mimetic_params,
)

D, HEADS = 48, 3
HEAD_DIM = D // HEADS
X = jnp.ones((2, 5, D))


def arrays(tree):
  """Plain arrays of a Linen params dict or an NNX State."""
  return jax.tree.map(
    np.asarray, nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree
  )


def vo_product(block):
  """W_v W_o of one layer, (D, D), in float32."""
  return block["value"]["kernel"].astype(np.float32).reshape(D, D) @ block[
    "out"
  ]["kernel"].astype(np.float32).reshape(D, D)


def assert_mimetic(block, vo_beta=-0.4):
  q, k = block["query"]["kernel"], block["key"]["kernel"]
  assert q.shape == k.shape == (D, HEADS, HEAD_DIM)
  for h in range(HEADS):
    product = q[:, h] @ k[:, h].T
    assert np.linalg.matrix_rank(product, tol=1e-4) == HEAD_DIM
    assert 0.3 < np.diag(product).mean() < 0.5
  vo = vo_product(block)
  np.testing.assert_allclose(np.diag(vo).mean(), vo_beta, atol=0.08)
  for role in mimetic.ROLES:
    np.testing.assert_array_equal(block[role]["bias"], 0.0)


def assert_not_mimetic_qk(block):
  q, k = block["query"]["kernel"], block["key"]["kernel"]
  assert abs(np.diag(q[:, 0] @ k[:, 0].T).mean()) < 0.15


# ----------------------------------------------------------------------------
# Misuse: stock modules with mimetic_init as their kernel_init.
# ----------------------------------------------------------------------------


def test_stock_linen_attention_with_mimetic_init_raises():
  key = jax.random.key(0)
  stock = nn.MultiHeadDotProductAttention(
    num_heads=HEADS,
    kernel_init=mimetic_init(key, "query", HEADS),
    out_kernel_init=mimetic_init(key, "out", HEADS),
  )
  with pytest.raises(
    ValueError,
    match=r"given to Linen's MultiHeadDot"
    r"(.|\n)*MimeticMultiHeadDotProductAttention",
  ):
    stock.init(jax.random.key(1), X)


@pytest.mark.parametrize(
  "kwargs",
  [
    {"kernel_init": "out"},  # One initializer for all four.
    {"out_kernel_init": "out"},  # Out alone: not coupled to the value kernel.
  ],
)
def test_stock_linen_attention_with_any_mimetic_initializer_raises(kwargs):
  kwargs = {
    name: mimetic_init(jax.random.key(0), role, HEADS)
    for name, role in kwargs.items()
  }
  stock = nn.MultiHeadDotProductAttention(num_heads=HEADS, **kwargs)
  with pytest.raises(ValueError, match="given to Linen's"):
    stock.init(jax.random.key(1), X)


@pytest.mark.parametrize(
  "kwargs",
  [
    {"kernel_init": "query", "out_kernel_init": "out"},
    {"out_kernel_init": "out"},
  ],
)
def test_stock_nnx_attention_with_mimetic_init_raises(kwargs):
  kwargs = {
    name: mimetic_init(jax.random.key(0), role, HEADS)
    for name, role in kwargs.items()
  }
  with pytest.raises(
    ValueError,
    match=r"given to NNX's MultiHeadAttention"
    r"(.|\n)*MimeticMultiHeadAttention",
  ):
    nnx.MultiHeadAttention(
      num_heads=HEADS, in_features=D, decode=False, rngs=nnx.Rngs(0), **kwargs
    )


def test_stock_nnx_attention_inside_the_linen_bridge_raises():
  key = jax.random.key(0)
  bridged = nnx.bridge.to_linen(
    nnx.MultiHeadAttention,
    num_heads=HEADS,
    in_features=D,
    decode=False,
    kernel_init=mimetic_init(key, "query", HEADS),
    out_kernel_init=mimetic_init(key, "out", HEADS),
  )
  with pytest.raises(ValueError, match="given to NNX's MultiHeadAttention"):
    bridged.init(jax.random.key(1), X)


def test_mimetic_init_in_a_module_that_names_its_roles_is_accepted():
  # The guard only compares names: a user's layer whose projections are
  # called query/key/value/out, each with its own role, initialises.
  key = jax.random.key(3)

  class Projections(nn.Module):
    @nn.compact
    def __call__(self, x):
      return [
        nn.DenseGeneral(
          (HEADS, HEAD_DIM),
          name=role,
          kernel_init=mimetic_init(key, role, HEADS),
        )(x)
        for role in ("query", "key", "value")
      ]

  params = Projections().init(jax.random.key(0), X)["params"]
  expected = mimetic.attention_kernels(key, D, HEADS, HEAD_DIM)
  for role in ("query", "key", "value"):
    np.testing.assert_array_equal(params[role]["kernel"], expected[role])


# ----------------------------------------------------------------------------
# Linen drop-in module.
# ----------------------------------------------------------------------------


def test_linen_drop_in_has_the_stock_params_and_mimetic_values():
  model = MimeticMultiHeadDotProductAttention(num_heads=HEADS)
  params = model.init(jax.random.key(0), X)["params"]
  stock = nn.MultiHeadDotProductAttention(num_heads=HEADS).init(
    jax.random.key(0), X
  )["params"]
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, stock)
  assert_mimetic(arrays(params))
  # The same forward pass as the stock module on the same params.
  np.testing.assert_allclose(
    model.apply({"params": params}, X),
    nn.MultiHeadDotProductAttention(num_heads=HEADS).apply(
      {"params": params}, X
    ),
    atol=1e-6,
  )


def test_linen_drop_in_layers_draw_independently_and_jit_agrees():

  class TwoLayers(nn.Module):
    @nn.compact
    def __call__(self, x):
      for i in range(2):
        x = x + MimeticMultiHeadDotProductAttention(
          num_heads=HEADS, name=f"attn{i}"
        )(x)
      return x

  eager = TwoLayers().init(jax.random.key(0), X)["params"]
  jitted = jax.jit(TwoLayers().init)(jax.random.key(0), X)["params"]
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), eager, jitted
  )
  params = arrays(eager)
  for name in ("attn0", "attn1"):
    assert_mimetic(params[name])
  assert (
    np.abs(
      params["attn0"]["value"]["kernel"] - params["attn1"]["value"]["kernel"]
    ).max()
    > 0.1
  )


def test_linen_drop_in_with_a_disabled_pair_and_positive_vo():
  params = arrays(
    MimeticMultiHeadDotProductAttention(
      num_heads=HEADS, qk=None, vo=(0.4, 0.4)
    ).init(jax.random.key(0), X)["params"]
  )
  assert_not_mimetic_qk(params)
  vo = vo_product(params)
  np.testing.assert_allclose(np.diag(vo).mean(), 0.4, atol=0.08)


def test_linen_drop_in_initialised_lazily_inside_apply():
  model = MimeticMultiHeadDotProductAttention(num_heads=HEADS)
  _, variables = model.apply(
    {}, X, rngs={"params": jax.random.key(0)}, mutable=True
  )
  assert_mimetic(arrays(variables["params"]))


def test_linen_drop_in_accepts_the_stock_out_kernel_init_default():
  model = MimeticMultiHeadDotProductAttention(
    num_heads=HEADS, out_kernel_init=None
  )
  assert_mimetic(arrays(model.init(jax.random.key(0), X)["params"]))


@pytest.mark.parametrize(
  "kwargs,match",
  [
    ({"out_features": 10}, "self-attention of one width"),
    ({"qkv_features": 24}, "self-attention of one width"),
    ({"kernel_init": nn.initializers.zeros}, "takes no kernel_init"),
  ],
)
def test_linen_drop_in_rejects_what_it_cannot_honour(kwargs, match):
  model = MimeticMultiHeadDotProductAttention(num_heads=HEADS, **kwargs)
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), X)


# ----------------------------------------------------------------------------
# NNX: mimetic_params on State, the drop-in module, stacked layers.
# ----------------------------------------------------------------------------


def test_mimetic_params_on_nnx_state_keeps_the_structure():
  model = nnx.MultiHeadAttention(
    num_heads=HEADS, in_features=D, decode=False, rngs=nnx.Rngs(0)
  )
  state = nnx.state(model, nnx.Param)
  new = mimetic_params(jax.random.key(1), state)
  assert type(new) is type(state)
  assert jax.tree.structure(
    new, is_leaf=lambda x: isinstance(x, nnx.Param)
  ) == jax.tree.structure(state, is_leaf=lambda x: isinstance(x, nnx.Param))
  assert isinstance(new["query"]["kernel"], nnx.Param)
  nnx.update(model, new)
  assert_mimetic(arrays(nnx.state(model, nnx.Param)))
  # The same draw as on the equivalent Linen params dict.
  np.testing.assert_array_equal(
    arrays(new)["value"]["kernel"],
    mimetic_params(jax.random.key(1), arrays(state))["value"]["kernel"],
  )
  assert np.isfinite(model(X)).all()


def test_mimetic_params_through_nnx_split_and_merge():

  class Block(nnx.Module):
    def __init__(self, rngs):
      self.norm = nnx.LayerNorm(D, rngs=rngs)
      self.attention = nnx.MultiHeadAttention(
        num_heads=HEADS, in_features=D, decode=False, rngs=rngs
      )
      self.dropout = nnx.Dropout(0.1, rngs=rngs)

  graphdef, state = nnx.split(Block(nnx.Rngs(0)))
  new = mimetic_params(jax.random.key(2), state)
  block = nnx.merge(graphdef, new)
  assert_mimetic(arrays(nnx.state(block, nnx.Param))["attention"])
  # Everything that is not an attention kernel or bias is untouched.
  flat_old = dict(nnx.to_flat_state(state))
  for path, leaf in nnx.to_flat_state(new):
    if path[0] != "attention":
      assert leaf is flat_old[path]


def test_mimetic_params_on_layers_stacked_with_nnx_vmap():
  layers = 3

  @nnx.vmap(in_axes=0, out_axes=0)
  def make(key):
    return nnx.MultiHeadAttention(
      num_heads=HEADS, in_features=D, decode=False, rngs=nnx.Rngs(key)
    )

  stacked = make(jax.random.split(jax.random.key(0), layers))
  state = nnx.state(stacked, nnx.Param)
  assert state["query"]["kernel"].shape == (layers, D, HEADS, HEAD_DIM)
  nnx.update(stacked, mimetic_params(jax.random.key(4), state))
  params = arrays(nnx.state(stacked, nnx.Param))
  per_layer = [jax.tree.map(lambda x, i=i: x[i], params) for i in range(layers)]
  for layer in per_layer:
    assert_mimetic(layer)
  assert (
    np.abs(
      per_layer[0]["value"]["kernel"] - per_layer[1]["value"]["kernel"]
    ).max()
    > 0.1
  )


def test_nnx_drop_in_is_mimetic_params_of_the_stock_module():
  rngs = nnx.Rngs(0)
  stock = nnx.MultiHeadAttention(
    num_heads=HEADS, in_features=D, decode=False, rngs=rngs
  )
  expected = mimetic_params(rngs.params(), nnx.state(stock, nnx.Param))
  model = MimeticMultiHeadAttention(
    num_heads=HEADS, in_features=D, decode=False, rngs=nnx.Rngs(0)
  )
  got = arrays(nnx.state(model, nnx.Param))
  jax.tree.map(np.testing.assert_array_equal, got, arrays(expected))
  assert_mimetic(got)
  assert model(X).shape == X.shape


@pytest.mark.parametrize(
  "kwargs", [{"out_features": 24}, {"in_kv_features": 24}, {"qkv_features": 24}]
)
def test_nnx_drop_in_rejects_cross_attention(kwargs):
  with pytest.raises(ValueError, match="self-attention of one width"):
    MimeticMultiHeadAttention(
      num_heads=HEADS, in_features=D, decode=False, rngs=nnx.Rngs(0), **kwargs
    )


def test_nnx_drop_in_kernel_init_serves_only_a_disabled_pair():
  with pytest.raises(ValueError, match="would be unused"):
    MimeticMultiHeadAttention(
      num_heads=HEADS,
      in_features=D,
      decode=False,
      kernel_init=nnx.initializers.zeros,
      rngs=nnx.Rngs(0),
    )
  model = MimeticMultiHeadAttention(
    num_heads=HEADS,
    in_features=D,
    qk=None,
    decode=False,
    kernel_init=nnx.initializers.ones,
    rngs=nnx.Rngs(0),
  )
  params = arrays(nnx.state(model, nnx.Param))
  np.testing.assert_array_equal(params["query"]["kernel"], 1.0)
  vo = vo_product(params)
  np.testing.assert_allclose(np.diag(vo).mean(), -0.4, atol=0.08)


def test_drop_ins_keep_a_bfloat16_param_dtype():
  linen = MimeticMultiHeadDotProductAttention(
    num_heads=HEADS, param_dtype=jnp.bfloat16
  ).init(jax.random.key(0), X)
  nnx_model = MimeticMultiHeadAttention(
    num_heads=HEADS,
    in_features=D,
    decode=False,
    param_dtype=jnp.bfloat16,
    rngs=nnx.Rngs(0),
  )
  for params in (linen["params"], nnx.state(nnx_model, nnx.Param)):
    params = arrays(params)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(params))
    vo = vo_product(params)
    np.testing.assert_allclose(np.diag(vo).mean(), -0.4, atol=0.08)


# ----------------------------------------------------------------------------
# README.
# ----------------------------------------------------------------------------

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks():
  return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_linen_and_nnx_examples():
  code = "\n".join(readme_python_blocks())
  for name in (
    "MimeticMultiHeadDotProductAttention",
    "MimeticMultiHeadAttention",
    "nnx.update",
    "mimetic_init",
  ):
    assert name in code


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(readme_python_blocks())))
def test_readme_python_example_runs(index):
  exec(
    compile(readme_python_blocks()[index], f"README.md block {index}", "exec"),
    {},
  )
