r"""Training-step speed: the project against timm/PyTorch and the machine.

    python -m benchmarks.train_step --config configs/cifar10.py:cpu \
        --json /tmp/train_step.json [--config.KEY=VALUE ...]

One process measures, for the ViT of an image config (warm-up excluded;
medians over `--repeats` rounds, each timing `--steps` calls of every
variant in turn, so that a shared machine's slow spells hit all alike):

* `project_img_per_s`: the trainer's own compiled step (`feeds.make_feed`,
  `models.init.init_params`, `optim.make_optimizer`: what `main.py` runs),
  augmentation as configured; `project_img_per_s_no_augment` with every
  augmentation off, and `augment_share` = 1 - the ratio of the two.
* `torch_img_per_s`: timm's `VisionTransformer` of the same architecture
  (`timm_port.timm_vit`; exact-erf GELU, timm's fused attention), same batch,
  `torch.optim.AdamW`, as many threads as XLA uses; `ratio` =
  project_no_augment / torch. Needs the `reference` extra
  (`pip install -e '.[reference]'`); without it these fields are null and
  the report says why.
* `model_flops_per_image`: XLA's cost analysis of the compiled step without
  augmentation, per image of the per-device batch; `matmul_peak_flops`: the
  best rate of a large float32 `jnp.matmul` on the same device;
  `mfu` = project_no_augment * model_flops_per_image / matmul_peak_flops.
* `input_items_per_s`: what the data path alone delivers (the in-step batch
  gather and augmentation, compiled on their own) against the step's
  consumption (`input_over_consumption`).
* `compile_s` (the step as configured), `compiled_temp_bytes` (XLA's
  scratch allocation for it, `memory_analysis()`), `peak_host_memory_bytes`
  (the process's peak resident memory after the project's measurements,
  before torch is imported).

Data are random uint8 images of the configured size and
`dataset.max_train_examples` (else 16 batches) rows, resident in memory as
the trainer keeps CIFAR: the step's cost does not depend on pixel values, and
the benchmark needs no dataset. `benchmarks/README.md` has the last report.
"""

from collections.abc import Callable
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from mimetic_jax import cli, feeds, optim, steps, tasks, train
from mimetic_jax import config as config_lib
from mimetic_jax.data import Dataset, DatasetInfo
from mimetic_jax.errors import UserError
from mimetic_jax.models import factory

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Image config, e.g. configs/cifar10.py:cpu."
)
_JSON = flags.DEFINE_string("json", None, "Write the report here as JSON.")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per timed repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (medians).")
_TORCH = flags.DEFINE_boolean(
  "torch", True, "Also time timm/PyTorch (needs the `reference` extra)."
)
_COMPILE_ONLY = flags.DEFINE_boolean(
  "compile_only",
  False,
  "Only compile the step: compile_s and compiled_temp_bytes (what the step "
  "needs beyond params and data), e.g. to check a batch fits before a run.",
)
flags.mark_flags_as_required(["config"])

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
) -> tuple[Callable[[], None], dict[str, float]]:
  """The trainer's compiled step as a blocking call, and its compile
  seconds, FLOPs per image and XLA scratch bytes."""
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


def machine() -> dict[str, Any]:
  cpu = platform.processor()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      names = [
        line.split(":", 1)[1].strip() for line in f if "model name" in line
      ]
    cpu = names[0] if names else cpu
  return dict(
    cpu=cpu,
    cores=len(os.sched_getaffinity(0)),
    device=f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    python=platform.python_version(),
    jax=jax.__version__,
    xla_flags=os.environ.get("XLA_FLAGS", ""),
  )


def benchmark(
  config: ml_collections.ConfigDict,
  *,
  steps: int,
  repeats: int,
  torch: bool,
  compile_only: bool = False,
) -> dict[str, Any]:
  """The report (see the module docstring) for the ViT `config` describes;
  `compile_only`: only what compiling the step tells (the rest is None)."""
  if config.task != "image":
    raise UserError(
      f"benchmarks.train_step times the ViT of an image config; got "
      f"task={config.task!r}. Use e.g. --config configs/cifar10.py:cpu."
    )
  config_lib.validate(config)
  dataset = synthetic_dataset(config)
  no_augment = config.copy_and_resolve_references()
  no_augment.augment.update(NO_AUGMENT)

  runs = {}
  runs["project"], project = project_step(config, dataset)
  if compile_only:
    runs, plain = {}, project | dict(flops_per_image=None)
  else:
    runs["no_augment"], plain = project_step(no_augment, dataset)
    runs["input"] = input_path(config, dataset)
  for run in runs.values():  # Before torch allocates anything.
    run()
  peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  torch_note = "not run (--notorch)"
  if torch and not compile_only:
    try:
      runs["torch"] = torch_step(
        config, dataset.info, len(os.sched_getaffinity(0))
      )
      import torch as torch_lib  # pylint: disable=g-import-not-at-top

      torch_note = (
        f"torch {torch_lib.__version__}, {torch_lib.get_num_threads()} threads"
      )
    except ImportError as e:
      torch_note = (
        f"not run: {e}. Install the reference extra: "
        "pip install -e '.[reference]'"
      )
  rates = interleaved_rates(
    runs, config.batch_size, steps=steps, repeats=repeats
  )
  rate = rates.get  # None for what was not timed (--compile_only, torch).
  peak = None if compile_only else matmul_peak_flops(config.model.dtype)
  return dict(
    config=dict(
      model={
        k: config.model[k]
        for k in (
          "variant",
          "width",
          "depth",
          "mlp_dim",
          "num_heads",
          "patch_size",
          "dtype",
        )
      },
      batch_size=config.batch_size,
      image_size=config.dataset.image_size,
      augment=config.augment.to_dict(),
      steps=steps,
      repeats=repeats,
    ),
    machine=machine(),
    project_img_per_s=rate("project"),
    project_img_per_s_no_augment=rate("no_augment"),
    augment_share=_maybe(lambda: 1 - rate("project") / rate("no_augment")),
    model_flops_per_image=plain["flops_per_image"],
    matmul_peak_flops=peak,
    mfu=_maybe(lambda: rate("no_augment") * plain["flops_per_image"] / peak),
    input_items_per_s=rate("input"),
    input_over_consumption=_maybe(lambda: rate("input") / rate("project")),
    compile_s=project["compile_s"],
    compiled_temp_bytes=project["temp_bytes"],
    peak_host_memory_bytes=peak_memory,
    torch_img_per_s=rate("torch"),
    ratio=_maybe(lambda: rate("no_augment") / rate("torch")),
    torch_note=torch_note,
  )


def _maybe(derived: Callable[[], float]) -> float | None:
  """A derived number, or None where one of its inputs was not measured."""
  try:
    return derived()
  except TypeError:  # None in the arithmetic.
    return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  report = benchmark(
    _CONFIG.value,
    steps=_STEPS.value,
    repeats=_REPEATS.value,
    torch=_TORCH.value,
    compile_only=_COMPILE_ONLY.value,
  )
  text = json.dumps(report, indent=2)
  print(text)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  cli.run(main)
