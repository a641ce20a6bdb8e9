"""What the pictures are drawn from: a fresh init or a trainer workdir.

A `Source` is a model, its params and a one-line description of where they
came from (for figure titles and summary.json).
"""

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mimetic_jax import checkpointing
from mimetic_jax import models
from mimetic_jax import tasks
from mimetic_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Source:
  """A model and its params, and where they came from."""
  config: ml_collections.ConfigDict
  model: nn.Module
  params: Any
  description: str  # One line for titles and summary.json.
  init: str | None = None  # Fresh inits only.
  step: int | None = None  # Checkpoints only.


def _make_model(config: ml_collections.ConfigDict,
                info: dict[str, Any]) -> nn.Module:
  task = tasks.get_task(config)
  return task.make_model(tasks.Data(train={}, eval={}, info=info))


def _dummy_inputs(config: ml_collections.ConfigDict) -> jax.Array:
  """One zero example of the model's input: an image or a token window."""
  if config.task == "image":
    size = config.dataset.image_size
    return jnp.zeros((1, size, size, 3), jnp.float32)
  return jnp.zeros((1, config.seq_len), jnp.int32)


def fresh_source(config: ml_collections.ConfigDict, *, init: str | None = None,
                 seed: int | None = None) -> Source:
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
  from mimetic_jax import train  # pylint: disable=g-import-not-at-top
  init = config.init if init is None else init
  seed = config.seed if seed is None else seed
  if init not in models.INITS:
    raise UserError(f"init={init!r} is not one of {models.INITS}.")
  if config.task == "image":
    info = {"num_classes": 0}
  else:
    byte = config.dataset.get("tokenizer", "byte") == "byte"
    info = {"vocab_size": 256 if byte else config.dataset.vocab_size}
  model = _make_model(config, info)
  kwargs = {}
  if init == "mimetic":
    kwargs = dict(
        qk=train.parse_strength(config.mimetic.qk, "mimetic.qk"),
        vo=train.parse_strength(config.mimetic.vo, "mimetic.vo"),
        distribution=config.mimetic.distribution)
    if kwargs["qk"] is None and kwargs["vo"] is None:
      raise UserError("init='mimetic' with mimetic.qk=None and "
                      "mimetic.vo=None changes nothing; set one of them.")
  key = jax.random.fold_in(jax.random.key(seed), 0)
  params = jax.jit(lambda k: models.initialize(
      model, k, _dummy_inputs(config), init=init, **kwargs))(key)
  return Source(config=config, model=model, params=params, init=init,
                description=f"fresh init={init!r}, seed {seed}")


def _workdir_hint(workdir: str) -> str:
  return (f"Train into it with `python main.py --config configs/cifar10.py "
          f"--workdir {workdir}` (or the config you mean), or draw a fresh "
          "initialization instead with `python -m mimetic_jax.pictures "
          "--config configs/cifar10.py --init mimetic --out DIR`.")


def workdir_source(workdir: str, step: int | None = None) -> Source:
  """The model and trained params of a trainer workdir (latest step unless
  `step` is given). The model is rebuilt from `config.json`, its number of
  classes (or vocabulary size) read from the checkpoint's params."""
  hint = _workdir_hint(workdir)
  config = checkpointing.load_saved_config(workdir, hint=hint)
  params, step = checkpointing.restore_params(workdir, step, hint=hint)
  if config.task == "image":
    head = params.get("head", {}).get("kernel")
    info = {"num_classes": 0 if head is None else int(head.shape[-1])}
  else:
    info = {"vocab_size": int(params["embed"]["embedding"].shape[0])}
  model = _make_model(config, info)
  expected = jax.eval_shape(model.init, jax.random.key(0),
                            _dummy_inputs(config))["params"]
  shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
  if shapes(expected) != shapes(params):
    raise UserError(
        f"The checkpoint at step {step} in {workdir} does not fit the model "
        f"its config.json describes (params shapes differ: "
        f"{shapes(params)} vs {shapes(expected)}). Was config.json edited "
        "or copied from another run?")
  return Source(config=config, model=model, params=params, step=step,
                description=f"{os.path.abspath(workdir)}, step {step}")
