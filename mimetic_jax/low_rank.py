"""Top-`rank` factors `(U_r S_r^{1/2}, V_r S_r^{1/2})` of a square matrix.

`exact_top_factors` is the best rank-`rank` approximation split evenly
between two factors; `randomized_top_factors` approximates it at a fraction
of the cost for `rank << d`. Both are pure and run under `jax.jit`.
"""

import jax
import jax.numpy as jnp


def exact_top_factors(
  target: jax.Array, rank: int
) -> tuple[jax.Array, jax.Array]:
  """`(U_r S_r^{1/2}, V_r S_r^{1/2})` of a `(d, d)` target by its SVD, so that
  `left @ right.T` is the best rank-`rank` approximation (the target itself
  when `rank == d`) and `left^T left = right^T right = S_r`.

  (An eigendecomposition of `target^T target` gives the same factors, but
  XLA's CPU `eigh` measured no faster than its SVD here: ViT-B/16 10.5 s
  either way; see the speed table in README.md.)
  """
  u, s, vt = jnp.linalg.svd(target, full_matrices=False)
  root = jnp.sqrt(s[:rank])
  return u[:, :rank] * root, vt[:rank].T * root


def _orthonormalize(y: jax.Array) -> jax.Array:
  """An orthonormal basis of the columns of a tall `(d, w)` matrix from its
  `(w, w)` Gram matrix: one small `eigh` and matmuls, several times cheaper
  than a QR of `y` on a CPU. Squaring the condition number is harmless for
  the well-conditioned sketches between power iterations; the last step of
  `randomized_top_factors` uses a QR."""
  eigenvalues, w = jnp.linalg.eigh(y.T @ y)
  floor = eigenvalues[-1] * 1e-10
  return y @ (w * jax.lax.rsqrt(jnp.maximum(eigenvalues, floor)))


def randomized_top_factors(
  target: jax.Array,
  rank: int,
  key: jax.Array,
  *,
  oversampling: int | None = None,
  power_iterations: int = 2,
) -> tuple[jax.Array, jax.Array]:
  """Approximate `(U_r S_r^{1/2}, V_r S_r^{1/2})` of a `(d, d)` target by a
  randomized range finder (Halko, Martinsson & Tropp 2011, algorithms 4.4
  and 5.1): sketch the range with `rank + oversampling` Gaussian vectors
  (default oversampling: `rank`, a sketch of width `2 * rank`), sharpen it
  with `power_iterations` rounds of `target target^T` (re-orthonormalised in
  between), then an SVD of the small `(rank + oversampling, d)` projection.
  Costs a few `(d, d) x (d, 2 rank)` matmuls instead of a `(d, d)` SVD; how
  far the product is from the exact truncation is measured in
  tests/test_mimetic.py.
  """
  d = target.shape[0]
  width = min(d, 2 * rank if oversampling is None else rank + oversampling)
  y = _orthonormalize(target @ jax.random.normal(key, (d, width), target.dtype))
  for _ in range(power_iterations):
    y = _orthonormalize(target @ _orthonormalize(target.T @ y))
  q, _ = jnp.linalg.qr(y)  # Exactly orthonormal for the projection.
  u_small, s, vt = jnp.linalg.svd(q.T @ target, full_matrices=False)
  root = jnp.sqrt(s[:rank])
  return (q @ u_small[:, :rank]) * root, vt[:rank].T * root
