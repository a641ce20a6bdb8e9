"""ViT and causal LM: shapes, parameter counts, causality, init schemes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimetic_jax.models import TransformerLM, ViT, decode_variant, initialize
from mimetic_jax.models import vit as vit_lib


def num_params(model, inputs):
  shapes = jax.eval_shape(model.init, jax.random.key(0), inputs)
  return sum(x.size for x in jax.tree.leaves(shapes))


def vit_formula(width, depth, mlp_dim, patch_size, num_classes, **_):
  """Independent count: embedding, class token, blocks, final norm, head."""
  block = (
    2 * 2 * width
    + 4 * (width * width + width)
    + (2 * width * mlp_dim + mlp_dim + width)
  )
  return (
    (patch_size**2 * 3 * width + width)
    + width
    + depth * block
    + 2 * width
    + (width * num_classes + num_classes)
  )


# Pinned; B/16 and S/16 equal timm's vit_{base,small}_patch16_224 minus its
# learned position table (197 x width), since ours is fixed sin-cos.
@pytest.mark.parametrize(
  "variant,size,classes,expected",
  [
    ("Ti/2", 32, 10, 5_343_370),
    ("Ti/4", 32, 10, 5_350_282),
    ("S/4", 32, 100, 21_352_036),
    ("S/16", 224, 1000, 21_975_016),
    ("B/16", 224, 1000, 86_416_360),
  ],
)
def test_vit_variant_parameter_counts(variant, size, classes, expected):
  config = decode_variant(variant)
  model = ViT(num_classes=classes, **config)
  assert num_params(model, jnp.zeros((1, size, size, 3))) == expected
  assert vit_formula(num_classes=classes, **config) == expected


def test_decode_variant_and_its_error():
  assert decode_variant("Ti/2") == dict(
    width=192, depth=12, mlp_dim=768, num_heads=3, patch_size=2
  )
  with pytest.raises(ValueError, match="Unknown ViT variant"):
    decode_variant("Tiny-2")


@pytest.mark.parametrize(
  "pool,posemb",
  [("token", "sincos2d"), ("gap", "sincos1d"), ("token", "learn")],
)
def test_vit_forward_is_finite_with_expected_shapes(pool, posemb):
  model = ViT(
    num_classes=7,
    patch_size=4,
    width=32,
    depth=2,
    mlp_dim=64,
    num_heads=2,
    pool=pool,
    posemb=posemb,
    dropout=0.1,
  )
  images = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3))
  init = lambda x: initialize(model, jax.random.key(1), x, init="mimetic")
  params = jax.jit(init)(images)
  logits, inter = jax.jit(
    lambda p, x: model.apply(
      {"params": p}, x, train=True, rngs={"dropout": jax.random.key(2)}
    )
  )(params, images)
  assert logits.shape == (3, 7) and logits.dtype == jnp.float32
  assert inter["block01"].shape == (3, 16 + (pool == "token"), 32)
  assert np.isfinite(logits).all()
  # The head is zero-initialised: logits start at exactly zero.
  np.testing.assert_array_equal(model.apply({"params": params}, images)[0], 0)


@pytest.mark.slow
def test_vit_bfloat16_compute_keeps_float32_params():
  model = ViT(
    num_classes=3,
    patch_size=4,
    width=32,
    depth=1,
    mlp_dim=64,
    num_heads=2,
    dtype=jnp.bfloat16,
  )
  images = jnp.ones((2, 8, 8, 3))
  params = initialize(model, jax.random.key(0), images, init="mimetic")
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  _, inter = model.apply({"params": params}, images)
  assert inter["block00"].dtype == jnp.bfloat16


def test_posemb_sincos_2d_matches_formula():
  pe = vit_lib.posemb_sincos_2d(3, 4, 8)[0]
  assert pe.shape == (12, 8)
  # Token (row 1, col 2) with omega = [1, 1e-4]: sin(x), cos(x), sin(y), cos(y).
  omega = np.array([1.0, 1e-4])
  np.testing.assert_allclose(
    pe[1 * 4 + 2],
    np.concatenate(
      [
        np.sin(2 * omega),
        np.cos(2 * omega),
        np.sin(1 * omega),
        np.cos(1 * omega),
      ]
    ),
    rtol=1e-6,
  )


@pytest.mark.slow
def test_init_schemes_change_only_what_they_should():
  model = ViT(
    num_classes=3, patch_size=4, width=32, depth=2, mlp_dim=64, num_heads=2
  )
  images = jnp.ones((1, 8, 8, 3))
  default = initialize(model, jax.random.key(0), images, init="default")
  mimetic = initialize(model, jax.random.key(0), images, init="mimetic")
  trunc = initialize(model, jax.random.key(0), images, init="trunc_normal")
  attn = lambda p: p["encoderblock_1"]["attention"]
  # Same model key: non-attention leaves agree with the default init.
  np.testing.assert_array_equal(
    mimetic["embedding"]["kernel"], default["embedding"]["kernel"]
  )
  np.testing.assert_array_equal(
    mimetic["encoderblock_0"]["mlp"]["fc1"]["kernel"],
    default["encoderblock_0"]["mlp"]["fc1"]["kernel"],
  )
  v, o = attn(mimetic)["value"]["kernel"], attn(mimetic)["out"]["kernel"]
  assert np.diag(v.reshape(32, 32) @ o.reshape(32, 32)).mean() < -0.3
  for kernel in (
    attn(trunc)["query"]["kernel"],
    trunc["encoderblock_0"]["mlp"]["fc2"]["kernel"],
  ):
    assert (
      abs(float(jnp.std(kernel)) - 0.0176) < 0.004
    )  # 0.02 truncated at 2 sd.
    assert float(jnp.abs(kernel).max()) <= 0.04 + 1e-6
  np.testing.assert_array_equal(
    trunc["embedding"]["kernel"], default["embedding"]["kernel"]
  )
  with pytest.raises(ValueError, match="is not one of"):
    initialize(model, jax.random.key(0), images, init="xavier")


def small_lm(**kwargs):
  defaults = dict(vocab_size=50, width=32, depth=2, num_heads=4, max_len=16)
  return TransformerLM(**{**defaults, **kwargs})


@pytest.mark.slow
@pytest.mark.parametrize("posemb,tie", [("learn", True), ("sincos", False)])
def test_lm_is_causal(posemb, tie):
  """d logits[i] / d embeddings[j] == 0 for every j > i, nonzero for j <= i."""
  model = small_lm(posemb=posemb, tie_embeddings=tie)
  tokens = jax.random.randint(jax.random.key(0), (1, 12), 0, 50)
  params = initialize(model, jax.random.key(1), tokens, init="mimetic")
  perturbations = model.init(jax.random.key(0), tokens)["perturbations"]

  @jax.jit
  def token_gradients(perturbations):  # d logits[i] / d embeddings[j].
    outputs = lambda p: model.apply(
      {"params": params, "perturbations": p}, tokens
    )[0][0].sum(-1)  # (length,): one output per position.
    return jax.jacrev(outputs)(perturbations)["token_embeddings"]

  grads = token_gradients(perturbations)  # (length, 1, length, width)
  for i in range(tokens.shape[1]):
    per_position = np.abs(np.asarray(grads[i, 0])).max(axis=-1)
    np.testing.assert_array_equal(per_position[i + 1 :], 0.0)
    assert (per_position[: i + 1] > 0).all()


@pytest.mark.slow
def test_lm_forward_shapes_and_length_error():
  model = small_lm()
  tokens = jnp.zeros((2, 16), jnp.int32)
  params = initialize(model, jax.random.key(0), tokens, init="mimetic")
  logits, _ = model.apply({"params": params}, tokens)
  assert logits.shape == (2, 16, 50) and np.isfinite(logits).all()
  with pytest.raises(ValueError, match="exceeds the model's max_len"):
    model.apply({"params": params}, jnp.zeros((2, 17), jnp.int32))


def _softmax_attention_reference(q, k, v, mask):
  """Independent numpy softmax attention; (B, T, N, H) layout, mask True =
  attend, broadcast to (B, N, T, S)."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
  if mask is not None:
    logits = np.where(mask, logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum("bnts,bsnh->btnh", weights, v)


@pytest.mark.slow
@pytest.mark.parametrize("causal", [False, True])
def test_attention_fn_matches_softmax_attention(causal):
  """`layers.dot_product_attention` (jax.nn.dot_product_attention) against a
  numpy reference and Flax's own `nn.dot_product_attention`."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from mimetic_jax.models import layers  # pylint: disable=g-import-not-at-top

  q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 17, 3, 8))
  mask = np.tril(np.ones((17, 17), bool))[None, None] if causal else None
  ours = layers.dot_product_attention(q, k, v, mask=mask)
  np.testing.assert_allclose(
    ours, _softmax_attention_reference(q, k, v, mask), atol=2e-6
  )
  np.testing.assert_allclose(
    ours, nn.dot_product_attention(q, k, v, mask=mask), atol=2e-6
  )


@pytest.mark.slow
def test_vit_with_jax_attention_equals_flax_attention(monkeypatch):
  """The whole ViT forward pass is unchanged by the attention function."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from mimetic_jax.models import layers  # pylint: disable=g-import-not-at-top

  model = ViT(
    num_classes=10, patch_size=4, width=48, depth=2, mlp_dim=96, num_heads=3
  )
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  params = initialize(model, jax.random.key(2), images, init="mimetic")
  params["head"]["kernel"] = jax.random.normal(
    jax.random.key(3), params["head"]["kernel"].shape
  )
  ours, _ = model.apply({"params": params}, images)
  monkeypatch.setattr(
    layers,
    "dot_product_attention",
    lambda *args, implementation=None, **kwargs: nn.dot_product_attention(
      *args, **kwargs
    ),
  )
  flax_logits, _ = model.apply({"params": params}, images)
  assert float(jnp.abs(ours).max()) > 0.1  # Not trivially equal zeros.
  np.testing.assert_allclose(ours, flax_logits, atol=1e-5)


@pytest.mark.parametrize("remat", ["nothing_saveable", "dots_saveable"])
@pytest.mark.parametrize("model_type", ["vit", "lm"])
def test_remat_changes_memory_not_maths(model_type, remat):
  """A rematerialised model has the same params, loss and gradients."""
  if model_type == "vit":
    make = lambda **kw: ViT(  # No head: its zero init would stop gradients.
      num_classes=0,
      width=32,
      depth=2,
      mlp_dim=64,
      num_heads=2,
      patch_size=4,
      dropout=0.1,
      **kw,
    )
    inputs = jax.random.uniform(jax.random.key(1), (3, 16, 16, 3))
  else:
    make = lambda **kw: TransformerLM(
      vocab_size=11,
      width=32,
      depth=2,
      num_heads=2,
      max_len=8,
      dropout=0.1,
      **kw,
    )
    inputs = jax.random.randint(jax.random.key(1), (3, 8), 0, 11)
  plain, rematerialised = make(), make(remat=remat)
  params = plain.init(jax.random.key(0), inputs)["params"]
  remat_params = rematerialised.init(jax.random.key(0), inputs)["params"]
  assert jax.tree.structure(params) == jax.tree.structure(remat_params)
  jax.tree.map(np.testing.assert_array_equal, params, remat_params)

  def loss(model, params):
    logits, _ = model.apply(
      {"params": params},
      inputs,
      train=True,
      rngs={"dropout": jax.random.key(2)},
    )
    return jnp.mean(logits**2)  # Nonzero gradients into every layer.

  grads = jax.jit(jax.grad(lambda p: loss(plain, p)))(params)
  remat_grads = jax.jit(jax.grad(lambda p: loss(rematerialised, p)))(params)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    grads,
    remat_grads,
  )
  first_block = grads["encoderblock_0" if model_type == "vit" else "block_0"]
  assert np.abs(first_block["attention"]["query"]["kernel"]).sum() > 0


def test_unknown_remat_policy_is_rejected():
  with pytest.raises(ValueError, match="Unknown remat policy 'all'"):
    ViT(
      num_classes=2,
      width=32,
      depth=1,
      mlp_dim=64,
      num_heads=2,
      patch_size=4,
      remat="all",
    ).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
