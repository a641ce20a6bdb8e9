"""The project's side of the cross-check: the batches, and its ViT trained on
them with the trainer's own step.

`make_batches` draws every training batch of a seed once, with the project's
augmentation (`ImageClassification.inputs`: crop, flip, RandAugment, Cutout,
then `dataset.value_range`), so that both frameworks train on identical
arrays. `train` runs `steps.train_step` (the trainer's compiled step, fed
these batches instead of augmenting its own), `init_lib.init_params` (the
trainer's
init) and `optim.make_optimizer` (its AdamW and schedule).
"""

import dataclasses
import math
import re
import time
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from mimetic_jax import optim, steps, tasks
from mimetic_jax.data import Dataset
from mimetic_jax.models import init as init_lib

# Key streams of a seed's key (stream 0 is the trainer's init,
# `init_lib.init_key`).
_ORDER_STREAM, _AUGMENT_STREAM = 1, 2


def make_batches(
  task: tasks.ImageClassification,
  data: Dataset,
  *,
  seed: int,
  total_steps: int,
  batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
  """`(inputs, labels)`: float32 `(total_steps, batch, H, W, C)` model inputs
  and int32 `(total_steps, batch)`. Each epoch walks a fresh permutation of
  the training split (keyed by seed and epoch); each batch is augmented with
  a key from (seed, step)."""
  key = jax.random.key(seed)
  images, labels = (jnp.asarray(data.train[k]) for k in ("image", "label"))
  steps_per_epoch = len(labels) // batch_size

  @jax.jit
  def batch_at(step):
    epoch, position = jnp.divmod(step, steps_per_epoch)
    order = jax.random.permutation(
      jax.random.fold_in(jax.random.fold_in(key, _ORDER_STREAM), epoch),
      len(labels),
    )
    indices = lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
    augment_key = jax.random.fold_in(
      jax.random.fold_in(key, _AUGMENT_STREAM), step
    )
    batch = {"image": images[indices], "label": labels[indices]}
    return task.inputs(batch, augment_key, train=True), batch["label"]

  pairs = [jax.device_get(batch_at(step)) for step in range(total_steps)]
  return (
    np.stack([x for x, _ in pairs]),
    np.stack([y for _, y in pairs]).astype(np.int32),
  )


def eval_inputs(
  task: tasks.ImageClassification, data: Dataset
) -> tuple[np.ndarray, np.ndarray]:
  """The whole eval split as model inputs (no augmentation) and labels."""
  inputs = task.inputs({"image": data.eval["image"]}, None, train=False)
  return np.asarray(inputs), data.eval["label"].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class _FedInputs:
  """The image task for batches whose `image` already is the model input."""

  task: tasks.ImageClassification

  def inputs(self, batch, key, *, train):
    del key, train
    return batch["image"]

  def score(self, logits, batch):
    return self.task.score(logits, batch)


def grad_group(path: tuple[str, ...]) -> str:
  """The gradient-norm group of a Flax ViT param (the names of
  `timm_side.grad_group`)."""
  match = re.fullmatch(r"encoderblock_(\d+)", path[0])
  if match:
    layer, module = match.group(1), path[1]
    if module == "attention":
      return f"qk/{layer}" if path[2] in ("query", "key") else f"vo/{layer}"
    return f"mlp/{layer}" if module == "mlp" else "norms"
  groups = {
    "embedding": "patch_embedding",
    "cls": "cls_token",
    "encoder_norm": "norms",
    "head": "head",
  }
  if path[0] not in groups:
    raise ValueError(f"No gradient group for param {'/'.join(path)!r}.")
  return groups[path[0]]


def init_params(
  model, *, init: str, seed: int, config, sample: np.ndarray
) -> Any:
  """The trainer's init of `model` for `seed` (`sample`: one input batch)."""
  return init_lib.init_params(
    config, model, jnp.asarray(sample[:1]), init=init, seed=seed
  )


def train(
  task: tasks.ImageClassification,
  model,
  params,
  *,
  seed: int,
  batches: np.ndarray,
  labels: np.ndarray,
  config,
  steps_per_epoch: int,
  grad_norm_steps: int,
  log,
) -> tuple[Any, dict[str, Any]]:
  """Trains the project's `model` from `params` on `batches` with the
  trainer's optimizer and compiled step.

  Returns `(params, record)`, `record` as `timm_side.train`'s.
  """
  total_steps, warmup_steps = optim.step_budget(config, steps_per_epoch)
  tx, _ = optim.make_optimizer(config, total_steps, warmup_steps)
  key = jax.random.key(seed)
  mesh = jax.make_mesh((jax.device_count(),), (steps.AXIS,))
  own_params = jax.tree.map(jnp.array, params)  # The step donates them.
  state = jax.device_put(
    steps.TrainState.create(apply_fn=model.apply, params=own_params, tx=tx),
    jax.NamedSharding(mesh, jax.P()),
  )  # Replicated, as the trainer's.
  sharded = jax.NamedSharding(mesh, jax.P(steps.AXIS))
  put = lambda i: jax.device_put(
    {"image": batches[i], "label": labels[i]}, sharded
  )
  step_fn = (
    steps.compile_train_step(
      mesh,
      task=_FedInputs(task),
      steps_per_epoch=None,
      local_batch_size=len(labels[0]) // jax.device_count(),
      grad_groups=grad_group,
    )
    .lower(state, put(0), key)
    .compile()
  )
  losses, norms = [], []
  start = time.perf_counter()
  for i in range(len(batches)):
    state, metrics = step_fn(state, put(i), key)
    losses.append(metrics["train_loss"])
    if i < grad_norm_steps:
      norms.append(metrics["grad_norms"])
    if (i + 1) % config.log_every_steps == 0 or i + 1 == len(batches):
      loss = float(metrics["train_loss"])  # Waits for the step.
      if not math.isfinite(loss):
        raise FloatingPointError(f"project run: loss {loss} at step {i}.")
      log(
        f"step {i + 1}/{len(batches)}: train_loss {loss:.4f}, "
        f"{(i + 1) * len(labels[0]) / (time.perf_counter() - start):.0f} "
        "img/s"
      )
  record = {
    "train_loss": [float(x) for x in jax.device_get(losses)],
    "grad_norms": [
      {k: float(v) for k, v in n.items()} for n in jax.device_get(norms)
    ],
    "train_seconds": time.perf_counter() - start,
  }
  return state.params, record


def evaluate(
  task: tasks.ImageClassification,
  model,
  params,
  images: np.ndarray,
  labels: np.ndarray,
  *,
  batch_size: int,
) -> dict[str, float]:
  """Accuracy and mean loss (`task.score`) over all of `images`."""

  @jax.jit
  def sums(params, images, labels):
    logits, _ = model.apply({"params": params}, images)
    scores = task.score(logits, {"label": labels})
    return scores["loss"].sum(), scores["correct"].sum()

  loss_sum = correct = 0.0
  for i in range(0, len(images), batch_size):
    loss, hits = sums(
      params, images[i : i + batch_size], labels[i : i + batch_size]
    )
    loss_sum += float(loss)
    correct += float(hits)
  return {
    "eval_accuracy": correct / len(images),
    "eval_loss": loss_sum / len(images),
  }


def run(
  task: tasks.ImageClassification,
  model,
  *,
  init: str,
  seed: int,
  batches: np.ndarray,
  labels: np.ndarray,
  eval_data: tuple[np.ndarray, np.ndarray],
  config,
  steps_per_epoch: int,
  grad_norm_steps: int,
  log,
) -> dict[str, Any]:
  """One cross-check run: init, `train`, `evaluate`; the run's record."""
  params = init_params(
    model, init=init, seed=seed, config=config, sample=batches[0]
  )
  params, record = train(
    task,
    model,
    params,
    seed=seed,
    batches=batches,
    labels=labels,
    config=config,
    steps_per_epoch=steps_per_epoch,
    grad_norm_steps=grad_norm_steps,
    log=log,
  )
  return {
    **evaluate(
      task, model, params, *eval_data, batch_size=config.eval_batch_size
    ),
    **record,
  }
