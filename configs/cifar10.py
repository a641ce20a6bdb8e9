r"""ViT-Tiny/2 on CIFAR-10: the paper's headline experiment.

    python main.py --config configs/cifar10.py [--workdir DIR]
    python main.py --config configs/cifar10.py --config.init=default  # baseline

Recipe (Trockman & Kolter 2023, Sec. 5): ViT-Tiny (width 192, depth 12,
3 heads), patch 2, class token, sin-cos position embeddings, RandAugment +
Cutout, batch 512, AdamW lr 3e-3, weight decay 0.01, 100 epochs (5 warm-up,
cosine), mimetic qk=(0.7, 0.7), vo=(0.4, -0.4).

Hardware: meant for one modern accelerator (TPU v3-8 / one A100- or
H100-class GPU); 9,700 steps of batch 512.
Expected (paper, PyTorch, CIFAR-10 PNG): mimetic more than 5 points of top-1
above default init. Not yet reproduced with this code at full length; see
README for what has been measured. For one offline GPU host the comparison
is one prepared command: `benchmarks/accelerator/README.md`.

Offline, with the JPEG archive of CIFAR-10 (accuracies run a little lower):
    python main.py --config configs/cifar10.py \
        --config.dataset.path=../shared/data/cifar10-jpeg.tar.gz

Presets (`configs/cifar10.py:NAME`):
  smoke: seconds on a CPU (tiny ViT, 1,024 training images, a few steps); for
    tests and first-time users. Checks the plumbing, not the method.
  cpu: the paper's recipe shrunk to at most ~15 minutes per run on 2 CPU
    cores: ViT width 192, depth 6, 3 heads, patch 4, class token, 2-D sin-cos;
    RandAugment + Cutout; AdamW lr 1e-3 (about the paper's 3e-3 at batch 512
    scaled to batch 128; 3e-3 was worse for both inits, 3e-4 narrows the
    gap but mimetic stays behind), wd 0.01; the first 10,000 training
    images for 4 epochs at batch 128 (312 steps); eval on the first 2,500
    test images every epoch. For `python -m mimetic_jax.compare`:

        python -m mimetic_jax.compare --config configs/cifar10.py:cpu \
            --seeds 0,1 --inits default,trunc_normal,mimetic --workdir DIR \
            --config.dataset.path=../shared/data/cifar10-jpeg.tar.gz

    Measured (2-core Xeon, JPEG CIFAR-10, seeds 0 and 1, 8-14 min per run),
    final eval accuracy: default 28.90 +- 1.22 %, trunc_normal
    24.12 +- 3.62 %, mimetic 22.88 +- 0.85 %. At this budget mimetic is
    *behind* the default init. Kept faithful to the paper (class token)
    rather than tuned until mimetic wins: the README's Results section has
    the variants tried (pooling, QK-only, VO-only, budget, learning rate)
    and what they show.
"""

from configs import image_base


def get_config(preset: str = ""):
  config = image_base.get_base_config()
  config.dataset.name = "cifar10"
  if preset == "smoke":
    config.model.variant = ""
    config.model.update(
      width=32, depth=2, mlp_dim=64, num_heads=2, patch_size=4
    )
    config.dataset.max_train_examples = 1024
    config.dataset.max_eval_examples = 512
    config.batch_size = 64
    config.eval_batch_size = 128
    config.total_steps = 12
    config.warmup_epochs = 0.1
    config.learning_rate = 1e-3
    config.log_every_steps = 4
    config.eval_every_epochs = 0.5
    config.checkpoint_every_steps = 6
  elif preset == "cpu":
    config.model.variant = ""
    config.model.update(
      width=192, depth=6, mlp_dim=768, num_heads=3, patch_size=4
    )
    config.dataset.max_train_examples = 10_000
    config.dataset.max_eval_examples = 2_500
    config.batch_size = 128
    config.num_epochs = 4.0
    config.warmup_epochs = 0.5
    config.learning_rate = 1e-3
    config.log_every_steps = 20
    config.eval_every_epochs = 1.0
    config.checkpoint_every_steps = 100
  elif preset:
    raise ValueError(
      f"Unknown preset {preset!r} for cifar10.py; use '', 'smoke' or 'cpu'."
    )
  return config
