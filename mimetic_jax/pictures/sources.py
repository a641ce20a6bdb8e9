"""What the pictures are drawn from: a fresh init or a trainer workdir.

A `Source` is a model, its params and a one-line description of where they
came from (for figure titles and summary.json).
"""

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from mimetic_jax import workdir as workdir_lib
from mimetic_jax.data import DatasetInfo
from mimetic_jax.models import factory
from mimetic_jax.models import init as init_lib


@dataclasses.dataclass(frozen=True)
class Source:
  """A model and its params, and where they came from."""

  config: ml_collections.ConfigDict
  model: nn.Module
  params: Any
  description: str  # One line for titles and summary.json.
  init: str | None = None  # Fresh inits only.
  step: int | None = None  # Checkpoints only.


def fresh_source(
  config: ml_collections.ConfigDict,
  *,
  init: str | None = None,
  seed: int | None = None,
) -> Source:
  """The params the trainer would start from for `config`.

  Args:
    config: a trainer config (image or LM task).
    init: 'default', 'mimetic' or 'trunc_normal'; None = `config.init`.
      Mimetic strengths and noise come from `config.mimetic`.
    seed: None = `config.seed`. The init key is the trainer's
      (`fold_in(key(seed), 0)`), so the attention params equal the trainer's
      step-0 params. No data is loaded: an image model is built without its
      (zero-initialized) classification head, a language model with
      `dataset.vocab_size` (256 for bytes) token embeddings.
  """
  init = config.init if init is None else init
  seed = config.seed if seed is None else seed
  if config.task == "image":
    info = DatasetInfo(num_classes=0)
  else:
    byte = config.dataset.get("tokenizer", "byte") == "byte"
    info = DatasetInfo(vocab_size=256 if byte else config.dataset.vocab_size)
  model = factory.make_model(config, info)
  params = jax.jit(
    lambda: init_lib.init_params(
      config, model, factory.dummy_inputs(config, info), init=init, seed=seed
    )
  )()
  return Source(
    config=config,
    model=model,
    params=params,
    init=init,
    description=f"fresh init={init!r}, seed {seed}",
  )


def _workdir_hint(workdir: str) -> str:
  return (
    f"Train into it with `python main.py --config configs/cifar10.py "
    f"--workdir {workdir}` (or the config you mean), or draw a fresh "
    "initialization instead with `python -m mimetic_jax.pictures "
    "--config configs/cifar10.py --init mimetic --out DIR`."
  )


def workdir_source(workdir: str, step: int | None = None) -> Source:
  """The model and trained params of a trainer workdir (latest step unless
  `step` is given). The model is rebuilt from `config.json`, its number of
  classes (or vocabulary size) read from the checkpoint's params."""
  trained = workdir_lib.load_model(workdir, step, hint=_workdir_hint(workdir))
  config, model, params, step = (
    trained.config,
    trained.model,
    trained.params,
    trained.step,
  )
  return Source(
    config=config,
    model=model,
    params=params,
    step=step,
    description=f"{os.path.abspath(workdir)}, step {step}",
  )
