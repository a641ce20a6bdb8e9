"""Checks of a resolved config that fail before any data is loaded or compiled.

The config files (`configs/*.py`) say what a run is; this module says whether
it can run, with a one-paragraph `UserError` naming the key and the fix.
"""

import jax
import ml_collections

from mimetic_jax.errors import UserError
from mimetic_jax.models.factory import TASKS, remat_policy, vit_architecture
from mimetic_jax.models.init import INITS, mimetic_strengths


def _check_architecture(config: ml_collections.ConfigDict) -> None:
  """Heads that split the width; for a ViT, patches that tile the image."""
  if config.task == "image":
    arch = vit_architecture(config.model)
    size, patch = config.dataset.image_size, arch["patch_size"]
    if patch <= 0 or size % patch:
      raise UserError(
        f"The patch size {patch} (model.patch_size, or model.variant="
        f"{config.model.variant!r}) does not tile dataset.image_size={size}: "
        "the ViT cuts the image into whole patches. Pick a patch size that "
        f"divides {size}, or resize the images (dataset.image_size)."
      )
  else:
    arch = dict(width=config.model.width, num_heads=config.model.num_heads)
  width, heads = arch["width"], arch["num_heads"]
  if heads <= 0 or width <= 0 or width % heads:
    raise UserError(
      f"model.num_heads={heads} must divide model.width={width} (each head "
      "gets width / num_heads channels)."
    )


def validate(config: ml_collections.ConfigDict) -> None:
  """Cheap checks that fail before any data is loaded or compiled."""
  devices = jax.device_count()
  if config.init not in INITS:
    raise UserError(
      f"init={config.init!r} is not one of {INITS}; set "
      "--config.init=mimetic (or default / trunc_normal)."
    )
  if config.init == "mimetic":
    mimetic_strengths(config)
  if config.task not in TASKS:
    raise UserError(
      f"task={config.task!r} is not one of {TASKS}; start "
      "from a config in configs/."
    )
  _check_architecture(config)
  remat_policy(config.model)
  for name in ("batch_size", "eval_batch_size"):
    size = config[name]
    if size <= 0 or size % devices:
      raise UserError(
        f"{name}={size} is the global batch size and must be a positive "
        f"multiple of the {devices} devices JAX sees ({jax.devices()[0]}"
        f" ...), so that each gets the same share. Use e.g. --config."
        f"{name}={max(devices, size // devices * devices or devices)}."
      )
  if config.total_steps < 0 or config.num_epochs < 0:
    raise UserError(
      f"total_steps={config.total_steps} and num_epochs={config.num_epochs} "
      "must not be negative: total_steps > 0 sets the run's length in "
      "steps, else num_epochs > 0 sets it in epochs."
    )
  if config.total_steps == 0 and config.num_epochs == 0:
    raise UserError("Set num_epochs > 0 or total_steps > 0.")
  if config.adam_eps <= 0:
    raise UserError(
      f"adam_eps={config.adam_eps} must be > 0 (AdamW's "
      "epsilon; 1e-8 by default)."
    )
  if config.learning_rate <= 0:
    raise UserError(f"learning_rate={config.learning_rate} must be > 0.")
  attention = config.model.get("attention", "auto")
  if attention not in ("auto", "xla", "cudnn"):
    raise UserError(
      f"model.attention={attention!r} must be 'auto' (JAX picks cuDNN flash "
      "attention where it applies, else XLA), 'xla' or 'cudnn'."
    )
