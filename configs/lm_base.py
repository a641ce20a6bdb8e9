"""Settings shared by the causal language-model configs.

Not a config of its own: `tiny_shakespeare.py` and `wikitext103.py` start from
`get_base_config()` and change what differs. Every key below is part of the
user-facing contract (`--config.KEY=VALUE`).

Initialization variants (compare them at the same seed and budget):

    --config.init=default                        # baseline (Xavier kernels)
    --config.init=mimetic                        # ViT signs: qk=(0.7, 0.7),
                                                 #   vo=(0.4, -0.4)
    --config.init=mimetic --config.mimetic.vo='(0.4,0.4)'  # VO-positive, as
                                                 #   in pre-trained GPT-2
    --config.init=mimetic --config.mimetic.vo=None         # QK-only
    --config.init=mimetic --config.mimetic.qk=None         # VO-only
    --config.init=mimetic --config.mimetic.qk=None \\
        --config.mimetic.vo='(0.05,0.05)'        # VO-only, small beta

`mimetic.qk = (alpha1, beta1)` sets W_q W_k^T ~ alpha1 Z + beta1 I per head and
`mimetic.vo = (alpha2, beta2)` sets W_v W_proj ~ alpha2 Z + beta2 I per layer;
the sign of beta is the sign of the identity term.
"""

import ml_collections

from configs import common


def get_base_config() -> ml_collections.ConfigDict:
  """A small byte-level causal Transformer LM with mimetic initialization."""
  config = ml_collections.ConfigDict()
  config.task = "lm"
  config.seed = 0

  common.init_config(config)  # init, mimetic.{qk,vo,distribution}.

  config.model = ml_collections.ConfigDict()
  config.model.name = "lm"
  config.model.width = 256
  config.model.depth = 4
  config.model.num_heads = 4
  config.model.mlp_dim = 0  # 0 -> 4 * width.
  # 'sincos' (fixed 1-D sinusoids; their P P^T term is what makes mimetic
  # attention local at initialization) or 'learn'.
  config.model.posemb = "sincos"
  config.model.tie_embeddings = True
  config.model.dropout = 0.0
  config.model.dtype = "float32"  # compute dtype; 'bfloat16' on TPU/GPU.
  # Rematerialise blocks in the backward pass (less memory, slower): '' or
  # 'nothing_saveable' (least memory), 'dots_with_no_batch_dims_saveable',
  # 'dots_saveable'.
  config.model.remat = ""

  config.seq_len = 256  # Model context; windows hold seq_len + 1 tokens.

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "tiny_shakespeare"  # or 'wikitext103'.
  config.dataset.data_dir = ""  # tfds data dir; '' = tfds default.
  # Offline source files (tfds manual_dir); '' = download.
  config.dataset.manual_dir = ""
  # A user's .txt file or folder of them; overrides `name` when set.
  config.dataset.path = ""
  config.dataset.train_split = "train"
  config.dataset.eval_split = "validation"
  # 'byte' (vocab 256, exact bits per byte) or 'sentencepiece' (trained on
  # the train split, cached in WORKDIR/sentencepiece/).
  config.dataset.tokenizer = "byte"
  config.dataset.vocab_size = 8192  # SentencePiece only.
  config.dataset.eval_fraction = 0.1  # `path` only: tail of each file.

  config.batch_size = 64  # Global, over all devices; windows per step.
  config.eval_batch_size = 64  # Global.
  config.num_epochs = 10.0  # Epoch = one pass over the packed train windows.
  config.total_steps = 0  # > 0 overrides num_epochs.
  config.warmup_epochs = 0.5
  config.learning_rate = 1e-3
  config.end_learning_rate = 1e-5
  config.weight_decay = 0.1  # AdamW, on kernels/embeddings only.
  config.b1 = 0.9
  config.b2 = 0.95
  config.adam_eps = 1e-8  # AdamW's epsilon (timm CIFAR pipelines: 1e-3).
  config.grad_clip_norm = 1.0  # 0 = off.

  config.log_every_steps = 50
  config.eval_every_epochs = 1.0
  config.checkpoint_every_steps = 1000
  config.max_to_keep = 2
  config.attention_stats = True  # Log mean QK / VO diagonals at eval.
  return config


def shrink_to_smoke(config: ml_collections.ConfigDict) -> None:
  """The `:smoke` preset's model and schedule: seconds on a CPU, one eval at
  the end, a checkpoint half way. Checks the plumbing, not the method."""
  config.model.update(
    width=32, depth=2, num_heads=2, mlp_dim=64, dtype="float32"
  )
  config.seq_len = 32
  config.batch_size = 16
  config.eval_batch_size = 512
  config.total_steps = 12
  config.warmup_epochs = 0.0
  config.learning_rate = 3e-3
  config.log_every_steps = 4
  config.eval_every_epochs = 1000.0  # Evaluate once, at the end.
  config.checkpoint_every_steps = 6
