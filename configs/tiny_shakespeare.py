r"""Byte-level causal Transformer LM on Tiny Shakespeare (tfds).

    python main.py --config configs/tiny_shakespeare.py [--workdir DIR]
    python main.py --config configs/tiny_shakespeare.py --config.init=default
    python sample.py --workdir DIR --prompt "ROMEO:" --num_tokens 200

Offline (the file is byte-identical to the one tfds's builder downloads):
    python main.py --config configs/tiny_shakespeare.py \
        --config.dataset.manual_dir=../shared/data/tinyshakespeare

Data: tfds `tiny_shakespeare` (train / validation / test are the 90 / 5 / 5
character split of `input.txt`), UTF-8 bytes as tokens (vocab 256), so
bits per byte is exact. Evaluation scores the whole validation split once.

Model: width 128, depth 4, 4 heads (head dim 32), MLP 512, context 128,
sin-cos positions, tied embeddings (0.83M params); batch 32 windows of 128
bytes, AdamW lr 2e-3 (warm-up 98 steps, cosine), 1,400 steps (5.7 epochs of
the packed training text, 5.7M tokens).

Init variants (see `configs/lm_base.py`): `--config.init=default`, the ViT
signs (the default here), `--config.mimetic.vo='(0.4,0.4)'` (VO-positive),
`--config.mimetic.vo=None` (QK-only), `--config.mimetic.qk=None` (VO-only).

Hardware: sized for a laptop-class CPU. Measured on a 2-core CPU (shared with
other jobs): about 0.41 s per training step (10k tokens/s), so the 1,400
steps plus data loading, compilation and evaluation take about 10 minutes.
Expected result: see README (eval bits per byte of init=default vs.
init=mimetic at this budget).

Presets (`configs/tiny_shakespeare.py:NAME`):
  smoke: seconds on a CPU (tiny model, context 32, 12 steps, checkpoint at
    step 6); for tests and first-time users. Checks the plumbing, not the
    method.
"""

from configs import lm_base


def get_config(preset: str = ""):
  config = lm_base.get_base_config()
  config.dataset.name = "tiny_shakespeare"
  config.dataset.tokenizer = "byte"
  config.model.update(width=128, depth=4, num_heads=4, mlp_dim=512)
  config.seq_len = 128
  config.batch_size = 32
  config.eval_batch_size = 256
  config.total_steps = 1400
  config.warmup_epochs = 0.4  # 98 steps.
  config.learning_rate = 2e-3
  config.log_every_steps = 50
  config.eval_every_epochs = 2.0
  config.checkpoint_every_steps = 500
  if preset == "smoke":
    lm_base.shrink_to_smoke(config)
  elif preset:
    raise ValueError(
      f"Unknown preset {preset!r} for tiny_shakespeare.py; use '' or 'smoke'."
    )
  return config
