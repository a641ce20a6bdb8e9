r"""Causal Transformer LM on WikiText-103 (raw), the paper's LM benchmark.

    python main.py --config configs/wikitext103.py [--workdir DIR]
    python main.py --config configs/wikitext103.py --config.init=default
    python sample.py --workdir DIR --prompt " = Valkyria Chronicles = " \
        --num_tokens 200

Data: the project's tfds builder `wikitext103` (`mimetic_jax/data/
wikitext103.py`; tfds has none): it downloads the official raw archive, or
reads `wiki.{train,valid,test}.raw` / `{train,valid,test}.txt` from
`--config.dataset.manual_dir=DIR` offline. Tokens: a SentencePiece unigram
model of 8,192 pieces trained on the first 10M characters of the train split
and cached in `WORKDIR/sentencepiece/`; bits per byte stays exact.
Evaluation scores the whole validation split once.

Model: width 512, depth 8, 8 heads (head dim 64), MLP 2048, context 512,
sin-cos positions, tied embeddings (29M params with the embeddings); batch 64
windows (32k tokens per step), AdamW lr 1e-3, weight decay 0.1, 20,000 steps
(about 5 epochs), bfloat16 compute.

Init variants (see `configs/lm_base.py`): `--config.init=default`, the ViT
signs (the default here), `--config.mimetic.vo='(0.4,0.4)'` (VO-positive),
`--config.mimetic.vo=None` (QK-only), `--config.mimetic.qk=None` (VO-only).

Hardware: meant for one A100- or H100-class GPU (or a TPU v3-8); not timed
yet. Expected (paper): mimetic initialization gives a smaller gain for
language models than for ViTs. Not reproduced with this code; see README.

Presets (`configs/wikitext103.py:NAME`):
  smoke: seconds on a CPU. Meant for WikiText-2's validation and test files,
    the only WikiText files on this project's offline machines (there is no
    train split there, so it trains on `validation` and evaluates on
    `test`), with a 1,024-piece SentencePiece model, a tiny model and 12
    steps:

        python main.py --config configs/wikitext103.py:smoke \
            --config.dataset.manual_dir=../shared/data/wikitext-2 \
            --config.dataset.data_dir=/tmp/tfds_wikitext2

    Give such a run its own `dataset.data_dir`: tfds caches what it prepares
    under the builder's name, so WikiText-2 files prepared into the default
    data dir would later stand in for WikiText-103 there.
"""

from configs import lm_base


def get_config(preset: str = ""):
  config = lm_base.get_base_config()
  config.dataset.name = "wikitext103"
  config.dataset.train_split = "train"
  config.dataset.eval_split = "validation"
  config.dataset.tokenizer = "sentencepiece"
  config.dataset.vocab_size = 8192
  config.model.update(
    width=512, depth=8, num_heads=8, mlp_dim=2048, dtype="bfloat16"
  )
  config.seq_len = 512
  config.batch_size = 64
  config.eval_batch_size = 64
  config.num_epochs = 0.0
  config.total_steps = 20_000
  config.warmup_epochs = 0.25
  config.learning_rate = 1e-3
  config.weight_decay = 0.1
  config.log_every_steps = 100
  config.eval_every_epochs = 0.5
  config.checkpoint_every_steps = 2000
  if preset == "smoke":
    config.dataset.train_split = "validation"
    config.dataset.eval_split = "test"
    config.dataset.vocab_size = 1024
    lm_base.shrink_to_smoke(config)
  elif preset:
    raise ValueError(
      f"Unknown preset {preset!r} for wikitext103.py; use '' or 'smoke'."
    )
  return config
