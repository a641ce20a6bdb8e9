"""Config fields every task shares: the initialization choice.

init: 'mimetic', 'default' (each layer's own Flax initializers: Xavier
  attention/MLP kernels) or 'trunc_normal' (every attention/MLP kernel
  from a truncated normal with std 0.02, as timm ViTs).
mimetic.qk, mimetic.vo: (alpha, signed beta) of W_q W_k^T ~ alpha Z + beta I
  (per head) and W_v W_o = alpha Z + beta I (per layer); None leaves that
  pair at the model's default (QK-only / VO-only ablations).
mimetic.distribution: 'normal' or 'uniform' Z (same variance 1/d).
"""

import ml_collections
from ml_collections import config_dict


def init_config(config: ml_collections.ConfigDict) -> None:
  """Adds `init` and `mimetic` to `config`, set to the paper's ViT values."""
  config.init = "mimetic"
  config.mimetic = ml_collections.ConfigDict()
  config.mimetic.qk = config_dict.placeholder(tuple)
  config.mimetic.qk = (0.7, 0.7)
  config.mimetic.vo = config_dict.placeholder(tuple)
  config.mimetic.vo = (0.4, -0.4)
  config.mimetic.distribution = "normal"
