r"""Which part of the project's init decides how mimetic trains?

    python -m benchmarks.crosscheck.init_swap --workdir DIR \
        --dataset_path=../shared/data/cifar10-jpeg.tar.gz \
        [--variants=ported,ported+head,ported+patch,ported+mlp] [--seed 0]

Trains timm's ViT (`configs/cifar10.py:cpu` architecture and recipe) on the
cross-check's batches of `--seed`, starting from the project's mimetic init
ported in full (`ported`), or with some parts replaced by what timm's init
plus mimetic attention (the `timm_mimetic` run's init) gives them:
`head`, `patch` (patch embedding), `mlp` (MLP weights and biases), `cls`
(class token); join them with `+`. The attention weights are the project's
in every variant. One record per variant: `DIR/<variant>.json` (eval
accuracy on the full test split, train losses, gradient norms); finished
variants are skipped on a rerun.
"""

import json
import pathlib
import sys

from absl import flags

from mimetic_jax import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_DATASET_PATH = flags.DEFINE_string("dataset_path", "", "dataset.path.")
_VARIANTS = flags.DEFINE_string(
  "variants",
  "ported,ported+head,ported+patch,ported+mlp",
  "Comma-separated variants.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of batches and inits.")
flags.mark_flags_as_required(["workdir"])

SWAPS = {  # Part -> which timm parameters it names.
  "head": lambda name: name.startswith("head."),
  "patch": lambda name: name.startswith("patch_embed."),
  "mlp": lambda name: ".mlp." in name,
  "cls": lambda name: name == "cls_token",
}


def _parts(variant: str) -> list[str]:
  base, *parts = variant.split("+")
  if base != "ported" or any(p not in SWAPS for p in parts):
    sys.exit(
      f"Error: variant {variant!r} must be 'ported' optionally "
      f"followed by '+PART' with PART in {sorted(SWAPS)}."
    )
  return parts


def main(argv):
  del argv
  variants = {v: _parts(v) for v in _VARIANTS.value.split(",") if v}
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from benchmarks.crosscheck import project_side, timm_side  # pylint: disable=g-import-not-at-top
  from configs import cifar10  # pylint: disable=g-import-not-at-top
  from mimetic_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from mimetic_jax import optim, tasks, timm_port  # pylint: disable=g-import-not-at-top
  from mimetic_jax.models import factory  # pylint: disable=g-import-not-at-top

  workdir, seed = pathlib.Path(_WORKDIR.value), _SEED.value
  workdir.mkdir(parents=True, exist_ok=True)
  config = cifar10.get_config("cpu")
  config.dataset.path = _DATASET_PATH.value
  config.dataset.max_eval_examples = 0  # The full test split.
  task = tasks.get_task(config)
  data = data_lib.load(
    config, process_index=0, process_count=1, workdir=str(workdir)
  )
  steps_per_epoch = data.info.num_train // config.batch_size
  total_steps, warmup_steps = optim.step_budget(config, steps_per_epoch)
  batches, labels = project_side.make_batches(
    task, data, seed=seed, total_steps=total_steps, batch_size=config.batch_size
  )
  eval_data = project_side.eval_inputs(task, data)
  _, schedule = optim.make_optimizer(config, total_steps, warmup_steps)
  model = factory.make_model(config, data.info)
  params = jax.tree.map(
    np.asarray,
    project_side.init_params(
      model, init="mimetic", seed=seed, config=config, sample=batches[0]
    ),
  )

  for variant, parts in variants.items():
    path = workdir / f"{variant}.json"
    if path.exists():
      continue
    vit = timm_port.timm_vit(model, image_size=batches.shape[2])
    timm_port.load_params(vit, params)
    if parts:
      torch.manual_seed(seed)  # The timm_mimetic run's init.
      reference = timm_port.timm_vit(model, image_size=batches.shape[2])
      timm_side.mimetic_(
        reference,
        torch.Generator().manual_seed(seed),
        qk=tuple(config.mimetic.qk),
        vo=tuple(config.mimetic.vo),
      )
      reference = dict(reference.named_parameters())
      with torch.no_grad():
        for name, p in vit.named_parameters():
          if any(SWAPS[part](name) for part in parts):
            p.copy_(reference[name])
    record = timm_side.train(
      vit,
      batches,
      labels,
      config=config,
      grad_norm_steps=100,
      learning_rates=[float(schedule(i)) for i in range(total_steps)],
      log=lambda line, v=variant: print(f"[{v}] {line}", flush=True),
    )
    record.update(
      timm_side.evaluate(
        vit,
        *eval_data,
        batch_size=config.eval_batch_size,
        label_smoothing=config.label_smoothing,
      )
    )
    print(
      f"[{variant}] eval accuracy {record['eval_accuracy']:.4f}", flush=True
    )
    path.write_text(json.dumps({"variant": variant, "seed": seed, **record}))


if __name__ == "__main__":
  cli.run(main)
