"""The optimizer and the step budget a config asks for.

`step_budget` turns epochs into steps once, for the trainer and for every tool
that needs to know a run's length (the comparison runner, the cross-check).
"""

import math

import jax
import ml_collections
import optax


def make_optimizer(
  config: ml_collections.ConfigDict, total_steps: int, warmup_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warm-up then cosine decay; weight decay on kernels and
  embeddings only (arrays of rank >= 2), not on biases, norms or tokens."""
  schedule = optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=config.learning_rate,
    warmup_steps=warmup_steps,
    decay_steps=max(total_steps, warmup_steps + 1),
    end_value=config.end_learning_rate,
  )
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  tx = optax.adamw(
    schedule,
    b1=config.b1,
    b2=config.b2,
    eps=config.adam_eps,
    weight_decay=config.weight_decay,
    mask=decay_mask,
  )
  if config.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx, schedule


def step_budget(
  config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[int, int]:
  """`(total_steps, warmup_steps)`: `total_steps` if set, else `num_epochs`
  rounded up to whole steps; warm-up rounded to the nearest step."""
  total_steps = config.total_steps or math.ceil(
    config.num_epochs * steps_per_epoch
  )
  return total_steps, round(config.warmup_epochs * steps_per_epoch)
