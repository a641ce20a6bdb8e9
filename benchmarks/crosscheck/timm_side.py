"""timm's ViT trained on given batches, with timm's init or mimetic init.

The mimetic init here is written from the paper's formulas (Trockman & Kolter
2023, Sec. 3; `../shared/MISSION.md`), in PyTorch, without the JAX code:

    per head h:  W_q^h (W_k^h)^T ~ a1 Z + b1 I    (rank k = d / heads)
    per layer:   W_v W_proj      =  a2 Z + b2 I   (full rank)

with Z of i.i.d. N(0, 1/d) entries, a fresh one per head per layer (QK) and
per layer (VO). With `A = U S V^T`: `W_q^h = U_k S_k^1/2`, `W_k^h = V_k
S_k^1/2`; `W_v = U S^1/2`, `W_proj = S^1/2 V^T`. The maths is in row-vector
form (`y = x W`, `W` of shape (in, out)); a torch `Linear` holds `W^T`.
Biases stay zero (timm's init), every other weight keeps timm's init.

Optimizer: `torch.optim.AdamW` with the learning rate of every step set from
the project's optax schedule, weight decay on tensors of rank >= 2 (the
project's mask), global-norm clipping when `grad_clip_norm > 0`, and
cross-entropy with the config's label smoothing: the project's recipe, in
torch.
"""

from collections.abc import Sequence
import math
import re
import sys
import time
from typing import Any

import numpy as np

# torch's CUDA build imports triton, whose native library can crash the
# process when loaded after TensorFlow; CPU training never needs it.
sys.modules.setdefault("triton", None)
import torch  # noqa: E402 (after the triton stub / importorskip)
import torch.nn.functional as F  # noqa: E402 (after the triton stub / importorskip)

from mimetic_jax import timm_port  # noqa: E402 (after the triton stub / importorskip)
from mimetic_jax.models.init import parse_strength  # noqa: E402 (after the triton stub / importorskip)


def mimetic_(
  vit,
  generator: torch.Generator,
  *,
  qk: tuple[float, float] | None,
  vo: tuple[float, float] | None,
) -> None:
  """Mimetic init of every block's `attn.qkv` / `attn.proj` weights, in place.

  `qk`, `vo`: `(alpha, signed beta)`, or None to keep timm's init for that
  pair (the QK-only / VO-only variants).
  """
  with torch.no_grad():
    for block in vit.blocks:
      attention = block.attn
      d = attention.qkv.in_features
      k = d // attention.num_heads
      weight = attention.qkv.weight  # (3d, d): [q | k | v] rows, head-major.
      target = lambda alpha, beta: (  # pylint: disable=g-long-lambda
        alpha * torch.randn(d, d, generator=generator) / math.sqrt(d)  # noqa: B023 (used in this iteration)
        + beta * torch.eye(d)  # noqa: B023 (used in this iteration)
      )
      if qk is not None:
        for head in range(attention.num_heads):
          u, s, vh = torch.linalg.svd(target(*qk))
          root = s[:k].sqrt()
          q_rows = slice(head * k, (head + 1) * k)
          k_rows = slice(d + head * k, d + (head + 1) * k)
          weight[q_rows] = (u[:, :k] * root).T  # W_q^h: (d, k).
          weight[k_rows] = (vh[:k].T * root).T  # W_k^h: (d, k).
      if vo is not None:
        u, s, vh = torch.linalg.svd(target(*vo))
        root = s.sqrt()
        weight[2 * d :] = (u * root).T  # W_v: (d, d).
        attention.proj.weight.copy_((root[:, None] * vh).T)  # W_proj.


def grad_group(name: str) -> str:
  """The gradient-norm group of a timm ViT parameter (the JAX side uses the
  same names): `patch_embedding`, `cls_token`, `qk/<layer>`, `vo/<layer>`,
  `mlp/<layer>`, `norms`, `head`. `attn.qkv` is split by `group_norms`."""
  match = re.match(r"blocks\.(\d+)\.(\w+)\.(\w+)", name)
  if match:
    layer, module, sub = match.groups()
    if module == "attn":
      return f"vo/{layer}" if sub == "proj" else f"qkv/{layer}"
    return f"mlp/{layer}" if module == "mlp" else "norms"
  for prefix, group in (
    ("patch_embed", "patch_embedding"),
    ("cls_token", "cls_token"),
    ("norm", "norms"),
    ("head", "head"),
  ):
    if name.startswith(prefix):
      return group
  raise ValueError(f"No gradient group for parameter {name!r}.")


def group_norms(vit) -> dict[str, float]:
  """L2 norm of the current gradients per group (see `grad_group`)."""
  squares: dict[str, float] = {}
  for name, p in vit.named_parameters():
    if p.grad is None:
      continue
    group, g = grad_group(name), p.grad.detach()
    parts = {group: g}
    if group.startswith("qkv/"):  # q and k rows vs v rows.
      d = g.shape[0] // 3
      layer = group.split("/")[1]
      parts = {f"qk/{layer}": g[: 2 * d], f"vo/{layer}": g[2 * d :]}
    for part, x in parts.items():
      squares[part] = squares.get(part, 0.0) + float(x.double().square().sum())
  return {group: math.sqrt(v) for group, v in squares.items()}


def _nchw(images: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def train(
  vit,
  batches: np.ndarray,
  labels: np.ndarray,
  *,
  learning_rates: Sequence[float],
  config: Any,
  grad_norm_steps: int,
  log,
) -> dict[str, Any]:
  """Trains `vit` in place, one step per batch.

  Args:
    vit: a timm `VisionTransformer`.
    batches: float32 `(steps, batch, H, W, C)` model inputs.
    labels: int `(steps, batch)`.
    learning_rates: the learning rate of each step.
    config: the run's config (b1, b2, adam_eps, weight_decay,
      grad_clip_norm, label_smoothing, log_every_steps).
    grad_norm_steps: record `group_norms` for this many first steps.
    log: called with progress lines.

  Returns:
    `{'train_loss': [per step], 'grad_norms': [per step, first
    grad_norm_steps], 'train_seconds': float}`.
  """
  trainable = [p for p in vit.parameters() if p.requires_grad]
  optimizer = torch.optim.AdamW(
    [
      {
        "params": [p for p in trainable if p.ndim >= 2],
        "weight_decay": config.weight_decay,
      },
      {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ],
    lr=0.0,
    betas=(config.b1, config.b2),
    eps=config.adam_eps,
  )
  vit.train()
  losses, norms = [], []
  start = time.perf_counter()
  for step, (images, targets) in enumerate(zip(batches, labels)):
    for group in optimizer.param_groups:
      group["lr"] = float(learning_rates[step])
    logits = vit(_nchw(images))
    loss = F.cross_entropy(
      logits,
      torch.from_numpy(targets).long(),
      label_smoothing=config.label_smoothing,
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if step < grad_norm_steps:
      norms.append(group_norms(vit))
    if config.grad_clip_norm > 0:
      torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip_norm)
    optimizer.step()
    losses.append(loss.detach().item())
    if not math.isfinite(losses[-1]):
      raise FloatingPointError(f"timm run: loss {losses[-1]} at step {step}.")
    if (step + 1) % config.log_every_steps == 0 or step + 1 == len(batches):
      seconds = time.perf_counter() - start
      log(
        f"step {step + 1}/{len(batches)}: train_loss {losses[-1]:.4f}, "
        f"{(step + 1) * len(images) / seconds:.0f} img/s"
      )
  return {
    "train_loss": losses,
    "grad_norms": norms,
    "train_seconds": time.perf_counter() - start,
  }


def evaluate(
  vit,
  images: np.ndarray,
  labels: np.ndarray,
  *,
  batch_size: int,
  label_smoothing: float,
) -> dict[str, float]:
  """Accuracy and mean loss (with the training label smoothing, as the
  project's eval reports it) over all of `images`."""
  vit.eval()
  loss_sum = correct = 0.0
  with torch.no_grad():
    for i in range(0, len(images), batch_size):
      logits = vit(_nchw(images[i : i + batch_size]))
      targets = torch.from_numpy(labels[i : i + batch_size]).long()
      loss_sum += float(
        F.cross_entropy(
          logits, targets, reduction="sum", label_smoothing=label_smoothing
        )
      )
      correct += float((logits.argmax(-1) == targets).sum())
  return {
    "eval_accuracy": correct / len(images),
    "eval_loss": loss_sum / len(images),
  }


def run(
  model,
  *,
  init: str,
  seed: int,
  batches: np.ndarray,
  labels: np.ndarray,
  eval_data: tuple[np.ndarray, np.ndarray],
  config,
  learning_rates: Sequence[float],
  grad_norm_steps: int,
  log,
) -> dict[str, Any]:
  """One cross-check run of timm's ViT with `model`'s architecture (a Flax
  `ViT`): timm's init (`init='default'`) or `mimetic_`, then `train` and
  `evaluate`; the run's record."""
  if init not in ("default", "mimetic"):
    raise ValueError(
      f"timm runs have init 'default' or 'mimetic', not {init!r}."
    )
  torch.manual_seed(seed)  # timm's init draws from the global generator.
  vit = timm_port.timm_vit(
    model, image_size=batches.shape[2], in_chans=batches.shape[-1]
  )
  if init == "mimetic":
    mimetic_(
      vit,
      torch.Generator().manual_seed(seed),
      qk=parse_strength(config.mimetic.qk, "mimetic.qk"),
      vo=parse_strength(config.mimetic.vo, "mimetic.vo"),
    )
  record = train(
    vit,
    batches,
    labels,
    learning_rates=learning_rates,
    config=config,
    grad_norm_steps=grad_norm_steps,
    log=log,
  )
  return {
    **evaluate(
      vit,
      *eval_data,
      batch_size=config.eval_batch_size,
      label_smoothing=config.label_smoothing,
    ),
    **record,
  }
