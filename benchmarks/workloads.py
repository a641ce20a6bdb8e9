"""What the speed benchmarks run, each as a blocking call.

`project_step`: the trainer's own compiled step (`feeds`, `models.init`,
`optim`: what `main.py` runs) on `synthetic_dataset`; `input_path`: its
in-memory data path alone; `torch_step`: timm's ViT of the same architecture
with `torch.optim.AdamW`; `matmul_peak_flops`: the device's matmul rate;
`interleaved_rates` times several of them fairly on a shared machine. Used
by `benchmarks.train_step` and `benchmarks.profile_step`.
"""

from collections.abc import Callable
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mimetic_jax import feeds, optim, steps, tasks, train
from mimetic_jax.data import Dataset, DatasetInfo
from mimetic_jax.models import factory

NO_AUGMENT = dict(
  crop_padding=0, flip=False, randaugment_num_ops=0, cutout_size=0
)


def synthetic_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """Random uint8 images and labels of the configured shapes."""
  rng = np.random.default_rng(0)
  num_train = config.dataset.max_train_examples or 16 * config.batch_size
  size = config.dataset.image_size
  num_classes = 10
  images = lambda n: rng.integers(0, 256, (n, size, size, 3), np.uint8)
  labels = lambda n: rng.integers(0, num_classes, (n,), np.int32)
  n_eval = config.eval_batch_size
  return Dataset(
    info=DatasetInfo(
      num_train=num_train, num_eval=n_eval, num_classes=num_classes
    ),
    train={"image": images(num_train), "label": labels(num_train)},
    eval={
      "image": images(n_eval),
      "label": labels(n_eval),
      "weight": np.ones(n_eval, np.float32),
    },
  )


def interleaved_rates(
  runs: dict[str, Callable[[], Any]], items: int, *, steps: int, repeats: int
) -> dict[str, float]:
  """Median items/s of each of `runs` (calls that block until done): two
  warm-up calls each, then `repeats` rounds in which each makes `steps`
  calls in turn, so that a shared machine's slow spells hit all alike."""
  for run in runs.values():
    for _ in range(2):
      run()
  rates = {name: [] for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      tic = time.perf_counter()
      for _ in range(steps):
        run()
      rates[name].append(items * steps / (time.perf_counter() - tic))
  return {name: statistics.median(r) for name, r in rates.items()}


def project_step(
  config: ml_collections.ConfigDict, dataset: Dataset
) -> tuple[Callable[[], None], dict[str, Any]]:
  """The trainer's compiled step as a blocking call, and its compile
  seconds, FLOPs per image, XLA scratch bytes and executable (`compiled`)."""
  mesh = jax.make_mesh((jax.device_count(),), (steps.AXIS,))
  feed = feeds.make_feed(mesh, dataset, config, first_step=0)
  total_steps, warmup_steps = optim.step_budget(config, feed.steps_per_epoch)
  tx, _ = optim.make_optimizer(config, total_steps, warmup_steps)
  model = factory.make_model(config, dataset.info)
  state = jax.jit(
    train.state_initializer(config, model, dataset.info, tx),
    out_shardings=jax.NamedSharding(mesh, jax.P()),
  )()
  key = jax.random.key(config.seed)
  tic = time.perf_counter()
  train_step = feed.compile_train_step(tasks.get_task(config), state, key)
  compile_s = time.perf_counter() - tic

  def run_once():
    nonlocal state
    state, _ = train_step(state, key)
    jax.block_until_ready(state)

  cost = train_step.compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost  # Older jax: a list.
  local_batch = config.batch_size // jax.device_count()
  return run_once, dict(
    compile_s=compile_s,
    flops_per_image=cost["flops"] / local_batch,
    temp_bytes=train_step.compiled.memory_analysis().temp_size_in_bytes,
    compiled=train_step.compiled,
  )


def input_path(
  config: ml_collections.ConfigDict, dataset: Dataset
) -> Callable[[], None]:
  """The in-memory data path on its own, as a blocking call: the step's
  batch gather (`steps.sample_batch`) and `task.inputs` (augmentation),
  compiled over the same mesh."""
  mesh = jax.make_mesh((jax.device_count(),), (steps.AXIS,))
  train_data = feeds.device_put_sharded(mesh, dataset.train)
  task = tasks.get_task(config)
  local_batch = config.batch_size // jax.device_count()

  def inputs(train_data, step, key):
    batch = steps.sample_batch(
      train_data,
      step,
      key,
      steps_per_epoch=dataset.info.num_train // config.batch_size,
      local_batch_size=local_batch,
    )
    return task.inputs(batch, key, train=True)

  P = jax.P
  deliver = steps.shard_map_over(
    mesh, inputs, in_specs=(P(steps.AXIS), P(), P()), out_specs=P(steps.AXIS)
  )
  step, key = jnp.zeros((), jnp.int32), jax.random.key(0)
  return lambda: jax.block_until_ready(deliver(train_data, step, key))


def matmul_peak_flops(dtype: str, n: int = 2048, repeats: int = 10) -> float:
  """The best FLOP/s of an `(n, n) @ (n, n)` matmul on the default device."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, a))
  best = float("inf")
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(matmul(a, a))
    best = min(best, time.perf_counter() - tic)
  return 2 * n**3 / best


def torch_step(
  config: ml_collections.ConfigDict, info: DatasetInfo, threads: int
) -> Callable[[], None]:
  """One training step of timm's ViT of the same architecture with
  `torch.optim.AdamW` on `threads` threads, as a blocking call. Raises
  ImportError without torch and timm."""
  sys.modules.setdefault("triton", None)  # Never needed on a CPU.
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  from mimetic_jax import timm_port  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  vit = timm_port.timm_vit(
    factory.make_model(config, info), config.dataset.image_size
  ).train()
  optimizer = torch.optim.AdamW(
    [p for p in vit.parameters() if p.requires_grad],
    lr=config.learning_rate,
    betas=(config.b1, config.b2),
    eps=config.adam_eps,
    weight_decay=config.weight_decay,
  )
  size = config.dataset.image_size
  images = torch.randn(config.batch_size, 3, size, size)
  labels = torch.randint(0, info.num_classes, (config.batch_size,))

  def run_once():
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(vit(images), labels).backward()
    optimizer.step()

  return run_once
