"""Attention weight products and their summary numbers (`diagnostics.py`),
checked against independent numpy computations, on plain, boxed and
`nn.scan`-stacked params, and on the ViT the trainer logs them for."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mimetic import HEADS, D, ScannedModel  # Scanned MHA stack, d=32.

from mimetic_jax import diagnostics, mimetic
from mimetic_jax.models import ViT, initialize


def numpy_products(block):
  """Independent reference: per-head `W_q^h W_k^hT` and `W_v W_o`."""
  kernel = lambda role: np.asarray(
    nn.meta.unbox(block[role]["kernel"]), np.float64
  )
  q, k, v, o = map(kernel, mimetic.ROLES)
  d, heads, head_dim = q.shape
  qk = np.stack([q[:, h, :] @ k[:, h, :].T for h in range(heads)])
  vo = v.reshape(d, heads * head_dim) @ o.reshape(heads * head_dim, d)
  return qk, vo


def numpy_stats(matrix):
  """Mean diagonal, mean |off-diagonal| of (..., d, d), over leading axes."""
  matrix = np.asarray(matrix, np.float64).reshape(-1, *matrix.shape[-2:])
  off = ~np.eye(matrix.shape[-1], dtype=bool)
  return (
    np.mean([np.diag(m).mean() for m in matrix]),
    np.mean([np.abs(m[off]).mean() for m in matrix]),
  )


class TwoLayers(nn.Module):
  """Plain attention layers with non-zero biases and a second width-d layer."""

  boxed: bool = False

  @nn.compact
  def __call__(self, x):
    kwargs = {}
    if self.boxed:
      kwargs = dict(
        kernel_init=nn.with_partitioning(
          nn.initializers.lecun_normal(), ("embed", "heads", "kv")
        ),
        out_kernel_init=nn.with_partitioning(
          nn.initializers.lecun_normal(), ("heads", "kv", "embed")
        ),
      )
    for i in range(2):
      x = x + nn.MultiHeadDotProductAttention(
        num_heads=HEADS, name=f"attn{i}", **kwargs
      )(x, x)
    return x


def init(model, seed=0):
  return model.init(jax.random.key(seed), jnp.ones((1, 5, D)))["params"]


@pytest.mark.parametrize("boxed", [False, True])
def test_products_match_numpy(boxed):
  params = init(TwoLayers(boxed=boxed))
  if boxed:
    assert isinstance(params["attn0"]["query"]["kernel"], nn.Partitioned)
  products = diagnostics.attention_products(params)
  assert list(products) == ["attn0", "attn1"]
  for name, product in products.items():
    ref_qk, ref_vo = numpy_products(params[name])
    assert product["qk"].shape == (HEADS, D, D)
    assert product["vo"].shape == (D, D)
    np.testing.assert_allclose(product["qk"], ref_qk, atol=1e-5)
    np.testing.assert_allclose(product["vo"], ref_vo, atol=1e-5)


def test_stats_match_numpy():
  params = mimetic.mimetic_params(jax.random.key(1), init(TwoLayers()))
  stats = diagnostics.attention_stats(params)
  assert len(stats) == 8
  for name in ("attn0", "attn1"):
    ref_qk, ref_vo = numpy_products(params[name])
    for label, ref in (("qk", ref_qk), ("vo", ref_vo)):
      diag, off = numpy_stats(ref)
      assert stats[f"{name}/{label}_diag"] == pytest.approx(diag, abs=1e-5)
      assert stats[f"{name}/{label}_offdiag"] == pytest.approx(off, abs=1e-5)


def test_summary_is_layer_stats_of_the_products_and_their_means():
  """One implementation: what the trainer logs (`attention_summary`) is
  `layer_stats` of `attention_products` (what pictures' summary.json holds)
  and `mean_over_layers` of those."""
  params = mimetic.mimetic_params(jax.random.key(1), init(TwoLayers()))
  products = diagnostics.attention_products(params)
  per_layer = {
    name: diagnostics.layer_stats(p["qk"], p["vo"])
    for name, p in products.items()
  }
  summary = diagnostics.attention_summary(params)
  assert len(summary) == 4 * len(per_layer) + 4
  for name, stats in per_layer.items():
    assert tuple(stats) == diagnostics.STAT_NAMES
    for stat, value in stats.items():
      assert summary[f"{name}/{stat}"] == pytest.approx(value, abs=1e-6)
  means = diagnostics.mean_over_layers(per_layer.values())
  for stat in diagnostics.STAT_NAMES:
    assert means[stat] == pytest.approx(
      np.mean([stats[stat] for stats in per_layer.values()])
    )
    assert summary[f"attn_{stat}"] == pytest.approx(means[stat], abs=1e-6)
  assert diagnostics.mean_over_layers([]) == {}


@pytest.mark.slow
def test_scan_stacked_layers_are_split_per_layer():
  layers = 3
  params = init(ScannedModel(layers))
  assert params["stack"]["attn"]["query"]["kernel"].shape == (
    layers,
    D,
    HEADS,
    D // HEADS,
  )
  products = diagnostics.attention_products(params)
  assert list(products) == [f"stack/attn/{i}" for i in range(layers)]
  for i in range(layers):
    layer = jax.tree.map(lambda x, i=i: x[i], params["stack"]["attn"])
    ref_qk, ref_vo = numpy_products(layer)
    np.testing.assert_allclose(
      products[f"stack/attn/{i}"]["qk"], ref_qk, atol=1e-5
    )
    np.testing.assert_allclose(
      products[f"stack/attn/{i}"]["vo"], ref_vo, atol=1e-5
    )
  # block_products keeps the leading axis.
  qk, vo = diagnostics.block_products(params["stack"]["attn"])
  assert qk.shape == (layers, HEADS, D, D) and vo.shape == (layers, D, D)

  # Mimetic init of the stack shows in the summary of every layer.
  summary = diagnostics.attention_summary(
    mimetic.mimetic_params(jax.random.key(2), params)
  )
  for i in range(layers):
    assert summary[f"stack/attn/{i}/qk_diag"] > 0.3
    assert summary[f"stack/attn/{i}/vo_diag"] == pytest.approx(-0.4, abs=0.1)
  assert summary["attn_vo_diag"] == pytest.approx(-0.4, abs=0.06)


def test_layers_in_natural_order_even_with_sorted_keys():
  """Restored checkpoints may sort keys: block_10 must follow block_9."""
  block = init(TwoLayers())["attn0"]
  params = {
    f"block_{i}": {"attention": block} for i in sorted(range(12), key=str)
  }
  assert list(params)[:3] == ["block_0", "block_1", "block_10"]
  assert list(diagnostics.attention_products(params)) == [
    f"block_{i}/attention" for i in range(12)
  ]


def test_no_attention_block_gives_nothing():
  assert (
    diagnostics.attention_products({"dense": {"kernel": jnp.ones((2, 2))}})
    == {}
  )
  assert diagnostics.attention_summary({}) == {}


def vit_tiny_params(init_name, depth=2):
  """ViT-Tiny's attention (d=192, 3 heads of 64), fewer layers."""
  model = ViT(
    num_classes=10,
    width=192,
    depth=depth,
    mlp_dim=384,
    num_heads=3,
    patch_size=8,
  )
  return initialize(
    model, jax.random.key(0), jnp.zeros((1, 32, 32, 3)), init=init_name
  )


@pytest.mark.slow
def test_vit_tiny_summary_mimetic_versus_default():
  """Mimetic: QK diagonal ~0.40 (the rank-64 cut of 0.7 Z + 0.7 I) and VO
  diagonal ~-0.40; default: both ~0. Keys are what the trainer logs."""
  mimetic_summary = diagnostics.attention_summary(vit_tiny_params("mimetic"))
  default_summary = diagnostics.attention_summary(vit_tiny_params("default"))
  for summary in (mimetic_summary, default_summary):
    assert set(summary) == {
      f"encoderblock_{i}/attention/{s}"
      for i in range(2)
      for s in diagnostics.STAT_NAMES
    } | {f"attn_{s}" for s in diagnostics.STAT_NAMES}
    assert all(isinstance(v, float) for v in summary.values())
  assert mimetic_summary["attn_qk_diag"] == pytest.approx(0.40, abs=0.03)
  assert mimetic_summary["attn_vo_diag"] == pytest.approx(-0.40, abs=0.03)
  assert abs(default_summary["attn_qk_diag"]) < 0.02
  assert abs(default_summary["attn_vo_diag"]) < 0.02
  # Off-diagonal noise is small either way: the diagonal is the signal.
  assert mimetic_summary["attn_qk_offdiag"] < 0.1
  assert mimetic_summary["attn_vo_offdiag"] < 0.1


@pytest.mark.slow
def test_replicated_params_as_in_the_trainer():
  """The trainer passes params replicated over a mesh of all devices."""
  params = mimetic.mimetic_params(jax.random.key(1), init(ScannedModel(2)))
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  replicated = jax.device_put(params, jax.NamedSharding(mesh, jax.P()))
  assert diagnostics.attention_summary(replicated) == pytest.approx(
    diagnostics.attention_summary(params), abs=1e-6
  )
