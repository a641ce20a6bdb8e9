"""Per-device training and evaluation steps, and how they are compiled.

The steps are written pmap-style: they see one device's slice of the batch
and average gradients with `lax.pmean` over the named axis `AXIS`. They are
compiled with `jax.jit(jax.shard_map(...))` over a 1-D mesh of all devices
(`compile_*`), and the same per-device function also runs under `jax.pmap`
(tests check that both give the update of a single-device step).

Why `check_vma=False`: under `shard_map`'s default varying-axis checking, the
gradient of a *replicated* parameter taken inside the per-device function
already comes back summed over the mesh axis (the transpose of the implicit
broadcast is a `psum`), so the pmap-style `pmean` on top would give
`device_count x` the gradient. Turning the check off restores pmap semantics,
which keeps one per-device function valid under both transforms.

Randomness: every step derives its keys from `(key, step, device index)`, and
the training batch from `(key, epoch, device index)`, so a resumed run
continues with exactly the draws an uninterrupted run would have made.
"""

from collections.abc import Callable
import functools
from typing import Any

from flax.training import train_state
import jax
from jax import lax
import jax.numpy as jnp
import optax

from mimetic_jax.tasks import Batch, Task

AXIS = "data"
TrainState = train_state.TrainState
# A param's path of names -> its gradient-norm group (see `group_norms`).
GroupOf = Callable[[tuple[str, ...]], str]
# `model.apply`: (variables, inputs) -> (logits, intermediates).
ApplyFn = Callable[..., tuple[jax.Array, Any]]

# Key streams derived from the run's seed with `fold_in`.
_TRAIN_STREAM, _DATA_STREAM = 1, 2


def group_norms(tree: Any, group_of: GroupOf) -> dict[str, jax.Array]:
  """L2 norm of `tree`'s leaves per group; `group_of` maps a leaf's path of
  names (e.g. `('encoderblock_0', 'attention', 'query', 'kernel')`) to its
  group."""
  squares = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    group = group_of(tuple(getattr(p, "key", str(p)) for p in path))
    squares[group] = squares.get(group, 0.0) + jnp.sum(jnp.square(leaf))
  return {group: jnp.sqrt(total) for group, total in squares.items()}


def train_step(
  state: TrainState,
  batch: Batch,
  key: jax.Array,
  *,
  task: Task,
  grad_groups: GroupOf | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on this device's `batch`; gradients `pmean`-ed.

  With `grad_groups` (see `group_norms`), `metrics['grad_norms']` holds the
  gradient norm of each group.
  """
  step_key = jax.random.fold_in(
    jax.random.fold_in(jax.random.fold_in(key, _TRAIN_STREAM), state.step),
    lax.axis_index(AXIS),
  )
  augment_key, dropout_key = jax.random.split(step_key)
  inputs = task.inputs(batch, augment_key, train=True)

  def loss_fn(params):
    logits, _ = state.apply_fn(
      {"params": params}, inputs, train=True, rngs={"dropout": dropout_key}
    )
    scores = task.score(logits, batch)
    weight = scores["weight"]
    loss = (scores["loss"] * weight).sum() / weight.sum()
    accuracy = (scores["correct"] * weight).sum() / weight.sum()
    return loss, accuracy

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
    state.params
  )
  grads = lax.pmean(grads, AXIS)
  new_state = state.apply_gradients(grads=grads)
  metrics = {
    "train_loss": lax.pmean(loss, AXIS),
    "train_accuracy": lax.pmean(accuracy, AXIS),
    "grad_norm": optax.tree.norm(grads),
    "param_norm": optax.tree.norm(new_state.params),
    "update_norm": optax.tree.norm(
      jax.tree.map(jnp.subtract, new_state.params, state.params)
    ),
  }
  if grad_groups is not None:
    metrics["grad_norms"] = group_norms(grads, grad_groups)
  return new_state, metrics


def sample_batch(
  train_data: Batch,
  step: jax.Array,
  key: jax.Array,
  *,
  steps_per_epoch: int,
  local_batch_size: int,
) -> Batch:
  """This device's batch for `step`, drawn from its shard of the train data.

  Each device reshuffles its shard every epoch (a permutation keyed by epoch
  and device index) and walks through it `local_batch_size` at a time.
  """
  num_local = len(next(iter(train_data.values())))
  epoch, position = jnp.divmod(step, steps_per_epoch)
  perm_key = jax.random.fold_in(
    jax.random.fold_in(jax.random.fold_in(key, _DATA_STREAM), epoch),
    lax.axis_index(AXIS),
  )
  order = jax.random.permutation(perm_key, num_local)
  indices = lax.dynamic_slice_in_dim(
    order, position * local_batch_size, local_batch_size
  )
  return jax.tree.map(lambda x: x[indices], train_data)


def train_step_in_memory(
  state: TrainState,
  train_data: Batch,
  key: jax.Array,
  *,
  task: Task,
  steps_per_epoch: int,
  local_batch_size: int,
  grad_groups: GroupOf | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """`train_step` on a batch gathered from device-resident train data."""
  batch = sample_batch(
    train_data,
    state.step,
    key,
    steps_per_epoch=steps_per_epoch,
    local_batch_size=local_batch_size,
  )
  return train_step(state, batch, key, task=task, grad_groups=grad_groups)


def eval_sums(
  params: Any,
  eval_data: Batch,
  *,
  apply_fn: ApplyFn,
  task: Task,
  local_batch_size: int,
) -> dict[str, jax.Array]:
  """Weighted sums of loss / correct / weight over this device's eval shard,
  `psum`-ed over devices. Padding examples carry weight 0."""
  num_local = len(next(iter(eval_data.values())))

  def body(i, sums):
    batch = jax.tree.map(
      lambda x: lax.dynamic_slice_in_dim(
        x, i * local_batch_size, local_batch_size
      ),
      eval_data,
    )
    logits, _ = apply_fn(
      {"params": params}, task.inputs(batch, None, train=False)
    )
    scores = task.score(logits, batch)
    weight = scores["weight"]
    return {
      "loss": sums["loss"] + (scores["loss"] * weight).sum(),
      "correct": sums["correct"] + (scores["correct"] * weight).sum(),
      "weight": sums["weight"] + weight.sum(),
    }

  zeros = {
    name: jnp.zeros((), jnp.float32) for name in ("loss", "correct", "weight")
  }
  sums = lax.fori_loop(0, num_local // local_batch_size, body, zeros)
  return lax.psum(sums, AXIS)


def shard_map_over(
  mesh: jax.sharding.Mesh,
  per_device_fn: Callable[..., Any],
  in_specs: Any,
  out_specs: Any,
  donate_argnums: tuple[int, ...] = (),
) -> Callable[..., Any]:
  """`jax.jit(jax.shard_map(per_device_fn))` with pmap semantics (see top)."""
  return jax.jit(
    jax.shard_map(
      per_device_fn,
      mesh=mesh,
      in_specs=in_specs,
      out_specs=out_specs,
      check_vma=False,
    ),
    donate_argnums=donate_argnums,
  )


def compile_train_step(
  mesh: jax.sharding.Mesh,
  *,
  task: Task,
  steps_per_epoch: int | None,
  local_batch_size: int,
  grad_groups: GroupOf | None = None,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """`(state, data, key) -> (state, metrics)`; state is donated.

  `data` is sharded over the mesh on its leading axis. In memory
  (`steps_per_epoch` given) it is the whole training split, from which each
  device draws its batch inside the step; streamed (`steps_per_epoch=None`)
  it is this step's global batch (and `local_batch_size` is unused).
  `grad_groups`: see `train_step`.
  """
  if steps_per_epoch is None:
    fn = functools.partial(train_step, task=task, grad_groups=grad_groups)
  else:
    fn = functools.partial(
      train_step_in_memory,
      task=task,
      steps_per_epoch=steps_per_epoch,
      local_batch_size=local_batch_size,
      grad_groups=grad_groups,
    )
  P = jax.P
  return shard_map_over(
    mesh,
    fn,
    in_specs=(P(), P(AXIS), P()),
    out_specs=(P(), P()),
    donate_argnums=(0,),
  )


def compile_eval(
  mesh: jax.sharding.Mesh,
  *,
  apply_fn: ApplyFn,
  task: Task,
  local_batch_size: int,
) -> Callable[[Any, Batch], dict[str, jax.Array]]:
  """`(params, eval_data) -> sums` over the whole eval split."""
  fn = functools.partial(
    eval_sums, apply_fn=apply_fn, task=task, local_batch_size=local_batch_size
  )
  P = jax.P
  return shard_map_over(mesh, fn, in_specs=(P(), P(AXIS)), out_specs=P())
