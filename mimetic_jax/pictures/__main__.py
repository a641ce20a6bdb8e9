r"""`python -m mimetic_jax.pictures`: the pictures of a fresh init or a run.

    python -m mimetic_jax.pictures --config configs/cifar10.py --init mimetic \
        --out pictures/cifar10_mimetic --image cat.png
    python -m mimetic_jax.pictures --workdir workdirs/cifar10_mimetic_seed0 \
        --out pictures/trained [--step 9700] [--image cat.png]

Writes `qk.png`, `vo.png`, `products.png`, `summary.json` and, with `--image`
and an image model, `attention.png` into `--out` (see `make.make_pictures`).
Mimetic initialization shows a positive QK diagonal (~0.40 for ViT-Tiny: the
rank-64 cut of 0.7 Z + 0.7 I) and a negative VO diagonal (~ -0.40); the
default initialization shows neither.
"""

from collections.abc import Sequence
import json

from absl import app, flags, logging
from ml_collections import config_flags

from mimetic_jax import cli, models
from mimetic_jax.errors import UserError
from mimetic_jax.pictures import attention_maps, make, sources

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Trainer config for a fresh init, optionally with a "
  "preset: configs/cifar10.py:smoke. Exclusive with --workdir.",
  lock_config=False,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Trainer workdir (config.json + checkpoints/) to draw "
  "the trained params of. Exclusive with --config.",
)
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_INIT = flags.DEFINE_enum(
  "init", None, list(models.INITS), "Fresh init scheme; default: the config's."
)
_SEED = flags.DEFINE_integer(
  "seed", None, "Fresh init seed; default: the config's."
)
_STEP = flags.DEFINE_integer(
  "step", None, "Checkpoint step; default: the latest."
)
_IMAGE = flags.DEFINE_string(
  "image",
  None,
  "A JPEG/PNG to draw attention maps on (resized to the model's input).",
)
_CROP = flags.DEFINE_integer(
  "crop", 64, "Show the top-left crop x crop block of the products; 0 = all."
)
_LAYERS = flags.DEFINE_integer("layers", 4, "Layers in attention.png.")
_PER_HEAD = flags.DEFINE_boolean(
  "per_head", False, "Attention per head instead of averaged over heads."
)
_QUERY = flags.DEFINE_integer(
  "query",
  None,
  "Query patch index for attention.png; default: the centre patch.",
)
_CELL_PX = flags.DEFINE_integer("cell_px", 160, "Pixels per panel.")


def _source() -> sources.Source:
  """The source the flags name: a fresh init or a trainer workdir."""
  if (_CONFIG.value is None) == (_WORKDIR.value is None):
    raise UserError(
      "Give exactly one source: --config CONFIG [--init mimetic] for a "
      "fresh initialization, or --workdir WORKDIR for a trained run."
    )
  if _WORKDIR.value is not None:
    if _INIT.value is not None or _SEED.value is not None:
      raise UserError(
        "--init and --seed choose a fresh init and go with "
        "--config, not --workdir."
      )
    return sources.workdir_source(_WORKDIR.value, _STEP.value)
  if _STEP.value is not None:
    raise UserError(
      "--step picks a checkpoint and goes with --workdir, not --config."
    )
  return sources.fresh_source(_CONFIG.value, init=_INIT.value, seed=_SEED.value)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  source = _source()
  image = None
  if _IMAGE.value and source.config.task != "image":
    print(
      "Note: attention maps need an image model; this source is a "
      f"{source.config.task!r} model, so --image is ignored."
    )
  elif _IMAGE.value:
    image = attention_maps.load_image(
      _IMAGE.value, source.config.dataset.image_size
    )
  print(f"Source: {source.description}", flush=True)
  written = make.make_pictures(
    source,
    _OUT.value,
    image=image,
    image_path=_IMAGE.value,
    crop=_CROP.value or None,
    attention_layers=_LAYERS.value,
    per_head=_PER_HEAD.value,
    query=_QUERY.value,
    cell_px=_CELL_PX.value,
  )
  with open(written["summary"]) as f:
    mean = json.load(f)["mean"]
  print(
    "Mean over layers: " + ", ".join(f"{k} {v:+.4f}" for k, v in mean.items())
  )
  for path in written.values():
    print(f"Wrote {path}")


if __name__ == "__main__":
  logging.set_verbosity(logging.WARNING)
  cli.run(main)
