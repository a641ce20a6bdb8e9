"""Everything for one source: the PNGs and `summary.json`.

`make_pictures` writes `qk.png` (`W_q^h (W_k^h)^T` per head; rows = layers,
columns = heads), `vo.png` (`W_v W_o` per layer), `products.png` (both side
by side, as in the paper's Figure 1), `attention.png` (with an image: the
attention of the first layers of a ViT on it) and `summary.json`: per layer
the `diagnostics.layer_stats` of both products (the numbers the trainer
logs), and, with an image, how far each layer attends, in patches.
"""

from collections.abc import Callable, Mapping
import json
import os
from typing import Any

import numpy as np

from mimetic_jax import diagnostics
from mimetic_jax.errors import UserError
from mimetic_jax.pictures import attention_maps, figures, sources


def summarize(products: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """Per-layer `diagnostics.layer_stats` of the products (plus the QK
  diagonal per head), and their means over layers, as plain floats.

  Args:
    products: `diagnostics.attention_products(params)`.

  Returns:
    `{'layers': [{'layer': name, 'qk_diag': ..., 'qk_offdiag': ...,
    'vo_diag': ..., 'vo_offdiag': ..., 'qk_diag_per_head': [...]}, ...],
    'mean': {stat: mean over layers}}`.
  """
  layers = []
  for name, product in products.items():
    layers.append(
      {
        "layer": name,
        **diagnostics.layer_stats(product["qk"], product["vo"]),
        "qk_diag_per_head": [
          diagnostics.matrix_stats(m)[0] for m in np.asarray(product["qk"])
        ],
      }
    )
  return {"layers": layers, "mean": diagnostics.mean_over_layers(layers)}


def make_pictures(
  source: sources.Source,
  out: str,
  *,
  image: np.ndarray | None = None,
  image_path: str | None = None,
  crop: int | None = 64,
  attention_layers: int = 4,
  per_head: bool = False,
  query: int | None = None,
  cell_px: int = 160,
  log: Callable[[str], Any] = print,
) -> dict[str, str]:
  """Writes qk.png, vo.png, products.png, summary.json (and attention.png
  when `image` is given) into `out`; returns `{name: path}`.

  Args:
    source: from `sources.fresh_source` or `sources.workdir_source`.
    out: the output folder (created).
    image: `(H, W, 3)` in [0, 1] at the model's input size, or None to skip
      the attention maps (image models only).
    image_path: where `image` came from, for summary.json.
    crop, cell_px: see `figures.plot_products`.
    attention_layers: how many of the first layers attention.png shows.
    per_head, query: see `figures.plot_attention`.
    log: where one-line notes go.
  """
  os.makedirs(out, exist_ok=True)
  products = diagnostics.attention_products(source.params)
  if not products:
    raise UserError("The params hold no attention block to draw.")
  title = source.description
  written = {}
  for name, kinds in (
    ("qk", ("qk",)),
    ("vo", ("vo",)),
    ("products", ("qk", "vo")),
  ):
    written[name] = figures.plot_products(
      products,
      os.path.join(out, f"{name}.png"),
      kinds=kinds,
      crop=crop,
      cell_px=cell_px,
      title=title,
    )
  summary = {
    "source": source.description,
    "init": source.init,
    "step": source.step,
    "task": source.config.task,
    **summarize(products),
  }
  if image is not None and source.config.task != "image":
    log(
      "Note: attention maps need an image model; this source is a "
      f"{source.config.task!r} model, so --image is ignored."
    )
  elif image is not None:
    maps = attention_maps.patch_attention(source, image)
    written["attention"] = figures.plot_attention(
      image,
      maps[:attention_layers],
      os.path.join(out, "attention.png"),
      per_head=per_head,
      query=query,
      cell_px=cell_px,
      title=title,
    )
    summary["attention"] = {
      "image": image_path,
      "grid": list(maps[0].grid),
      "uniform_distance": attention_maps.uniform_distance(maps[0].grid),
      "layers": [
        {
          "layer": m.name,
          "mean_distance": attention_maps.mean_attention_distance(m),
          "class_token_self": (
            None
            if m.class_token_self is None
            else float(m.class_token_self.mean())
          ),
        }
        for m in maps
      ],
    }
  elif source.config.task == "image":
    log(
      "Note: no --image given, so no attention maps (attention.png); pass "
      "a JPEG or PNG to draw them."
    )
  written["summary"] = os.path.join(out, "summary.json")
  with open(written["summary"], "w") as f:
    json.dump(summary, f, indent=2)
  return written
