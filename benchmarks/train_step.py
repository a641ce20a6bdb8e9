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
from typing import Any

from absl import app, flags
import jax
import ml_collections
from ml_collections import config_flags

from benchmarks import workloads
from mimetic_jax import cli
from mimetic_jax import config as config_lib
from mimetic_jax.errors import UserError

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
  dataset = workloads.synthetic_dataset(config)
  no_augment = config.copy_and_resolve_references()
  no_augment.augment.update(workloads.NO_AUGMENT)

  runs = {}
  runs["project"], project = workloads.project_step(config, dataset)
  if compile_only:
    runs, plain = {}, project | dict(flops_per_image=None)
  else:
    runs["no_augment"], plain = workloads.project_step(no_augment, dataset)
    runs["input"] = workloads.input_path(config, dataset)
  for run in runs.values():  # Before torch allocates anything.
    run()
  peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  torch_note = "not run (--notorch)"
  if torch and not compile_only:
    try:
      runs["torch"] = workloads.torch_step(
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
  rates = workloads.interleaved_rates(
    runs, config.batch_size, steps=steps, repeats=repeats
  )
  rate = rates.get  # None for what was not timed (--compile_only, torch).
  peak = None
  if not compile_only:
    peak = workloads.matmul_peak_flops(config.model.dtype)
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
