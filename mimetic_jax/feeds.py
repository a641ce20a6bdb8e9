"""How batches reach the compiled steps: one interface, two implementations.

`make_feed` chooses once: `InMemoryFeed` places the whole (small) dataset in
device memory, sharded over the mesh, and each device draws its batches
inside the jitted step; `StreamedFeed` (`dataset.in_memory=False`) turns host
batches from a `data.Stream` into global arrays, one step at a time. Both
give the same `steps_per_epoch`, `compile_train_step` and `eval_batches`.
"""

from collections.abc import Callable, Iterator
import dataclasses
import functools
import itertools
from typing import Protocol

import jax
import ml_collections
import numpy as np

from mimetic_jax import steps
from mimetic_jax.data import Arrays, Dataset
from mimetic_jax.errors import UserError
from mimetic_jax.tasks import Batch, Task


@dataclasses.dataclass(frozen=True)
class TrainStep:
  """`(state, key) -> (state, metrics)` on the next training batch.

  `compiled` is the XLA executable (`compiled.cost_analysis()` gives its
  FLOPs, `benchmarks/train_step.py`); `next_data` gives its `data` argument
  for each step: the resident training split, or the next streamed batch.
  """

  compiled: jax.stages.Compiled
  next_data: Callable[[], Batch]

  def __call__(
    self, state: steps.TrainState, key: jax.Array
  ) -> tuple[steps.TrainState, dict[str, jax.Array]]:
    return self.compiled(state, self.next_data(), key)


class Feed(Protocol):
  """Training and evaluation data, as the compiled steps take them."""

  steps_per_epoch: int

  def compile_train_step(
    self, task: Task, state: steps.TrainState, key: jax.Array
  ) -> TrainStep:
    """`(state, key) -> (state, metrics)` on the next training batch."""

  def eval_batches(self) -> Iterator[Batch]:
    """One pass over the eval split as global arrays sharded over the mesh;
    padding examples have `weight` 0."""


def device_put_sharded(mesh: jax.sharding.Mesh, arrays: Arrays) -> Batch:
  """Process-local numpy arrays -> global arrays sharded on their axis 0."""
  sharding = jax.NamedSharding(mesh, jax.P(steps.AXIS))
  return {
    name: jax.make_array_from_process_local_data(sharding, x)
    for name, x in arrays.items()
  }


def _check_train_size(per_device: int, local_batch: int) -> None:
  if per_device < local_batch:
    raise UserError(
      f"Each device holds {per_device} training examples but needs "
      f"{local_batch} per step: the global batch size is larger than the "
      f"training set{' shard' if jax.process_count() > 1 else ''}. Lower "
      "--config.batch_size or use more data (dataset.max_train_examples)."
    )


def _pad(arrays: Arrays, multiple: int) -> Arrays:
  """Pads arrays (with a `weight`) to a multiple of `multiple` rows with
  weight-0 rows."""
  pad = -len(arrays["weight"]) % multiple
  return {
    name: np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    for name, x in arrays.items()
  }


class InMemoryFeed:
  """The dataset resident in device memory; batches drawn inside the step."""

  def __init__(
    self,
    mesh: jax.sharding.Mesh,
    dataset: Dataset,
    config: ml_collections.ConfigDict,
  ):
    num_local_devices = jax.local_device_count()
    self._local_batch = config.batch_size // jax.device_count()
    self._local_eval_batch = config.eval_batch_size // jax.device_count()
    num_local = len(next(iter(dataset.train.values())))
    per_device = num_local // num_local_devices
    _check_train_size(per_device, self._local_batch)
    self.steps_per_epoch = per_device // self._local_batch
    self._mesh = mesh
    self._train = device_put_sharded(
      mesh,
      {
        k: v[: per_device * num_local_devices] for k, v in dataset.train.items()
      },
    )
    self._eval = device_put_sharded(
      mesh, _pad(dataset.eval, num_local_devices * self._local_eval_batch)
    )

  def compile_train_step(
    self, task: Task, state: steps.TrainState, key: jax.Array
  ) -> TrainStep:
    compiled = (
      steps.compile_train_step(
        self._mesh,
        task=task,
        steps_per_epoch=self.steps_per_epoch,
        local_batch_size=self._local_batch,
      )
      .lower(state, self._train, key)
      .compile()
    )
    return TrainStep(compiled, lambda: self._train)

  def eval_batches(self) -> Iterator[Batch]:
    yield self._eval


class StreamedFeed:
  """Host-side batches from `dataset.stream`, one global batch per step.

  A resumed run reshuffles the stream with a seed derived from (seed, step)
  rather than replaying it to the exact position (which for ImageNet would
  mean reading every earlier example again).
  """

  def __init__(
    self,
    mesh: jax.sharding.Mesh,
    dataset: Dataset,
    config: ml_collections.ConfigDict,
    *,
    first_step: int,
  ):
    per_device = dataset.info.num_train // jax.device_count()
    _check_train_size(per_device, config.batch_size // jax.device_count())
    self.steps_per_epoch = per_device // (
      config.batch_size // jax.device_count()
    )
    self._mesh = mesh
    self._stream = dataset.stream
    self._local_eval_batch = config.eval_batch_size // jax.process_count()
    seed = int(
      np.random.SeedSequence([config.seed, first_step]).generate_state(1)[0]
    )
    batches = self._stream.train_batches(
      config.batch_size // jax.process_count(), seed
    )
    self._train = map(functools.partial(device_put_sharded, mesh), batches)

  def compile_train_step(
    self, task: Task, state: steps.TrainState, key: jax.Array
  ) -> TrainStep:
    first_batch = next(self._train)  # Compiled for, then trained on first.
    compiled = (
      steps.compile_train_step(
        self._mesh, task=task, steps_per_epoch=None, local_batch_size=0
      )
      .lower(state, first_batch, key)
      .compile()
    )
    batches = itertools.chain([first_batch], self._train)
    return TrainStep(compiled, functools.partial(next, batches))

  def eval_batches(self) -> Iterator[Batch]:
    for batch in self._stream.eval_batches(self._local_eval_batch):
      yield device_put_sharded(self._mesh, batch)


def make_feed(
  mesh: jax.sharding.Mesh,
  dataset: Dataset,
  config: ml_collections.ConfigDict,
  *,
  first_step: int,
) -> Feed:
  """`StreamedFeed` when the dataset streams, else `InMemoryFeed`."""
  if dataset.stream is not None:
    return StreamedFeed(mesh, dataset, config, first_step=first_step)
  return InMemoryFeed(mesh, dataset, config)
