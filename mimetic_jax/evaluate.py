"""Evaluation: summed scores over the eval split, and the metrics they give.

`Evaluator` owns its jitted function (one compile, reused at every eval) and
turns summed per-item scores into `eval_loss`, `eval_accuracy` and, for
language models, `eval_perplexity` and `eval_bits_per_byte`.
`language_model_metrics` is the one place those LM quantities are computed,
for the eval and for the training log.
"""

import math
import operator
from typing import Any

import jax

from mimetic_jax import steps
from mimetic_jax.data import DatasetInfo
from mimetic_jax.feeds import Feed
from mimetic_jax.steps import ApplyFn
from mimetic_jax.tasks import Task


def language_model_metrics(
  prefix: str, mean_loss: float, bits_per_byte: float
) -> dict[str, float]:
  """`{prefix}perplexity` (capped at exp(700)) and `{prefix}bits_per_byte`."""
  return {
    f"{prefix}perplexity": math.exp(min(mean_loss, 700.0)),
    f"{prefix}bits_per_byte": bits_per_byte,
  }


def train_metrics(
  metrics: dict[str, float], info: DatasetInfo
) -> dict[str, float]:
  """Adds the LM's train perplexity and bits per byte to logged metrics."""
  if not info.vocab_size:
    return metrics
  loss = metrics["train_loss"]
  return metrics | language_model_metrics(
    "train_", loss, loss / math.log(2) * info.tokens_per_byte
  )


def summarize(sums: dict[str, float], info: DatasetInfo) -> dict[str, float]:
  """Summed eval scores (`loss`, `correct`, `weight`) -> eval metrics."""
  n = sums["weight"]
  metrics = {
    "eval_loss": sums["loss"] / n,
    "eval_accuracy": sums["correct"] / n,
  }
  if info.vocab_size:
    metrics |= language_model_metrics(
      "eval_",
      metrics["eval_loss"],
      sums["loss"] / math.log(2) / info.eval_num_bytes,
    )
  return metrics


class Evaluator:
  """Scores params on the whole eval split of a `Feed`, exactly once."""

  def __init__(
    self,
    mesh: jax.sharding.Mesh,
    *,
    task: Task,
    apply_fn: ApplyFn,
    feed: Feed,
    info: DatasetInfo,
    local_batch_size: int,
  ):
    self._sums = steps.compile_eval(
      mesh, apply_fn=apply_fn, task=task, local_batch_size=local_batch_size
    )
    self._feed = feed
    self._info = info

  def __call__(self, params: Any) -> dict[str, float]:
    total = None
    for batch in self._feed.eval_batches():
      sums = self._sums(params, batch)
      total = sums if total is None else jax.tree.map(operator.add, total, sums)
    total = jax.device_get(total)
    return summarize({k: float(v) for k, v in total.items()}, self._info)
