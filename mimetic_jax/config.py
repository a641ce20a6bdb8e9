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
    if arch["mlp_dim"] <= 0:
      raise UserError(
        f"model.mlp_dim={arch['mlp_dim']} must be > 0 for a ViT (the hidden "
        "width of each block's MLP; 4 x width is usual)."
      )
  else:
    arch = dict(width=config.model.width, num_heads=config.model.num_heads)
  width, heads = arch["width"], arch["num_heads"]
  if heads <= 0 or width <= 0 or width % heads:
    raise UserError(
      f"model.num_heads={heads} must divide model.width={width} (each head "
      "gets width / num_heads channels)."
    )


_UNIT = "in [0, 1)"
# (dotted key, test, what it must be): checked when the config has the key.
_VALUE_RULES = (
  ("warmup_epochs", lambda v: v >= 0, ">= 0"),
  ("end_learning_rate", lambda v: v >= 0, ">= 0"),
  ("weight_decay", lambda v: v >= 0, ">= 0 (0 = none)"),
  ("b1", lambda v: 0 <= v < 1, _UNIT),
  ("b2", lambda v: 0 <= v < 1, _UNIT),
  ("grad_clip_norm", lambda v: v >= 0, ">= 0 (0 = no clipping)"),
  ("label_smoothing", lambda v: 0 <= v < 1, _UNIT),
  ("log_every_steps", lambda v: v >= 1, ">= 1"),
  ("eval_every_epochs", lambda v: v > 0, "> 0 (in epochs; may be a fraction)"),
  ("checkpoint_every_steps", lambda v: v >= 0, ">= 0 (0 = only at the end)"),
  ("max_to_keep", lambda v: v >= 1, ">= 1 (checkpoints kept)"),
  ("seq_len", lambda v: v >= 1, ">= 1 (tokens per window)"),
  ("model.depth", lambda v: v >= 1, ">= 1 (blocks)"),
  ("model.mlp_dim", lambda v: v >= 0, "> 0 (or 0 = 4 x width for the LM)"),
  ("model.dropout", lambda v: 0 <= v < 1, _UNIT),
  (
    "model.dtype",
    lambda v: v in ("float32", "bfloat16"),
    "'float32' or 'bfloat16'",
  ),
  ("model.pool", lambda v: v in ("token", "gap"), "'token' or 'gap'"),
  ("dataset.image_size", lambda v: v >= 1, ">= 1 (pixels)"),
  ("dataset.max_train_examples", lambda v: v >= 0, ">= 0 (0 = all)"),
  ("dataset.max_eval_examples", lambda v: v >= 0, ">= 0 (0 = all)"),
  (
    "dataset.value_range",
    lambda v: len(v) == 2 and v[0] < v[1],
    "a pair (low, high) with low < high",
  ),
  (
    "dataset.tokenizer",
    lambda v: v in ("byte", "sentencepiece"),
    "'byte' or 'sentencepiece'",
  ),
  ("dataset.vocab_size", lambda v: v >= 16, ">= 16 (SentencePiece pieces)"),
  ("dataset.eval_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
  ("augment.crop_padding", lambda v: v >= 0, ">= 0 (0 = no random crop)"),
  ("augment.cutout_size", lambda v: v >= 0, ">= 0 (0 = no cutout)"),
  ("augment.randaugment_num_ops", lambda v: v >= 0, ">= 0 (0 = none)"),
  ("augment.randaugment_magnitude", lambda v: 0 <= v <= 10, "in [0, 10]"),
)


def _check_values(config: ml_collections.ConfigDict) -> None:
  """The `_VALUE_RULES` ranges and choices, for the keys `config` has."""
  for key, is_valid, requirement in _VALUE_RULES:
    node, *path = key.split(".")
    value = config.get(node)
    for name in path:
      value = (
        value.get(name)
        if isinstance(value, ml_collections.ConfigDict)
        else None
      )
    if value is None:
      continue
    try:
      valid = is_valid(value)
    except TypeError:  # E.g. a pair given as a number.
      valid = False
    if not valid:
      raise UserError(
        f"{key}={value!r} is out of range: it must be {requirement}. Set "
        f"--config.{key}=... accordingly (configs/image_base.py and "
        "configs/lm_base.py document every key)."
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
  _check_values(config)
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
