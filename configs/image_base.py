"""Settings shared by the image-classification configs.

Not a config of its own: `cifar10.py`, `cifar100.py`, `svhn.py` and
`imagenet.py` start from `get_base_config()` and change what differs. Every
key below is part of the user-facing contract (`--config.KEY=VALUE`).
"""

import ml_collections

from configs import common


def get_base_config() -> ml_collections.ConfigDict:
  """The paper's ViT recipe (Trockman & Kolter 2023, CIFAR-10 setting)."""
  config = ml_collections.ConfigDict()
  config.task = "image"
  config.seed = 0

  common.init_config(config)  # init, mimetic.{qk,vo,distribution}.

  config.model = ml_collections.ConfigDict()
  config.model.name = "vit"
  config.model.variant = "Ti/2"  # '' -> use the explicit fields below.
  config.model.width = 192
  config.model.depth = 12
  config.model.mlp_dim = 768
  config.model.num_heads = 3
  config.model.patch_size = 2
  config.model.pool = "token"  # class token, as in the paper; or 'gap'.
  config.model.posemb = "sincos2d"  # or 'sincos1d', 'learn'.
  config.model.dropout = 0.0
  # GELU's tanh approximation (Flax's default); False: exact erf (timm's).
  config.model.gelu_approximate = True
  config.model.dtype = "float32"  # compute dtype; 'bfloat16' on TPU/GPU.
  # Rematerialise blocks in the backward pass (less memory, slower): '' or
  # 'nothing_saveable' (least memory), 'dots_with_no_batch_dims_saveable',
  # 'dots_saveable'.
  config.model.remat = ""
  # jax.nn.dot_product_attention: 'auto' (cuDNN flash attention on NVIDIA
  # GPUs where it applies, else XLA), 'xla' or 'cudnn'.
  config.model.attention = "auto"

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "cifar10"  # tfds name.
  config.dataset.data_dir = ""  # tfds data dir; '' = tfds default.
  config.dataset.path = ""  # image folder / .tar.gz; '' = tfds download.
  config.dataset.train_split = "train"
  config.dataset.eval_split = "test"
  config.dataset.image_size = 32
  # The one linear range the ViT sees pixels in (it normalises nothing
  # itself): (-2, 2) is (x - 0.5) / 0.25, what every result in README used;
  # big_vision uses (-1, 1). Augmentation always works on [0, 1].
  config.dataset.value_range = (-2.0, 2.0)
  config.dataset.in_memory = True  # False streams from tfds (ImageNet).
  config.dataset.max_train_examples = 0  # 0 = all.
  config.dataset.max_eval_examples = 0

  config.augment = ml_collections.ConfigDict()
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.augment.randaugment_num_ops = 2
  config.augment.randaugment_magnitude = 9.0
  config.augment.cutout_size = 16

  config.batch_size = 512  # Global, over all devices.
  config.eval_batch_size = 1000  # Global.
  config.num_epochs = 100.0
  config.total_steps = 0  # > 0 overrides num_epochs.
  config.warmup_epochs = 5.0
  config.learning_rate = 3e-3
  config.end_learning_rate = 1e-5
  config.weight_decay = 0.01  # AdamW, on kernels/embeddings only.
  config.b1 = 0.9
  config.b2 = 0.999
  config.adam_eps = 1e-8  # AdamW's epsilon (timm CIFAR pipelines: 1e-3).
  config.grad_clip_norm = 0.0  # 0 = off.
  config.label_smoothing = 0.0

  config.log_every_steps = 50
  config.eval_every_epochs = 5.0
  config.checkpoint_every_steps = 1000
  config.max_to_keep = 2
  config.attention_stats = True  # Log mean QK / VO diagonals at eval.
  return config
