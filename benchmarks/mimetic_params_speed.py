"""How long `mimetic_params` takes on real model shapes.

    python benchmarks/mimetic_params_speed.py [--models vit_ti2,vit_b16,lm_2048]
    python benchmarks/mimetic_params_speed.py --models lm_2048_1layer \
        --methods exact,randomized

For each model and method: builds its params tree (zeros of the real shapes:
the values do not matter to the cost, which is one factorization per head
per layer for QK and one per layer for VO), then times
`jax.jit(mimetic_params)`: the first call (compile + run) and the mean of
later calls (run only).
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp

from mimetic_jax import mimetic_params
from mimetic_jax.models import TransformerLM, ViT, decode_variant

MODELS = {
  "vit_ti2": (
    lambda: ViT(num_classes=10, **decode_variant("Ti/2")),
    jnp.zeros((1, 32, 32, 3)),
  ),
  "vit_b16": (
    lambda: ViT(num_classes=1000, **decode_variant("B/16")),
    jnp.zeros((1, 224, 224, 3)),
  ),
  "lm_2048": (
    lambda: TransformerLM(
      vocab_size=256, width=2048, depth=24, num_heads=16, max_len=8
    ),
    jnp.zeros((1, 8), jnp.int32),
  ),
  # One layer of lm_2048: the cost is the same per layer (17 SVDs of
  # 2048 x 2048), so this prices the full model quickly on a slow CPU.
  "lm_2048_1layer": (
    lambda: TransformerLM(
      vocab_size=256, width=2048, depth=1, num_heads=16, max_len=8
    ),
    jnp.zeros((1, 8), jnp.int32),
  ),
}


def time_model(name: str, method: str, repeats: int) -> None:
  make_model, inputs = MODELS[name]
  shapes = jax.eval_shape(make_model().init, jax.random.key(0), inputs)
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["params"])
  num = sum(x.size for x in jax.tree.leaves(params))
  transform = jax.jit(functools.partial(mimetic_params, method=method))
  start = time.perf_counter()
  jax.block_until_ready(transform(jax.random.key(0), params))
  first = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(repeats):
    jax.block_until_ready(transform(jax.random.key(i + 1), params))
  steady = (time.perf_counter() - start) / repeats
  print(
    f"{name:14s} {method:10s} params={num / 1e6:8.1f}M  first call "
    "(compile+run) "
    f"{first:7.2f} s  steady {steady:7.2f} s  [{jax.devices()[0]}]",
    flush=True,
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--models",
    default="vit_ti2,vit_b16,lm_2048",
    help=f"comma-separated, from {sorted(MODELS)}",
  )
  parser.add_argument(
    "--methods", default="exact", help="comma-separated: exact, randomized"
  )
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  for name in args.models.split(","):
    for method in args.methods.split(","):
      time_model(name, method, args.repeats)


if __name__ == "__main__":
  main()
