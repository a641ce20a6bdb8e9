"""A trainer workdir: where it is, the config saved in it, the model in it.

`main.py` writes `config.json`, `checkpoints/`, `metrics.jsonl` and
`final_metrics.json` into a workdir; `load_model` rebuilds the model and its
trained params from one (for `pictures` and `sampling`), reading only the
params of a checkpoint.
"""

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
from flax.traverse_util import flatten_dict
import jax
import ml_collections

from mimetic_jax import checkpointing
from mimetic_jax.data import DatasetInfo
from mimetic_jax.errors import UserError
from mimetic_jax.models import factory


def default_workdir(config_path: str, config: ml_collections.ConfigDict) -> str:
  """`workdirs/<config>[_<preset>]_<init>_seed<seed>`, e.g.
  `workdirs/cifar10_smoke_mimetic_seed0`."""
  path, _, preset = config_path.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  parts = (
    [name] + ([preset] if preset else []) + [config.init, f"seed{config.seed}"]
  )
  return os.path.join("workdirs", "_".join(parts))


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes the resolved config as `workdir/config.json` (creating the
  workdir); a workdir that cannot be written is a `UserError`."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  except OSError as e:
    raise UserError(
      f"Cannot write to the workdir {workdir} ({e.strerror or e}: "
      f"{e.filename or workdir}). It holds the run's config, checkpoints "
      "and metrics: pass a --workdir on a writable disk with free space."
    ) from None


def load_config(workdir: str, *, hint: str = "") -> ml_collections.ConfigDict:
  """The resolved config the trainer saved as `workdir/config.json`.

  Raises:
    UserError: no config.json; `hint` (how to make one) is appended.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise UserError(
      f"{path} does not exist, so {workdir} is not a trainer workdir: "
      "main.py writes config.json there when a run starts, and "
      f"checkpoints/ as it trains. {hint}".rstrip()
    )
  with open(path) as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise UserError(
        f"{path} is not valid JSON ({e}); it was damaged after main.py "
        "wrote it. Restore it from the run's command line (rerunning "
        "main.py with the same flags rewrites it) or from a backup."
      ) from None


def saved_config(workdir: str) -> ml_collections.ConfigDict | None:
  """`workdir/config.json` if a run saved one there, else None."""
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    return None
  return load_config(workdir)


def config_changes(
  saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> list[str]:
  """`'key: old -> new'` for every dotted key whose value differs between
  the `saved` config (a workdir's config.json) and `config`, sorted."""
  flat = lambda c: flatten_dict(json.loads(c.to_json_best_effort()), sep=".")
  old, new = flat(saved), flat(config)
  return sorted(
    f"{key}: {old.get(key, 'unset')!r} -> {new.get(key, 'unset')!r}"
    for key in old.keys() | new.keys()
    if key not in old or key not in new or old[key] != new[key]
  )


def info_from_params(
  config: ml_collections.ConfigDict, params: Any
) -> DatasetInfo:
  """The dataset facts a model's shapes depend on, read off its params:
  classes and image channels (ViT), or vocabulary size (LM)."""
  if config.task == "lm":
    return DatasetInfo(vocab_size=int(params["embed"]["embedding"].shape[0]))
  head = params.get("head", {}).get("kernel")
  return DatasetInfo(
    num_classes=0 if head is None else int(head.shape[-1]),
    image_channels=int(params["embedding"]["kernel"].shape[2]),
  )


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A workdir's config, rebuilt model and trained params at `step`."""

  config: ml_collections.ConfigDict
  model: nn.Module
  params: Any
  step: int


def load_model(
  workdir: str,
  step: int | None = None,
  *,
  device: jax.Device | None = None,
  hint: str = "",
) -> TrainedModel:
  """Rebuilds the model of `workdir` from its `config.json` and reads the
  params of checkpoint `step` (None = the latest) onto `device`.

  Raises:
    UserError: no config or checkpoint (`hint` says how to make one), or a
      checkpoint that does not fit the model the config describes.
  """
  config = load_config(workdir, hint=hint)
  params, step = checkpointing.restore_params(
    workdir, step, device=device, hint=hint
  )
  info = info_from_params(config, params)
  model = factory.make_model(config, info)
  expected = jax.eval_shape(
    model.init, jax.random.key(0), factory.dummy_inputs(config, info)
  )["params"]
  shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
  if shapes(expected) != shapes(params):
    raise UserError(
      f"The checkpoint at step {step} in {workdir} does not fit the model "
      f"its config.json describes (params shapes differ: "
      f"{shapes(params)} vs {shapes(expected)}). Was config.json edited "
      "or copied from another run?"
    )
  return TrainedModel(config=config, model=model, params=params, step=step)
