"""The initialization math, against an independent numpy computation.

Also catches the bugs that circulate in community copies: flipped signs, `Z`
scaled by `1/d` instead of `1/sqrt(d)`, square roots taken twice, one `Z`
shared by all heads.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimetic_jax import mimetic, mimetic_factors, mimetic_init, mimetic_params


def reference_factors(z, alpha, beta, rank):
  """Independent float64 numpy computation of the rank-`rank` factors."""
  target = alpha * np.asarray(z, np.float64) + beta * np.eye(z.shape[0])
  u, s, vt = np.linalg.svd(target)
  return target, u[:, :rank], s[:rank], vt[:rank].T


def numpy_draw_stats(d, heads, qk, vo, draws, seed=0):
  """Mean diag / off-diag std of W_q W_k^T and W_v W_o by a numpy simulation."""
  rng = np.random.default_rng(seed)
  k = d // heads
  qk_diag, vo_diag, vo_off = [], [], []
  for _ in range(draws):
    for _ in range(heads):
      target, u, s, v = reference_factors(
        rng.normal(size=(d, d)) / np.sqrt(d), *qk, k
      )
      qk_diag.append(np.diag((u * s) @ v.T).mean())
    target = vo[0] * rng.normal(size=(d, d)) / np.sqrt(d) + vo[1] * np.eye(d)
    vo_diag.append(np.diag(target).mean())
    vo_off.append(target[~np.eye(d, dtype=bool)].std())
  return np.mean(qk_diag), np.mean(vo_diag), np.mean(vo_off)


@pytest.mark.parametrize(
  "alpha,beta,rank", [(0.7, 0.7, 16), (0.4, -0.4, 48), (1.0, 0.05, 5)]
)
def test_factors_match_numpy_svd(alpha, beta, rank):
  d = 48
  z = np.random.default_rng(1).normal(size=(d, d)).astype(np.float32) / np.sqrt(
    d
  )
  left, right = mimetic_factors(
    jnp.asarray(z), alpha=alpha, beta=beta, rank=rank
  )
  target, u, s, v = reference_factors(z, alpha, beta, rank)
  assert left.shape == right.shape == (d, rank)
  # The product is the best rank-r approximation of the target.
  np.testing.assert_allclose(left @ right.T, (u * s) @ v.T, atol=2e-5)
  # Singular values split evenly: left^T left = right^T right = S (a square
  # root taken twice would give S^(1/2)).
  np.testing.assert_allclose(left.T @ left, np.diag(s), atol=2e-5)
  np.testing.assert_allclose(right.T @ right, np.diag(s), atol=2e-5)
  # Columns are the singular vectors up to sign.
  np.testing.assert_allclose(np.abs(left / np.sqrt(s)), np.abs(u), atol=1e-4)


def test_full_rank_factors_reproduce_target_exactly():
  d = 64
  z = mimetic.sample_z(jax.random.key(3), d)
  left, right = mimetic_factors(z, alpha=0.4, beta=-0.4, rank=d)
  target = 0.4 * np.asarray(z) - 0.4 * np.eye(d)
  np.testing.assert_allclose(left @ right.T, target, atol=2e-6)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_z_has_zero_mean_and_variance_one_over_d(distribution):
  d = 256
  z = np.asarray(mimetic.sample_z(jax.random.key(0), d, distribution))
  assert abs(z.mean()) < 3 / d  # std of the mean is 1/d^1.5
  np.testing.assert_allclose(z.var(), 1 / d, rtol=0.02)
  if distribution == "uniform":
    assert np.abs(z).max() <= np.sqrt(3 / d) + 1e-7


def test_vo_kernels_product_is_exact_target():
  d, heads, head_dim = 96, 3, 32
  key = jax.random.key(7)
  v, o = mimetic.vo_kernels(key, d, heads, head_dim, alpha=0.4, beta=-0.4)
  assert v.shape == (d, heads, head_dim) and o.shape == (heads, head_dim, d)
  z = np.asarray(mimetic.sample_z(key, d))
  np.testing.assert_allclose(
    np.asarray(v).reshape(d, d) @ np.asarray(o).reshape(d, d),
    0.4 * z - 0.4 * np.eye(d),
    atol=2e-6,
  )


def test_qk_kernels_are_rank_head_dim_truncations_with_fresh_z_per_head():
  d, heads, head_dim = 96, 3, 32
  key = jax.random.key(8)
  q, k = mimetic.qk_kernels(key, d, heads, head_dim, alpha=0.7, beta=0.7)
  assert q.shape == k.shape == (d, heads, head_dim)
  products = []
  for h, head_key in enumerate(jax.random.split(key, heads)):
    z = np.asarray(mimetic.sample_z(head_key, d))
    _, u, s, v = reference_factors(z, 0.7, 0.7, head_dim)
    product = np.asarray(q[:, h]) @ np.asarray(k[:, h]).T
    assert np.linalg.matrix_rank(product, tol=1e-4) == head_dim
    np.testing.assert_allclose(product, (u * s) @ v.T, atol=2e-5)
    products.append(product)
  # One Z shared by all heads would make the heads identical.
  for a in range(heads):
    for b in range(a + 1, heads):
      assert np.abs(products[a] - products[b]).max() > 0.1


@pytest.mark.parametrize(
  "d, heads, max_deviation, max_excess, max_diag_shift",
  [
    (192, 3, 0.05, 1.001, 0.002),
    pytest.param(768, 12, 0.75, 1.01, 0.01, marks=pytest.mark.slow),
  ],
)
def test_randomized_qk_factors_are_near_the_exact_truncation(
  d, heads, max_deviation, max_excess, max_diag_shift
):
  """`method='randomized'` against the exact rank-k truncation of the same
  target (float64 numpy SVD), per head, at ViT-Ti and ViT-B widths:

  * deviation: |P - A_k|_F / |A_k|_F. Small at ViT-Ti's head_dim/d = 1/3;
    at ViT-B's 1/12 the spectrum of 0.7 Z + 0.7 I has no gap at k, so the
    randomized subspace differs from the top-k one although it approximates
    A about as well:
  * excess: |A - P|_F / |A - A_k|_F (1 = optimal);
  * the statistic mimetic init is about: the mean QK diagonal.
  """
  head_dim = d // heads
  key = jax.random.key(5)
  q, k = mimetic.qk_kernels(
    key, d, heads, head_dim, alpha=0.7, beta=0.7, method="randomized"
  )
  for h, head_key in enumerate(jax.random.split(key, heads)[:2]):
    z = np.asarray(mimetic.sample_z(head_key, d))  # The same Z as exact.
    target, u, s, v = reference_factors(z, 0.7, 0.7, head_dim)
    best = (u * s) @ v.T
    product = np.asarray(q[:, h], np.float64) @ np.asarray(k[:, h]).T
    assert np.linalg.matrix_rank(product, tol=1e-4) == head_dim
    deviation = np.linalg.norm(product - best) / np.linalg.norm(best)
    excess = np.linalg.norm(target - product) / np.linalg.norm(target - best)
    assert deviation < max_deviation, deviation
    assert 1.0 - 1e-6 < excess < max_excess, excess
    assert abs(np.diag(product).mean() - np.diag(best).mean()) < max_diag_shift


def test_method_reaches_every_route_and_is_checked():
  params = init_params(UserModel())
  exact = mimetic_params(jax.random.key(0), params)
  randomized = mimetic_params(jax.random.key(0), params, method="randomized")
  kernel = lambda p, role: np.asarray(p["attn0"][role]["kernel"])
  # VO is always exact: the same draw; QK differs (another factorization).
  np.testing.assert_array_equal(
    kernel(exact, "value"), kernel(randomized, "value")
  )
  assert np.abs(kernel(exact, "query") - kernel(randomized, "query")).max() > 0
  assert_mimetic_block(randomized["attn0"])
  init = mimetic_init(jax.random.key(1), "query", HEADS, method="randomized")
  np.testing.assert_array_equal(
    init(None, (D, HEADS, D // HEADS)),
    mimetic.attention_kernels(
      jax.random.key(1), D, HEADS, D // HEADS, vo=None, method="randomized"
    )["query"],
  )
  with pytest.raises(ValueError, match="method='svd' is not one of"):
    mimetic_params(jax.random.key(0), params, method="svd")


@pytest.mark.slow
def test_diagonal_statistics_match_numpy_reference_for_vit_tiny():
  d, heads = 192, 3
  draws = 6
  ref_qk, ref_vo, ref_off = numpy_draw_stats(
    d, heads, (0.7, 0.7), (0.4, -0.4), draws
  )
  qk_diag, vo_diag, vo_off = [], [], []
  for key in jax.random.split(jax.random.key(0), draws):
    kernels = mimetic.attention_kernels(key, d, heads, d // heads)
    for h in range(heads):
      qk_diag.append(
        np.diag(kernels["query"][:, h] @ kernels["key"][:, h].T).mean()
      )
    vo = kernels["value"].reshape(d, d) @ kernels["out"].reshape(d, d)
    vo_diag.append(np.diag(vo).mean())
    vo_off.append(np.asarray(vo)[~np.eye(d, dtype=bool)].std())
  # The rank-64 cut pulls the QK diagonal from 0.7 to about 0.40.
  assert 0.37 < ref_qk < 0.43
  np.testing.assert_allclose(np.mean(qk_diag), ref_qk, atol=0.01)
  np.testing.assert_allclose(np.mean(vo_diag), ref_vo, atol=0.01)
  np.testing.assert_allclose(np.mean(vo_diag), -0.40, atol=0.01)
  # Off-diagonal spread is alpha / sqrt(d) (not alpha / d).
  np.testing.assert_allclose(np.mean(vo_off), ref_off, rtol=0.03)
  np.testing.assert_allclose(np.mean(vo_off), 0.4 / np.sqrt(d), rtol=0.03)


# ----------------------------------------------------------------------------
# mimetic_params on Flax params trees.
# ----------------------------------------------------------------------------

D, HEADS = 32, 4


class UserModel(nn.Module):
  """A user's model built from plain nn.MultiHeadDotProductAttention."""

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(D, name="stem")(x)
    for i in range(2):
      x = x + nn.MultiHeadDotProductAttention(
        num_heads=HEADS, name=f"attn{i}", bias_init=nn.initializers.normal(1.0)
      )(x, x)
      x = nn.LayerNorm(name=f"ln{i}")(x)
    return nn.Dense(3, name="head")(x)


class ScannedBlock(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    y = nn.MultiHeadDotProductAttention(num_heads=HEADS, name="attn")(x, x)
    return x + nn.Dense(D, name="mlp")(y), None


class ScannedModel(nn.Module):
  """Layers stacked with nn.scan: attention kernels get a leading layer axis."""

  layers: int = 3

  @nn.compact
  def __call__(self, x):
    stack = nn.scan(
      ScannedBlock,
      variable_axes={"params": 0},
      split_rngs={"params": True},
      length=self.layers,
    )
    return stack(name="stack")(x, None)[0]


class BoxedModel(nn.Module):
  """Params boxed with partitioning metadata."""

  @nn.compact
  def __call__(self, x):
    return nn.MultiHeadDotProductAttention(
      num_heads=HEADS,
      name="attn",
      kernel_init=nn.with_partitioning(
        nn.initializers.lecun_normal(), ("embed", "heads", "kv")
      ),
      out_kernel_init=nn.with_partitioning(
        nn.initializers.lecun_normal(), ("heads", "kv", "embed")
      ),
    )(x, x)


def init_params(model, seed=0):
  return model.init(jax.random.key(seed), jnp.ones((1, 5, D)))["params"]


def vo_product(block):
  return np.asarray(block["value"]["kernel"]).reshape(D, D) @ np.asarray(
    block["out"]["kernel"]
  ).reshape(D, D)


def qk_products(block):
  q, k = (
    np.asarray(block["query"]["kernel"]),
    np.asarray(block["key"]["kernel"]),
  )
  return [q[:, h] @ k[:, h].T for h in range(q.shape[1])]


def assert_mimetic_block(block, vo_beta=-0.4):
  """Structure only mimetic init gives: exact-rank QK, VO diag ~ beta."""
  for product in qk_products(block):
    assert np.linalg.matrix_rank(product, tol=1e-4) == D // HEADS
  np.testing.assert_allclose(
    np.diag(vo_product(block)).mean(), vo_beta, atol=0.08
  )
  for role in mimetic.ROLES:
    np.testing.assert_array_equal(block[role]["bias"], 0.0)


@pytest.mark.slow
def test_user_model_of_plain_flax_attention():
  params = init_params(UserModel())
  new = mimetic_params(jax.random.key(1), params)
  for name in ("attn0", "attn1"):
    assert_mimetic_block(new[name])
  # The model still runs with the new params.
  out = UserModel().apply({"params": new}, jnp.ones((2, 5, D)))
  assert out.shape == (2, 5, 3) and np.isfinite(out).all()


def test_non_attention_leaves_are_bit_identical():
  params = init_params(UserModel())
  new = mimetic_params(jax.random.key(1), params)
  for name in ("stem", "head", "ln0", "ln1"):
    for leaf_name, leaf in params[name].items():
      assert new[name][leaf_name] is leaf


def test_different_layers_and_heads_get_different_draws():
  new = mimetic_params(jax.random.key(1), init_params(UserModel()))
  vo0, vo1 = vo_product(new["attn0"]), vo_product(new["attn1"])
  assert np.abs(vo0 - vo1).max() > 0.1
  heads = qk_products(new["attn0"]) + qk_products(new["attn1"])
  for a in range(len(heads)):
    for b in range(a + 1, len(heads)):
      assert np.abs(heads[a] - heads[b]).max() > 0.1


@pytest.mark.slow
def test_same_key_same_result_and_other_key_other_result():
  params = init_params(UserModel())
  a = mimetic_params(jax.random.key(5), params)
  b = mimetic_params(jax.random.key(5), params)
  c = mimetic_params(jax.random.key(6), params)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.allclose(
    a["attn0"]["value"]["kernel"], c["attn0"]["value"]["kernel"]
  )


def test_runs_inside_jit():
  params = init_params(UserModel())
  eager = mimetic_params(jax.random.key(2), params)
  jitted = jax.jit(mimetic_params)(jax.random.key(2), params)
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, atol=1e-4), eager, jitted
  )


def test_scanned_layers_get_independent_exact_draws():
  params = init_params(ScannedModel())
  block = params["stack"]["attn"]
  assert block["query"]["kernel"].shape == (3, D, HEADS, D // HEADS)
  new = mimetic_params(jax.random.key(3), params)["stack"]["attn"]
  layers = [jax.tree.map(lambda x, i=i: x[i], new) for i in range(3)]
  for layer in layers:
    assert_mimetic_block(layer)
  assert np.abs(vo_product(layers[0]) - vo_product(layers[1])).max() > 0.1
  np.testing.assert_array_equal(
    new["query"]["kernel"].shape, block["query"]["kernel"].shape
  )


def test_boxed_params_keep_their_metadata():
  params = init_params(BoxedModel())
  assert isinstance(params["attn"]["query"]["kernel"], nn.Partitioned)
  new = mimetic_params(jax.random.key(4), params)
  for role in mimetic.ROLES:
    box = new["attn"][role]["kernel"]
    assert isinstance(box, nn.Partitioned)
    assert box.names == params["attn"][role]["kernel"].names
  assert_mimetic_block(nn.unbox(new)["attn"])


def test_qk_none_and_vo_none_leave_that_pair_untouched():
  params = init_params(UserModel())
  vo_only = mimetic_params(jax.random.key(1), params, qk=None, vo=(0.05, 0.05))
  qk_only = mimetic_params(jax.random.key(1), params, qk=(0.7, 0.7), vo=None)
  for new, untouched in (
    (vo_only, ("query", "key")),
    (qk_only, ("value", "out")),
  ):
    for role in untouched:
      for name, leaf in params["attn0"][role].items():
        assert new["attn0"][role][name] is leaf
  np.testing.assert_allclose(
    np.diag(vo_product(vo_only["attn0"])).mean(), 0.05, atol=0.05
  )
  # Signs are honoured: a positive VO beta gives a positive diagonal.
  positive = mimetic_params(jax.random.key(1), params, vo=(0.4, 0.4))
  assert np.diag(vo_product(positive["attn0"])).mean() > 0.3


def test_error_when_no_attention_block():
  params = {"dense": {"kernel": jnp.ones((3, 3)), "bias": jnp.zeros(3)}}
  with pytest.raises(ValueError, match="found no self-attention block"):
    mimetic_params(jax.random.key(0), params)


def test_error_for_cross_attention_shapes():
  attn = nn.MultiHeadDotProductAttention(num_heads=HEADS, out_features=16)
  params = attn.init(jax.random.key(0), jnp.ones((1, 5, D)))["params"]
  with pytest.raises(ValueError, match="kernel shapes") as err:
    mimetic_params(jax.random.key(0), params)
  assert "(4, 8, 16)" in str(err.value)  # Says what it found.


def test_error_when_heads_times_head_dim_exceeds_width():
  attn = nn.MultiHeadDotProductAttention(num_heads=HEADS, qkv_features=2 * D)
  params = attn.init(jax.random.key(0), jnp.ones((1, 5, D)))["params"]
  with pytest.raises(ValueError, match="exceeds the model width"):
    mimetic_params(jax.random.key(0), params)
  # QK alone is well defined there: rank head_dim = 16 <= d.
  new = mimetic_params(jax.random.key(0), params, vo=None)
  q = np.asarray(new["query"]["kernel"])
  assert (
    np.linalg.matrix_rank(
      q[:, 0] @ np.asarray(new["key"]["kernel"])[:, 0].T, tol=1e-4
    )
    == 2 * D // HEADS
  )


def test_narrow_attention_gets_best_low_rank_vo():
  attn = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=16)
  params = attn.init(jax.random.key(0), jnp.ones((1, 5, D)))["params"]
  new = mimetic_params(jax.random.key(0), params)
  product = np.asarray(new["value"]["kernel"]).reshape(D, 16) @ np.asarray(
    new["out"]["kernel"]
  ).reshape(16, D)
  assert np.linalg.matrix_rank(product, tol=1e-4) == 16


def test_error_when_both_pairs_disabled():
  with pytest.raises(ValueError, match="change nothing"):
    mimetic_params(
      jax.random.key(0), init_params(UserModel()), qk=None, vo=None
    )


# ----------------------------------------------------------------------------
# mimetic_init as a Flax initializer.
# ----------------------------------------------------------------------------


class UserAttention(nn.Module):
  """A user's own attention layer using mimetic_init (as in README)."""

  num_heads: int = HEADS

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    head_dim = d // self.num_heads
    shared = (
      self.make_rng("params") if self.is_initializing() else jax.random.key(0)
    )
    proj = lambda role: nn.DenseGeneral(
      (self.num_heads, head_dim),
      name=role,
      kernel_init=mimetic_init(shared, role, self.num_heads),
    )
    q, k, v = proj("query")(x), proj("key")(x), proj("value")(x)
    y = nn.dot_product_attention(q, k, v)
    return nn.DenseGeneral(
      d,
      axis=(-2, -1),
      name="out",
      kernel_init=mimetic_init(shared, "out", self.num_heads),
    )(y)


def test_mimetic_init_equals_attention_kernels_for_the_shared_key():
  key = jax.random.key(11)
  inits = {role: mimetic_init(key, role, HEADS) for role in mimetic.ROLES}
  shapes = {
    "query": (D, HEADS, 8),
    "key": (D, HEADS, 8),
    "value": (D, HEADS, 8),
    "out": (HEADS, 8, D),
  }
  expected = mimetic.attention_kernels(key, D, HEADS, 8)
  for role, init in inits.items():
    # The key Flax passes is ignored: the shared key couples the roles.
    kernel = init(jax.random.key(99), shapes[role], jnp.float32)
    np.testing.assert_array_equal(kernel, expected[role])


def test_mimetic_init_matches_mimetic_params_for_the_block_key():
  params = init_params(UserModel())
  key = jax.random.key(12)
  block = mimetic_params(key, params)["attn1"]
  block_key = mimetic._block_key(key, ("attn1",))
  for role in mimetic.ROLES:
    shape = params["attn1"][role]["kernel"].shape
    np.testing.assert_allclose(
      mimetic_init(block_key, role, HEADS)(None, shape),
      block[role]["kernel"],
      atol=1e-6,
    )


def test_mimetic_init_in_a_user_module_gives_coupled_factors():
  model = UserAttention()
  x = jnp.ones((2, 5, D))
  params = model.init(jax.random.key(0), x)["params"]
  for role in mimetic.ROLES:
    assert np.any(params[role]["kernel"] != 0)
  for product in qk_products(params):
    assert np.linalg.matrix_rank(product, tol=1e-4) == D // HEADS
  np.testing.assert_allclose(
    np.diag(vo_product(params)).mean(), -0.4, atol=0.08
  )
  assert np.isfinite(model.apply({"params": params}, x)).all()


def test_mimetic_init_flat_kernels_and_shape_errors():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="heads == num_heads"):
    mimetic_init(key, "query", 3)(None, (D, D))  # 32 not divisible by 3.
  q = mimetic_init(key, "query", HEADS)(None, (D, D))
  k = mimetic_init(key, "key", HEADS)(None, (D, D))
  product = np.asarray(q)[:, :8] @ np.asarray(k)[:, :8].T
  assert np.linalg.matrix_rank(product, tol=1e-4) == 8
  v = mimetic_init(key, "value", HEADS)(None, (D, D))
  o = mimetic_init(key, "out", HEADS)(None, (D, D))
  z = np.asarray(mimetic.sample_z(jax.random.split(key)[1], D))
  np.testing.assert_allclose(v @ o, 0.4 * z - 0.4 * np.eye(D), atol=2e-6)


def test_mimetic_init_with_a_disabled_pair_uses_the_fallback():
  fallback = nn.initializers.zeros
  assert (
    mimetic_init(jax.random.key(0), "query", HEADS, qk=None, fallback=fallback)
    is fallback
  )
