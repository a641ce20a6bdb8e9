r"""ViT-Tiny/2 on SVHN (tfds `svhn_cropped`) with the paper's CIFAR recipe.

    python main.py --config configs/svhn.py

Hardware: one modern accelerator (TPU v3-8 / A100-class GPU), 100 epochs.
Expected: the paper reports a gain for mimetic over default init on SVHN;
not yet reproduced with this code.
"""

from configs import image_base


def get_config(preset: str = ""):
  if preset:
    raise ValueError(
      f"configs/svhn.py has no presets (got {preset!r}); "
      "see configs/cifar10.py:smoke for a quick run."
    )
  config = image_base.get_base_config()
  config.dataset.name = "svhn_cropped"
  return config
