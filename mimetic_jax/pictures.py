r"""Pictures of attention structure (the idea of the paper's Figure 1).

For a fresh initialization or a trained checkpoint, draws

* `qk.png`: `W_q^h (W_k^h)^T` per head (rows = layers, columns = heads);
* `vo.png`: `W_v W_o` per layer (rows = layers, one column);
* `products.png`: both side by side (columns = heads + 1), as in Figure 1;
* `attention.png` (with an image): the softmax attention of the first layers
  of a ViT on that image, patch to patch (a class token is left out), and the
  attention of one query patch over the patch grid;
* `summary.json`: per-layer mean diagonal and mean |off-diagonal| of both
  products (and, with an image, how far each layer attends, in patches).

Mimetic initialization shows a positive QK diagonal (~0.40 for ViT-Tiny: the
rank-64 cut of 0.7 Z + 0.7 I) and a negative VO diagonal (~ -0.40); the
default initialization shows neither.

    python -m mimetic_jax.pictures --config configs/cifar10.py --init mimetic \
        --out pictures/cifar10_mimetic --image cat.png
    python -m mimetic_jax.pictures --workdir workdirs/cifar10_mimetic_seed0 \
        --out pictures/trained [--step 9700] [--image cat.png]

Product heat maps use a diverging colour scale centred at 0, shared by all
panels of a kind (`vmax` = a quantile of |entries|; larger ones saturate), and
show the top-left `crop x crop` block (the structure is the same everywhere
on the diagonal; a 192 x 192 matrix in a small panel is unreadable). Pixel
sizes are exact: `cell_px` per panel.

Conventions: Flax kernels are `(in, out)`; attention q/k/v kernels
`(d, heads, head_dim)`, out `(heads, head_dim, d)`; images `(H, W, 3)` float
in [0, 1]; attention weights `(heads, queries, keys)`, rows summing to 1.
"""

import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from matplotlib import colors
from matplotlib import patches as mpatches
from matplotlib.figure import Figure
import ml_collections
import numpy as np

from mimetic_jax import checkpointing
from mimetic_jax import cli
from mimetic_jax import diagnostics
from mimetic_jax import models
from mimetic_jax import tasks

DPI = 100
PRODUCT_CMAP = "RdBu_r"  # Positive red, negative blue, 0 white.
ATTENTION_CMAP = "viridis"


class PicturesError(ValueError):
  """A request that cannot be drawn; the message says why and what to do."""


# ----------------------------------------------------------------------------
# Sources: a fresh init or a trainer workdir.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
  """A model and its params, and where they came from."""
  config: ml_collections.ConfigDict
  model: nn.Module
  params: Any
  description: str  # One line for titles and summary.json.
  init: str | None = None  # Fresh inits only.
  step: int | None = None  # Checkpoints only.


def _make_model(config: ml_collections.ConfigDict,
                info: dict[str, Any]) -> nn.Module:
  task = tasks.get_task(config)
  return task.make_model(tasks.Data(train={}, eval={}, info=info))


def _dummy_inputs(config: ml_collections.ConfigDict) -> jax.Array:
  """One zero example of the model's input: an image or a token window."""
  if config.task == "image":
    size = config.dataset.image_size
    return jnp.zeros((1, size, size, 3), jnp.float32)
  return jnp.zeros((1, config.seq_len), jnp.int32)


def fresh_source(config: ml_collections.ConfigDict, *, init: str | None = None,
                 seed: int | None = None) -> Source:
  """The params the trainer would start from for `config`.

  Args:
    config: a trainer config (image or LM task).
    init: 'default', 'mimetic' or 'trunc_normal'; None = `config.init`.
      Mimetic strengths and noise come from `config.mimetic`.
    seed: None = `config.seed`. The init key is the trainer's
      (`fold_in(key(seed), 0)`), so the attention params equal the trainer's
      step-0 params. No data is loaded: an image model is built without its
      (zero-initialized) classification head, a language model with
      `dataset.vocab_size` (256 for bytes) token embeddings.
  """
  from mimetic_jax import train  # pylint: disable=g-import-not-at-top
  init = config.init if init is None else init
  seed = config.seed if seed is None else seed
  if init not in models.INITS:
    raise PicturesError(f"init={init!r} is not one of {models.INITS}.")
  if config.task == "image":
    info = {"num_classes": 0}
  else:
    byte = config.dataset.get("tokenizer", "byte") == "byte"
    info = {"vocab_size": 256 if byte else config.dataset.vocab_size}
  model = _make_model(config, info)
  kwargs = {}
  if init == "mimetic":
    kwargs = dict(
        qk=train.parse_strength(config.mimetic.qk, "mimetic.qk"),
        vo=train.parse_strength(config.mimetic.vo, "mimetic.vo"),
        distribution=config.mimetic.distribution)
    if kwargs["qk"] is None and kwargs["vo"] is None:
      raise PicturesError("init='mimetic' with mimetic.qk=None and "
                          "mimetic.vo=None changes nothing; set one of them.")
  key = jax.random.fold_in(jax.random.key(seed), 0)
  params = jax.jit(lambda k: models.initialize(
      model, k, _dummy_inputs(config), init=init, **kwargs))(key)
  return Source(config=config, model=model, params=params, init=init,
                description=f"fresh init={init!r}, seed {seed}")


def _workdir_hint(workdir: str) -> str:
  return (f"Train into it with `python main.py --config configs/cifar10.py "
          f"--workdir {workdir}` (or the config you mean), or draw a fresh "
          "initialization instead with `python -m mimetic_jax.pictures "
          "--config configs/cifar10.py --init mimetic --out DIR`.")


def workdir_source(workdir: str, step: int | None = None) -> Source:
  """The model and trained params of a trainer workdir (latest step unless
  `step` is given). The model is rebuilt from `config.json`, its number of
  classes (or vocabulary size) read from the checkpoint's params."""
  hint = _workdir_hint(workdir)
  config = checkpointing.load_saved_config(workdir, hint=hint)
  params, step = checkpointing.restore_params(workdir, step, hint=hint)
  if config.task == "image":
    head = params.get("head", {}).get("kernel")
    info = {"num_classes": 0 if head is None else int(head.shape[-1])}
  else:
    info = {"vocab_size": int(params["embed"]["embedding"].shape[0])}
  model = _make_model(config, info)
  expected = jax.eval_shape(model.init, jax.random.key(0),
                            _dummy_inputs(config))["params"]
  shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
  if shapes(expected) != shapes(params):
    raise PicturesError(
        f"The checkpoint at step {step} in {workdir} does not fit the model "
        f"its config.json describes (params shapes differ: "
        f"{shapes(params)} vs {shapes(expected)}). Was config.json edited "
        "or copied from another run?")
  return Source(config=config, model=model, params=params, step=step,
                description=f"{os.path.abspath(workdir)}, step {step}")


# ----------------------------------------------------------------------------
# Attention weights on an input.
# ----------------------------------------------------------------------------


def _sow_attention_weights(next_fun, args, kwargs, context):
  """Asks every `nn.MultiHeadDotProductAttention` to sow its weights."""
  if (isinstance(context.module, nn.MultiHeadDotProductAttention)
      and context.method_name == "__call__"):
    kwargs = dict(kwargs, sow_weights=True)
  return next_fun(*args, **kwargs)


def attention_weights(model: nn.Module, params: Any,
                      inputs: jax.Array) -> dict[str, jax.Array]:
  """Softmax attention weights of every attention layer of `model`.

  Uses Flax's own `sow_weights` of `nn.MultiHeadDotProductAttention`
  (switched on from outside with a method interceptor), so any model built
  from it works unchanged. Dropout is off (`model.apply` without `train`).

  Args:
    model: a Flax module whose attention is `nn.MultiHeadDotProductAttention`.
    params: its params.
    inputs: what `model.apply` takes, e.g. images `(batch, H, W, 3)`.

  Returns:
    Layer name (the attention module's path, as in
    `diagnostics.attention_products`) -> `(batch, heads, queries, keys)`
    float32 weights, in layer order.
  """

  def run(params, inputs):
    with nn.intercept_methods(_sow_attention_weights):
      _, state = model.apply({"params": params}, inputs,
                             mutable=["intermediates"])
    return state["intermediates"]

  intermediates = jax.jit(run)(params, inputs)
  found = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(intermediates)[0]:
    names = [str(getattr(p, "key", getattr(p, "idx", p))) for p in path]
    if "attention_weights" in names:
      name = "/".join(names[:names.index("attention_weights")])
      found[name] = leaf.astype(jnp.float32)
  order = sorted(found, key=diagnostics.layer_sort_key)
  return {name: found[name] for name in order}


def load_image(path: str, size: int) -> np.ndarray:
  """`(size, size, 3)` float32 in [0, 1]: RGB, centre-cropped to a square
  and resized (bicubic) when needed."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  try:
    with PIL.Image.open(path) as image:
      image = image.convert("RGB")
  except (OSError, ValueError) as e:
    raise PicturesError(
        f"Cannot read the image {path!r} ({e}). Pass a JPEG or PNG file with "
        "--image.") from e
  w, h = image.size
  side = min(w, h)
  left, top = (w - side) // 2, (h - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side != size:
    image = image.resize((size, size), PIL.Image.Resampling.BICUBIC)
  return np.asarray(image, np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class PatchAttention:
  """Patch-to-patch attention of one layer (class token left out).

  `weights`: `(heads, P, P)` with `P = grid[0] * grid[1]` patches in
  row-major order; `weights[h, i, j]` is how much patch `i` attends to patch
  `j` (rows sum to 1 minus what went to the class token).
  `class_token_self`: `(heads,)` weight the class token puts on itself, or
  None without a class token. Near 1 means the class token reads nothing
  from the patches in that layer (what mimetic init's identity-like
  `W_q W_k^T` does to a class token from the second layer on).
  """
  name: str
  weights: np.ndarray
  grid: tuple[int, int]
  class_token_self: np.ndarray | None = None


def patch_attention(source: Source, image: np.ndarray) -> list[PatchAttention]:
  """Attention of every layer of a ViT source on one image.

  Args:
    source: an image-task source (a `ViT`).
    image: `(H, W, 3)` in [0, 1], at the model's input size; mapped to the
      config's `dataset.value_range` as the trainer does.
  """
  if source.config.task != "image":
    raise PicturesError("Attention maps on an image need an image model "
                        f"(task='image'); this source has task="
                        f"{source.config.task!r}.")
  p = source.model.patch_size
  grid = (image.shape[0] // p, image.shape[1] // p)
  inputs = tasks.to_value_range(jnp.asarray(image)[None],
                                source.config.dataset)
  weights = attention_weights(source.model, source.params, inputs)
  maps = []
  for name, w in weights.items():
    w = np.asarray(w[0])  # (heads, tokens, tokens).
    prefix = w.shape[-1] - grid[0] * grid[1]  # 1 with a class token.
    maps.append(PatchAttention(
        name, w[:, prefix:, prefix:], grid,
        class_token_self=w[:, 0, 0] if prefix else None))
  return maps


def _patch_distances(grid: tuple[int, int]) -> np.ndarray:
  """`(P, P)` Euclidean distances between patch centres, in patches."""
  rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
  return np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])


def mean_attention_distance(attention: PatchAttention) -> float:
  """Attention-weighted distance (in patches) from query to key patches,
  averaged over queries and heads; each query's weights renormalised over
  patches. Uniform attention gives `uniform_distance(grid)`; local
  (convolution-like) attention much less."""
  w = attention.weights / attention.weights.sum(-1, keepdims=True)
  return float((w * _patch_distances(attention.grid)).sum(-1).mean())


def uniform_distance(grid: tuple[int, int]) -> float:
  """Mean distance between two patches: what uniform attention gives."""
  return float(_patch_distances(grid).mean())


# ----------------------------------------------------------------------------
# Figures.
# ----------------------------------------------------------------------------


def _figure(rows: int, cols: int, cell_px: int) -> tuple[Figure, np.ndarray]:
  """A figure of exactly `(cols * cell_px, rows * cell_px)` pixels at DPI."""
  figure = Figure(figsize=(cols * cell_px / DPI, rows * cell_px / DPI),
                  dpi=DPI, layout="constrained")
  axes = figure.subplots(rows, cols, squeeze=False)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  return figure, axes


def _symmetric_vmax(panels: Sequence[np.ndarray], quantile: float) -> float:
  values = np.abs(np.concatenate([np.ravel(p) for p in panels]))
  vmax = float(np.quantile(values, quantile)) if values.size else 1.0
  return vmax if vmax > 0 else 1.0


def plot_products(products: Mapping[str, Mapping[str, Any]], path: str, *,
                  kinds: Sequence[str] = ("qk", "vo"), crop: int | None = 64,
                  cell_px: int = 160, vmax_quantile: float = 0.99,
                  title: str = "") -> str:
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
    raise PicturesError("No attention layer to draw: the params hold no "
                        "block named like nn.MultiHeadDotProductAttention's "
                        "(query, key, value, out).")
  unknown = set(kinds) - {"qk", "vo"}
  if not kinds or unknown:
    raise PicturesError(f"kinds must be a non-empty subset of ('qk', 'vo'); "
                        f"got {tuple(kinds)}.")
  names = list(products)
  heads = max(np.shape(p["qk"])[0] for p in products.values())
  cut = (lambda m: np.asarray(m)[..., :crop, :crop]) if crop else np.asarray
  shown = {name: {kind: cut(products[name][kind]) for kind in kinds}
           for name in names}
  columns = [(kind, h) for kind in kinds
             for h in (range(heads) if kind == "qk" else [None])]
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
        image = ax.imshow(matrix, cmap=PRODUCT_CMAP, vmin=-vmax, vmax=vmax,
                          interpolation="nearest")
        full = np.asarray(products[name][kind])
        full = full[h] if h is not None else full
        label = f"$W_qW_k^T$ h{h}" if kind == "qk" else "$W_vW_o$"
        ax.set_title(f"{label} diag {np.diagonal(full).mean():+.2f}",
                     fontsize=7)
        if col == 0:
          ax.set_ylabel(name, fontsize=6)
    cols = [c for c, (k, _) in enumerate(columns) if k == kind]
    bar = figure.colorbar(
        image, ax=axes[:, cols[0]:cols[-1] + 1].ravel().tolist(),
        location="bottom", shrink=0.9, aspect=25, pad=0.01)
    bar.ax.tick_params(labelsize=6)
  if title:
    d = np.shape(products[names[0]]["vo"])[-1]
    size = min(crop, d) if crop else d
    figure.suptitle(f"{title} (top-left {size}x{size} of {d}x{d})"
                    if size < d else title, fontsize=8)
  figure.savefig(path, dpi=DPI)
  return path


def plot_attention(image: np.ndarray, maps: Sequence[PatchAttention],
                   path: str, *, per_head: bool = False,
                   query: int | None = None, cell_px: int = 160,
                   title: str = "") -> str:
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
    raise PicturesError("No attention layer to draw.")
  grid = maps[0].grid
  heads = maps[0].weights.shape[0]
  if query is None:
    query = (grid[0] // 2) * grid[1] + grid[1] // 2
  if not 0 <= query < grid[0] * grid[1]:
    raise PicturesError(f"query={query} is not a patch index in [0, "
                        f"{grid[0] * grid[1]}) for a {grid} patch grid.")
  per = heads if per_head else 1
  figure, axes = _figure(len(maps), 1 + 2 * per, cell_px)
  qy, qx = divmod(query, grid[1])
  py, px = image.shape[0] / grid[0], image.shape[1] / grid[1]
  axes[0, 0].imshow(np.clip(image, 0, 1), interpolation="nearest")
  axes[0, 0].add_patch(mpatches.Rectangle(
      (qx * px - 0.5, qy * py - 0.5), px, py, fill=False, edgecolor="red",
      linewidth=1.5))
  axes[0, 0].set_title(f"query patch {query}", fontsize=7)
  for row in range(1, len(maps)):
    axes[row, 0].set_axis_off()
  for row, attention in enumerate(maps):
    weights = attention.weights  # (heads, P, P).
    views = weights if per_head else weights.mean(0, keepdims=True)
    tag = [f"h{h}" for h in range(heads)] if per_head else ["mean"]
    distance = mean_attention_distance(attention)
    for i in range(per):
      ax = axes[row, 1 + i]
      ax.imshow(views[i], cmap=ATTENTION_CMAP, interpolation="nearest",
                norm=colors.PowerNorm(0.5, vmin=0))
      ax.set_title(f"{tag[i]} patch->patch (sqrt)", fontsize=7)
      if i == 0:
        ax.set_ylabel(f"{attention.name}\ndist {distance:.2f}", fontsize=6)
      ax = axes[row, 1 + per + i]
      ax.imshow(views[i][query].reshape(grid), cmap=ATTENTION_CMAP, vmin=0,
                interpolation="nearest")
      ax.plot([qx], [qy], marker="+", color="red", markersize=6)
      ax.set_title(f"{tag[i]} from patch {query}", fontsize=7)
  if title:
    figure.suptitle(title, fontsize=8)
  figure.savefig(path, dpi=DPI)
  return path


# ----------------------------------------------------------------------------
# Everything for one source.
# ----------------------------------------------------------------------------


def summarize(products: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """Per-layer mean diagonal / mean |off-diagonal| of the products, and
  means over layers, as plain floats (for summary.json)."""
  layers = []
  for name, product in products.items():
    qk, vo = np.asarray(product["qk"]), np.asarray(product["vo"])
    entry = {"layer": name}
    for label, matrix in (("qk", qk), ("vo", vo)):
      entry[f"{label}_diag"], entry[f"{label}_offdiag"] = (
          diagnostics.matrix_stats(matrix))
    entry["qk_diag_per_head"] = [float(np.diagonal(m).mean()) for m in qk]
    layers.append(entry)
  mean = {stat: float(np.mean([e[stat] for e in layers]))
          for stat in diagnostics.STAT_NAMES} if layers else {}
  return {"layers": layers, "mean": mean}


def make_pictures(source: Source, out: str, *, image: np.ndarray | None = None,
                  image_path: str | None = None, crop: int | None = 64,
                  attention_layers: int = 4, per_head: bool = False,
                  query: int | None = None, cell_px: int = 160,
                  log=print) -> dict[str, str]:
  """Writes qk.png, vo.png, products.png, summary.json (and attention.png
  when `image` is given) into `out`; returns `{name: path}`.

  Args:
    source: from `fresh_source` or `workdir_source`.
    out: the output folder (created).
    image: `(H, W, 3)` in [0, 1] at the model's input size, or None to skip
      the attention maps (image models only).
    image_path: where `image` came from, for summary.json.
    crop, cell_px: see `plot_products`.
    attention_layers: how many of the first layers attention.png shows.
    per_head, query: see `plot_attention`.
    log: where one-line notes go.
  """
  os.makedirs(out, exist_ok=True)
  products = diagnostics.attention_products(source.params)
  if not products:
    raise PicturesError("The params hold no attention block to draw.")
  title = source.description
  written = {}
  for name, kinds in (("qk", ("qk",)), ("vo", ("vo",)),
                      ("products", ("qk", "vo"))):
    written[name] = plot_products(
        products, os.path.join(out, f"{name}.png"), kinds=kinds, crop=crop,
        cell_px=cell_px, title=title)
  summary = {"source": source.description, "init": source.init,
             "step": source.step, "task": source.config.task,
             **summarize(products)}
  if image is not None and source.config.task != "image":
    log("Note: attention maps need an image model; this source is a "
        f"{source.config.task!r} model, so --image is ignored.")
  elif image is not None:
    maps = patch_attention(source, image)
    written["attention"] = plot_attention(
        image, maps[:attention_layers], os.path.join(out, "attention.png"),
        per_head=per_head, query=query, cell_px=cell_px, title=title)
    summary["attention"] = {
        "image": image_path, "grid": list(maps[0].grid),
        "uniform_distance": uniform_distance(maps[0].grid),
        "layers": [{"layer": m.name,
                    "mean_distance": mean_attention_distance(m),
                    "class_token_self": (
                        None if m.class_token_self is None
                        else float(m.class_token_self.mean()))}
                   for m in maps]}
  elif source.config.task == "image":
    log("Note: no --image given, so no attention maps (attention.png); pass "
        "a JPEG or PNG to draw them.")
  written["summary"] = os.path.join(out, "summary.json")
  with open(written["summary"], "w") as f:
    json.dump(summary, f, indent=2)
  return written


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config = config_flags.DEFINE_config_file(
      "config", None, "Trainer config for a fresh init, optionally with a "
      "preset: configs/cifar10.py:smoke. Exclusive with --workdir.",
      lock_config=False)
  names = dict(
      workdir=flags.DEFINE_string(
          "workdir", None, "Trainer workdir (config.json + checkpoints/) to "
          "draw the trained params of. Exclusive with --config."),
      out=flags.DEFINE_string("out", None, "Output folder."),
      init=flags.DEFINE_enum("init", None, list(models.INITS),
                             "Fresh init scheme; default: the config's."),
      seed=flags.DEFINE_integer("seed", None, "Fresh init seed; default: "
                                "the config's."),
      step=flags.DEFINE_integer("step", None, "Checkpoint step; default: "
                                "the latest."),
      image=flags.DEFINE_string("image", None, "A JPEG/PNG to draw attention "
                                "maps on (resized to the model's input)."),
      crop=flags.DEFINE_integer("crop", 64, "Show the top-left crop x crop "
                                "block of the products; 0 = all."),
      layers=flags.DEFINE_integer("layers", 4, "Layers in attention.png."),
      per_head=flags.DEFINE_boolean("per_head", False, "Attention per head "
                                    "instead of averaged over heads."),
      query=flags.DEFINE_integer("query", None, "Query patch index for "
                                 "attention.png; default: the centre patch."),
      cell_px=flags.DEFINE_integer("cell_px", 160, "Pixels per panel."))
  flags.mark_flag_as_required("out")
  return config, names


def main(argv, config_flag, flag) -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config, workdir = config_flag.value, flag["workdir"].value
  try:
    if (config is None) == (workdir is None):
      raise PicturesError(
          "Give exactly one source: --config CONFIG [--init mimetic] for a "
          "fresh initialization, or --workdir WORKDIR for a trained run.")
    if workdir is not None:
      if flag["init"].value is not None or flag["seed"].value is not None:
        raise PicturesError("--init and --seed choose a fresh init and go "
                            "with --config, not --workdir.")
      source = workdir_source(workdir, flag["step"].value)
    else:
      if flag["step"].value is not None:
        raise PicturesError("--step picks a checkpoint and goes with "
                            "--workdir, not --config.")
      source = fresh_source(config, init=flag["init"].value,
                            seed=flag["seed"].value)
    image = None
    if flag["image"].value and source.config.task != "image":
      print("Note: attention maps need an image model; this source is a "
            f"{source.config.task!r} model, so --image is ignored.")
    elif flag["image"].value:
      image = load_image(flag["image"].value, source.config.dataset.image_size)
    print(f"Source: {source.description}", flush=True)
    written = make_pictures(
        source, flag["out"].value, image=image, image_path=flag["image"].value,
        crop=flag["crop"].value or None, attention_layers=flag["layers"].value,
        per_head=flag["per_head"].value, query=flag["query"].value,
        cell_px=flag["cell_px"].value)
  except (FileNotFoundError, PicturesError) as e:
    sys.exit(f"Error: {e}")
  with open(written["summary"]) as f:
    mean = json.load(f)["mean"]
  print("Mean over layers: " + ", ".join(f"{k} {v:+.4f}"
                                          for k, v in mean.items()))
  for path in written.values():
    print(f"Wrote {path}")


if __name__ == "__main__":
  import functools  # pylint: disable=g-import-not-at-top
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  _config_flag, _flags = _define_flags()
  app.run(functools.partial(main, config_flag=_config_flag, flag=_flags),
          flags_parser=cli.parse_flags)
