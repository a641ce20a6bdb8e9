"""The matplotlib figures: weight-product heat maps and attention maps.

Product heat maps use a diverging colour scale centred at 0, shared by all
panels of a kind (`vmax` = a quantile of |entries|; larger ones saturate), and
show the top-left `crop x crop` block (the structure is the same everywhere
on the diagonal; a 192 x 192 matrix in a small panel is unreadable). Pixel
sizes are exact: `cell_px` per panel.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib import colors
from matplotlib import patches as mpatches
from matplotlib.figure import Figure
import numpy as np

from mimetic_jax.errors import UserError
from mimetic_jax.pictures import attention_maps

DPI = 100
PRODUCT_CMAP = "RdBu_r"  # Positive red, negative blue, 0 white.
ATTENTION_CMAP = "viridis"


def _figure(rows: int, cols: int, cell_px: int) -> tuple[Figure, np.ndarray]:
  """A figure of exactly `(cols * cell_px, rows * cell_px)` pixels at DPI."""
  figure = Figure(
    figsize=(cols * cell_px / DPI, rows * cell_px / DPI),
    dpi=DPI,
    layout="constrained",
  )
  axes = figure.subplots(rows, cols, squeeze=False)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  return figure, axes


def _symmetric_vmax(panels: Sequence[np.ndarray], quantile: float) -> float:
  values = np.abs(np.concatenate([np.ravel(p) for p in panels]))
  vmax = float(np.quantile(values, quantile)) if values.size else 1.0
  return vmax if vmax > 0 else 1.0


def plot_products(
  products: Mapping[str, Mapping[str, Any]],
  path: str,
  *,
  kinds: Sequence[str] = ("qk", "vo"),
  crop: int | None = 64,
  cell_px: int = 160,
  vmax_quantile: float = 0.99,
  title: str = "",
) -> str:
  """Heat maps of the attention weight products, one row per layer.

  Args:
    products: `diagnostics.attention_products(params)`: layer name ->
      `{'qk': (heads, d, d), 'vo': (d, d)}`.
    path: the PNG to write.
    kinds: which columns: 'qk' gives one column per head, 'vo' one column.
    crop: show the top-left `crop x crop` block; None or 0 = whole matrices.
    cell_px: pixels per panel; the PNG is `(columns * cell_px, layers *
      cell_px)` pixels exactly.
    vmax_quantile: each kind's colour scale is symmetric about 0, with
      `vmax` = this quantile of the |entries| shown (1.0 = the maximum).
    title: a figure title (the source); empty for none.

  Returns:
    `path`.
  """
  if not products:
    raise UserError(
      "No attention layer to draw: the params hold no "
      "block named like nn.MultiHeadDotProductAttention's "
      "(query, key, value, out)."
    )
  unknown = set(kinds) - {"qk", "vo"}
  if not kinds or unknown:
    raise ValueError(
      f"kinds must be a non-empty subset of ('qk', 'vo'); got {tuple(kinds)}."
    )
  names = list(products)
  heads = max(np.shape(p["qk"])[0] for p in products.values())
  cut = (lambda m: np.asarray(m)[..., :crop, :crop]) if crop else np.asarray
  shown = {
    name: {kind: cut(products[name][kind]) for kind in kinds} for name in names
  }
  columns = [
    (kind, h)
    for kind in kinds
    for h in (range(heads) if kind == "qk" else [None])
  ]
  figure, axes = _figure(len(names), len(columns), cell_px)
  for kind in kinds:
    panels = [shown[n][kind] for n in names]
    vmax = _symmetric_vmax(panels, vmax_quantile)
    image = None
    for row, name in enumerate(names):
      for col, (column_kind, h) in enumerate(columns):
        if column_kind != kind:
          continue
        ax = axes[row, col]
        matrix = shown[name][kind]
        if h is not None:
          if h >= matrix.shape[0]:
            ax.set_axis_off()
            continue
          matrix = matrix[h]
        image = ax.imshow(
          matrix,
          cmap=PRODUCT_CMAP,
          vmin=-vmax,
          vmax=vmax,
          interpolation="nearest",
        )
        full = np.asarray(products[name][kind])
        full = full[h] if h is not None else full
        label = f"$W_qW_k^T$ h{h}" if kind == "qk" else "$W_vW_o$"
        ax.set_title(
          f"{label} diag {np.diagonal(full).mean():+.2f}", fontsize=7
        )
        if col == 0:
          ax.set_ylabel(name, fontsize=6)
    cols = [c for c, (k, _) in enumerate(columns) if k == kind]
    bar = figure.colorbar(
      image,
      ax=axes[:, cols[0] : cols[-1] + 1].ravel().tolist(),
      location="bottom",
      shrink=0.9,
      aspect=25,
      pad=0.01,
    )
    bar.ax.tick_params(labelsize=6)
  if title:
    d = np.shape(products[names[0]]["vo"])[-1]
    size = min(crop, d) if crop else d
    figure.suptitle(
      f"{title} (top-left {size}x{size} of {d}x{d})" if size < d else title,
      fontsize=8,
    )
  figure.savefig(path, dpi=DPI)
  return path


def plot_attention(
  image: np.ndarray,
  maps: Sequence[attention_maps.PatchAttention],
  path: str,
  *,
  per_head: bool = False,
  query: int | None = None,
  cell_px: int = 160,
  title: str = "",
) -> str:
  """Attention of the given layers on one image, one row per layer.

  Columns: the image (first row only, the query patch outlined); the
  patch-to-patch attention matrix (`P x P`, queries down, keys across, on a
  square-root colour scale so that weak neighbour bands show next to the
  self-attention diagonal);
  the attention of the query patch over the patch grid. With `per_head`, the
  last two come once per head, else averaged over heads.

  Args:
    image: `(H, W, 3)` in [0, 1].
    maps: from `patch_attention` (e.g. its first few layers).
    path: the PNG to write; `(columns * cell_px, len(maps) * cell_px)` pixels.
    query: the query patch index (row-major); None = the centre patch.

  Returns:
    `path`.
  """
  if not maps:
    raise UserError("No attention layer to draw.")
  grid = maps[0].grid
  heads = maps[0].weights.shape[0]
  if query is None:
    query = (grid[0] // 2) * grid[1] + grid[1] // 2
  if not 0 <= query < grid[0] * grid[1]:
    raise UserError(
      f"query={query} is not a patch index in [0, "
      f"{grid[0] * grid[1]}) for a {grid} patch grid."
    )
  per = heads if per_head else 1
  figure, axes = _figure(len(maps), 1 + 2 * per, cell_px)
  qy, qx = divmod(query, grid[1])
  py, px = image.shape[0] / grid[0], image.shape[1] / grid[1]
  axes[0, 0].imshow(np.clip(image, 0, 1), interpolation="nearest")
  axes[0, 0].add_patch(
    mpatches.Rectangle(
      (qx * px - 0.5, qy * py - 0.5),
      px,
      py,
      fill=False,
      edgecolor="red",
      linewidth=1.5,
    )
  )
  axes[0, 0].set_title(f"query patch {query}", fontsize=7)
  for row in range(1, len(maps)):
    axes[row, 0].set_axis_off()
  for row, attention in enumerate(maps):
    weights = attention.weights  # (heads, P, P).
    views = weights if per_head else weights.mean(0, keepdims=True)
    tag = [f"h{h}" for h in range(heads)] if per_head else ["mean"]
    distance = attention_maps.mean_attention_distance(attention)
    for i in range(per):
      ax = axes[row, 1 + i]
      ax.imshow(
        views[i],
        cmap=ATTENTION_CMAP,
        interpolation="nearest",
        norm=colors.PowerNorm(0.5, vmin=0),
      )
      ax.set_title(f"{tag[i]} patch->patch (sqrt)", fontsize=7)
      if i == 0:
        ax.set_ylabel(f"{attention.name}\ndist {distance:.2f}", fontsize=6)
      ax = axes[row, 1 + per + i]
      ax.imshow(
        views[i][query].reshape(grid),
        cmap=ATTENTION_CMAP,
        vmin=0,
        interpolation="nearest",
      )
      ax.plot([qx], [qy], marker="+", color="red", markersize=6)
      ax.set_title(f"{tag[i]} from patch {query}", fontsize=7)
  if title:
    figure.suptitle(title, fontsize=8)
  figure.savefig(path, dpi=DPI)
  return path
