r"""Generates text from a language model trained with main.py.

    python sample.py --workdir workdirs/tiny_shakespeare_mimetic_seed0 \
        --prompt "ROMEO:" --num_tokens 200 --temperature 0.8 --top_k 40

Reads `WORKDIR/config.json` and the latest checkpoint in `WORKDIR/checkpoints`
(params only, any device count), rebuilds the tokenizer (bytes, or the
SentencePiece model cached in the workdir) and the model, and prints the
prompt followed by its continuation. `--temperature 0` is greedy decoding.
"""

from absl import app, flags, logging

from mimetic_jax import cli

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir of a language-model run of main.py."
)
_PROMPT = flags.DEFINE_string("prompt", "\n", "Text to continue; non-empty.")
_NUM_TOKENS = flags.DEFINE_integer("num_tokens", 200, "Tokens to generate.")
_TEMPERATURE = flags.DEFINE_float(
  "temperature", 0.8, "Softmax temperature; 0 = greedy."
)
_TOP_K = flags.DEFINE_integer(
  "top_k", 40, "Sample among the k most likely tokens; 0 = all."
)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed of the sampling.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top

  from mimetic_jax import sampling  # pylint: disable=g-import-not-at-top

  run = sampling.load_run(_WORKDIR.value)
  tokens = sampling.generate(
    run.apply_fn,
    run.params,
    run.tokenizer.encode(_PROMPT.value),
    key=jax.random.key(_SEED.value),
    num_tokens=_NUM_TOKENS.value,
    seq_len=run.config.seq_len,
    temperature=_TEMPERATURE.value,
    top_k=_TOP_K.value,
  )
  print(_PROMPT.value + run.tokenizer.decode(tokens), flush=True)


if __name__ == "__main__":
  cli.run(main)
