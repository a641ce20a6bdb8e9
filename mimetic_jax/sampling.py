"""Text generation from a trained causal LM.

`generate` is a pure function of an `apply_fn`, its params, the prompt and a
key: it samples one token at a time with a jitted step over a fixed-size
context window of `seq_len` tokens, sliding the window once the text is
longer than the model's context (so the step compiles once). `load_run`
rebuilds the tokenizer, the `TransformerLM` and its trained params from a
trainer workdir (`config.json` + `checkpoints/`); `sample.py` at the repo
root is the command-line front end.
"""

from collections.abc import Callable
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mimetic_jax import workdir as workdir_lib
from mimetic_jax.data import tokenizers
from mimetic_jax.errors import UserError

# (params, tokens int32 (batch, length)) -> logits float (batch, length, vocab).
ApplyFn = Callable[[Any, jax.Array], jax.Array]


def sample_logits(
  logits: jax.Array, key: jax.Array, *, temperature: float, top_k: int
) -> jax.Array:
  """Draws one token id from `logits` (vocab,); returns an int32 scalar.

  `temperature == 0` is greedy (argmax); `top_k > 0` keeps only the `top_k`
  most likely ids (ties at the threshold are kept) before sampling.
  """
  if temperature == 0:
    return jnp.argmax(logits).astype(jnp.int32)
  logits = logits.astype(jnp.float32) / temperature
  if 0 < top_k < logits.shape[-1]:
    threshold = jax.lax.top_k(logits, top_k)[0][-1]
    logits = jnp.where(logits < threshold, -jnp.inf, logits)
  return jax.random.categorical(key, logits).astype(jnp.int32)


def _step(
  apply_fn: ApplyFn,
  params: Any,
  window: jax.Array,
  length: jax.Array,
  key: jax.Array,
  *,
  temperature: float,
  top_k: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Samples the token after `window[:length]` and appends it.

  Args:
    window: int32 (seq_len,); the context is its first `length` tokens, the
      rest is padding that causal attention never lets the context see.
    length: int32 scalar in [1, seq_len].

  Returns:
    `(token, window, length)`: the new token, and the window with it appended
    (or, when the window was full, shifted left by one and it put last).
  """
  seq_len = window.shape[0]
  logits = apply_fn(params, window[None])[0]
  token = sample_logits(
    logits[length - 1], key, temperature=temperature, top_k=top_k
  )
  appended = window.at[jnp.minimum(length, seq_len - 1)].set(token)
  slid = jnp.concatenate([window[1:], token[None]])
  full = length >= seq_len
  return (
    token,
    jnp.where(full, slid, appended),
    jnp.where(full, length, length + 1),
  )


def generate(
  apply_fn: ApplyFn,
  params: Any,
  prompt_tokens: np.ndarray,
  *,
  key: jax.Array,
  num_tokens: int,
  seq_len: int,
  temperature: float = 1.0,
  top_k: int = 0,
) -> np.ndarray:
  """Continues `prompt_tokens` autoregressively.

  Args:
    apply_fn: `(params, tokens int32 (1, seq_len)) -> logits (1, seq_len,
      vocab)`, causal: position i must depend on tokens[: i + 1] only.
    params: the model's params.
    prompt_tokens: int (P,) token ids, P >= 1. Only the last `seq_len`
      condition the first new token.
    key: a `jax.random.key`; token i uses `jax.random.fold_in(key, i)`.
    num_tokens: how many tokens to generate (>= 0).
    seq_len: the model's context length; longer text slides through a window
      of this size.
    temperature: softmax temperature; 0 = greedy.
    top_k: sample among the `top_k` most likely tokens; 0 = all.

  Returns:
    int32 (num_tokens,): the generated ids, prompt excluded.

  Raises:
    ValueError: empty or non-1-D prompt, or a negative `num_tokens`,
      `temperature` or `top_k`, or `seq_len < 1`.
  """
  prompt = np.asarray(prompt_tokens)
  if prompt.ndim != 1 or not prompt.size:
    raise ValueError(
      f"The prompt must be a non-empty 1-D array of token ids (got shape "
      f"{prompt.shape}): the model needs at least one token to condition "
      "on. Pass a non-empty --prompt, e.g. a newline or 'ROMEO:'."
    )
  if num_tokens < 0 or temperature < 0 or top_k < 0 or seq_len < 1:
    raise ValueError(
      f"Need num_tokens >= 0, temperature >= 0, top_k >= 0 and seq_len >= "
      f"1; got num_tokens={num_tokens}, temperature={temperature}, "
      f"top_k={top_k}, seq_len={seq_len}."
    )
  context = prompt[-seq_len:].astype(np.int32)
  window = np.zeros(seq_len, np.int32)
  window[: len(context)] = context
  window, length = jnp.asarray(window), jnp.int32(len(context))
  step = jax.jit(
    functools.partial(_step, apply_fn, temperature=temperature, top_k=top_k)
  )
  tokens = []
  for i in range(num_tokens):
    token, window, length = step(
      params, window, length, jax.random.fold_in(key, i)
    )
    tokens.append(token)
  if not tokens:
    return np.zeros(0, np.int32)
  return np.asarray(jax.device_get(jnp.stack(tokens)), np.int32)


@dataclasses.dataclass(frozen=True)
class Run:
  """What `load_run` rebuilds from a workdir."""

  config: ml_collections.ConfigDict
  tokenizer: Any  # tokenizers.ByteTokenizer | SentencePieceTokenizer
  model: Any  # models.TransformerLM
  params: Any
  step: int

  def apply_fn(self, params: Any, tokens: jax.Array) -> jax.Array:
    """`generate`'s `apply_fn`: the model's logits, (B, L, vocab)."""
    return self.model.apply({"params": params}, tokens)[0]


def _train_command(workdir: str) -> str:
  return (
    f"python main.py --config configs/tiny_shakespeare.py --workdir "
    f"{workdir} (or the LM config you trained with)"
  )


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config the trainer saved as `workdir/config.json`."""
  config = workdir_lib.load_config(
    workdir, hint=f"Train a language model first: {_train_command(workdir)}."
  )
  if config.get("task") != "lm":
    raise UserError(
      f"{workdir} holds a run with task={config.get('task')!r}; sampling "
      "needs a language model (task='lm'), e.g. configs/tiny_shakespeare.py."
    )
  return config


def load_tokenizer(
  config: ml_collections.ConfigDict, workdir: str
) -> tokenizers.Tokenizer:
  """The run's tokenizer: bytes, or the SentencePiece model the trainer cached
  in `workdir` (`tokenizers.load_saved_tokenizer`; raises its UserError)."""
  return tokenizers.load_saved_tokenizer(config.dataset, workdir)


def load_run(workdir: str, *, device: jax.Device | None = None) -> Run:
  """Rebuilds the tokenizer, model and latest trained params of `workdir`.

  Only the params are read from the checkpoint (not the optimizer state), and
  they are placed on `device` (default: `jax.devices()[0]`, the CPU on a
  machine without accelerators) whatever device count they were saved from.

  Raises:
    UserError: no config.json, checkpoint or tokenizer model (the message
      says which command creates them), or the run is not a language model.
  """
  config = load_config(workdir)
  tokenizer = load_tokenizer(config, workdir)
  trained = workdir_lib.load_model(
    workdir,
    device=device,
    hint=f"Train first (a rerun resumes): {_train_command(workdir)}.",
  )
  return Run(
    config=config,
    tokenizer=tokenizer,
    model=trained.model,
    params=trained.params,
    step=trained.step,
  )
