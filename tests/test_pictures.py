"""Weight and attention pictures (`mimetic_jax.pictures`) from a fresh init
and from a trainer checkpoint, on a generated image and on a real CIFAR-10
image."""

import json
import pathlib
import subprocess
import sys
import tarfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import PIL.Image
import pytest

from configs import cifar10
from mimetic_jax import checkpointing, diagnostics, steps
from mimetic_jax.data import DatasetInfo
from mimetic_jax.errors import UserError
from mimetic_jax.models import factory, initialize
from mimetic_jax.pictures import attention_maps, figures, make, sources

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CELL = 48  # Pixels per panel: small PNGs, quick to draw.


def smoke_config():
  """configs/cifar10.py:smoke: width 32, depth 2, 2 heads, patch 4, 32x32."""
  return cifar10.get_config("smoke")


_SMOKE = smoke_config()
DEPTH, HEADS = _SMOKE.model.depth, _SMOKE.model.num_heads
SIZE = _SMOKE.dataset.image_size
GRID = (SIZE // _SMOKE.model.patch_size,) * 2


def png_size(path) -> tuple[int, int]:
  with PIL.Image.open(path) as image:
    return image.size


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> pathlib.Path:
  """A generated 40x50 RGB image (not square, not the model's size)."""
  path = tmp_path_factory.mktemp("image") / "generated.png"
  rng = np.random.default_rng(0)
  PIL.Image.fromarray(rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)).save(
    path
  )
  return path


@pytest.fixture(scope="module")
def image(image_path) -> np.ndarray:
  return attention_maps.load_image(str(image_path), SIZE)


@pytest.fixture(scope="module")
def fresh():
  config = smoke_config()
  return {
    init: sources.fresh_source(config, init=init)
    for init in ("mimetic", "default")
  }


def test_load_image_crops_resizes_and_scales(image):
  assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
  assert image.min() >= 0.0 and image.max() <= 1.0


@pytest.mark.slow
def test_fresh_init_pictures(fresh, image, tmp_path):
  written = make.make_pictures(
    fresh["mimetic"], str(tmp_path), image=image, cell_px=CELL
  )
  assert set(written) == {"qk", "vo", "products", "attention", "summary"}
  assert png_size(tmp_path / "qk.png") == (HEADS * CELL, DEPTH * CELL)
  assert png_size(tmp_path / "vo.png") == (CELL, DEPTH * CELL)
  assert png_size(tmp_path / "products.png") == (
    (HEADS + 1) * CELL,
    DEPTH * CELL,
  )
  # Image | mean patch->patch matrix | mean map of the query patch.
  assert png_size(tmp_path / "attention.png") == (
    3 * CELL,
    min(4, DEPTH) * CELL,
  )

  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["init"] == "mimetic" and summary["step"] is None
  assert [layer["layer"] for layer in summary["layers"]] == [
    f"encoderblock_{i}/attention" for i in range(DEPTH)
  ]
  stats = diagnostics.attention_stats(fresh["mimetic"].params)
  for layer in summary["layers"]:
    for stat in diagnostics.STAT_NAMES:
      assert layer[stat] == pytest.approx(
        stats[f"{layer['layer']}/{stat}"], abs=1e-6
      )
    assert len(layer["qk_diag_per_head"]) == HEADS
    assert np.mean(layer["qk_diag_per_head"]) == pytest.approx(
      layer["qk_diag"], abs=1e-6
    )
  assert summary["mean"]["qk_diag"] > 0.3
  assert summary["mean"]["vo_diag"] == pytest.approx(-0.4, abs=0.1)
  attention = summary["attention"]
  assert attention["grid"] == list(GRID)
  assert len(attention["layers"]) == DEPTH
  maps = attention_maps.patch_attention(fresh["mimetic"], image)
  for layer, m in zip(attention["layers"], maps):
    assert layer["class_token_self"] == pytest.approx(
      float(m.class_token_self.mean()), abs=1e-6
    )


def test_default_init_has_no_diagonal(fresh, tmp_path):
  written = make.make_pictures(
    fresh["default"], str(tmp_path), cell_px=CELL, log=lambda _: None
  )
  assert "attention" not in written  # No image given.
  mean = json.loads((tmp_path / "summary.json").read_text())["mean"]
  assert abs(mean["qk_diag"]) < 0.05 and abs(mean["vo_diag"]) < 0.1


def test_per_head_attention_and_full_products(fresh, image, tmp_path):
  source = fresh["mimetic"]
  maps = attention_maps.patch_attention(source, image)
  path = figures.plot_attention(
    image,
    maps[:1],
    str(tmp_path / "a.png"),
    per_head=True,
    query=0,
    cell_px=CELL,
  )
  assert png_size(path) == ((1 + 2 * HEADS) * CELL, CELL)
  products = diagnostics.attention_products(source.params)
  path = figures.plot_products(
    products,
    str(tmp_path / "p.png"),
    crop=None,
    cell_px=CELL,
    vmax_quantile=1.0,
    title="t",
  )
  assert png_size(path) == ((HEADS + 1) * CELL, DEPTH * CELL)
  patches = GRID[0] * GRID[1]
  with pytest.raises(UserError, match=f"query={patches}"):
    figures.plot_attention(image, maps, str(tmp_path / "b.png"), query=patches)


@pytest.mark.slow
def test_attention_weights_match_an_independent_computation(fresh, image):
  """Sown weights equal softmax(q k^T / sqrt(head_dim)) recomputed in numpy
  from the block's LayerNorm output and query/key params."""
  source = fresh["mimetic"]
  inputs = jnp.asarray(image)[None]
  weights = attention_maps.attention_weights(
    source.model, source.params, inputs
  )
  assert list(weights) == [f"encoderblock_{i}/attention" for i in range(DEPTH)]
  tokens = 1 + GRID[0] * GRID[1]  # Class token + patches.
  _, state = source.model.apply(
    {"params": source.params},
    inputs,
    capture_intermediates=lambda m, _: isinstance(m, nn.LayerNorm),
  )
  for i in range(DEPTH):
    w = np.asarray(weights[f"encoderblock_{i}/attention"])
    assert w.shape == (1, HEADS, tokens, tokens)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    block = source.params[f"encoderblock_{i}"]["attention"]
    y = np.asarray(
      state["intermediates"][f"encoderblock_{i}"]["norm1"]["__call__"][0],
      np.float64,
    )
    project = lambda role: (
      np.einsum("btd,dhk->bthk", y, block[role]["kernel"])  # noqa: B023 (used in this iteration)
      + np.asarray(block[role]["bias"])  # noqa: B023 (used in this iteration)
    )
    q, k = project("query"), project("key")
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
    ref = np.exp(logits - logits.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(w, ref, atol=2e-5)


def test_mimetic_attention_is_local_default_is_not(fresh, image):
  """The paper's point: with W_q W_k^T ~ I the position embeddings make
  attention at init local; the default init attends almost uniformly."""
  uniform = attention_maps.uniform_distance(GRID)
  mimetic_maps = attention_maps.patch_attention(fresh["mimetic"], image)
  default_maps = attention_maps.patch_attention(fresh["default"], image)
  distance = attention_maps.mean_attention_distance
  assert distance(mimetic_maps[0]) < 0.85 * uniform
  assert distance(default_maps[0]) > 0.95 * uniform


@pytest.mark.slow
def test_mimetic_class_token_attends_to_itself_after_the_first_layer(image):
  """At ViT-Tiny width (d=192, head dim 64) the zero class token attends
  uniformly in the first layer (LayerNorm(0) = 0 gives it a zero query),
  then, once it holds something, identity-like W_q W_k^T makes it attend to
  itself: it stops reading the patches. Default init does not do this."""
  config = cifar10.get_config("cpu")
  config.model.depth = 3
  maps = {
    init: attention_maps.patch_attention(
      sources.fresh_source(config, init=init), image
    )
    for init in ("mimetic", "default")
  }
  patches = maps["default"][0].weights.shape[-1]
  np.testing.assert_allclose(
    maps["mimetic"][0].class_token_self, 1 / (patches + 1), rtol=1e-4
  )
  for m in maps["default"]:
    assert m.class_token_self.max() < 0.1
  for m in maps["mimetic"][1:]:
    assert m.class_token_self.min() > 0.8
  gap = smoke_config()
  gap.model.pool = "gap"
  gap_maps = attention_maps.patch_attention(sources.fresh_source(gap), image)
  assert all(m.class_token_self is None for m in gap_maps)


@pytest.mark.slow
def test_attention_maps_see_the_trainers_value_range(image):
  config = smoke_config()
  config.dataset.value_range = (-1.0, 1.0)
  source = sources.fresh_source(config, init="mimetic")
  maps = attention_maps.patch_attention(source, image)
  weights = attention_maps.attention_weights(
    source.model, source.params, jnp.asarray(image)[None] * 2.0 - 1.0
  )
  for m, w in zip(maps, weights.values()):
    np.testing.assert_allclose(
      m.weights, np.asarray(w)[0, :, 1:, 1:], atol=1e-6
    )


@pytest.mark.slow
def test_fresh_source_matches_the_trainers_step_zero(fresh):
  """Same seed, same params as `train.py`'s init, bar its classification
  head (up to float rounding: jitted versus eager SVDs)."""
  config = smoke_config()
  model = factory.make_model(config, DatasetInfo(num_classes=10))
  params = initialize(
    model,
    jax.random.fold_in(jax.random.key(config.seed), 0),
    jnp.zeros((1, SIZE, SIZE, 3)),
    init="mimetic",
  )
  assert set(params) - set(fresh["mimetic"].params) == {"head"}
  del params["head"]
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, atol=3e-5),
    params,
    fresh["mimetic"].params,
  )


# ----------------------------------------------------------------------------
# From a trainer workdir.
# ----------------------------------------------------------------------------


def trained_like_params(seed: int):
  """Params of the trainer's model (3 classes), moved away from any init."""
  config = smoke_config()
  model = factory.make_model(config, DatasetInfo(num_classes=3))
  params = initialize(
    model, jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3)), init="mimetic"
  )
  return model, jax.tree.map(lambda x: x * 1.5 + 0.01, params)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """config.json + checkpoints at steps 3 and 7, saved as the trainer does:
  a whole TrainState, replicated over all (8) devices."""
  root = tmp_path_factory.mktemp("workdir")
  config = smoke_config()
  (root / "config.json").write_text(config.to_json_best_effort(indent=2))
  mesh = jax.make_mesh((jax.device_count(),), (steps.AXIS,))
  replicated = jax.NamedSharding(mesh, jax.P())
  ckpt = checkpointing.Checkpointer(str(root), every_steps=1, max_to_keep=2)
  saved = {}
  for step in (3, 7):
    model, params = trained_like_params(step)
    state = steps.TrainState.create(
      apply_fn=model.apply, params=params, tx=optax.adamw(1e-3)
    )
    state = jax.device_put(state.replace(step=step), replicated)
    assert ckpt.maybe_save(step, state, force=True)
    saved[step] = params
  ckpt.wait()
  ckpt.close()
  return root, saved


@pytest.mark.slow
def test_workdir_source_restores_params_only(workdir):
  root, saved = workdir
  assert checkpointing.checkpoint_steps(str(root)) == [3, 7]
  source = sources.workdir_source(str(root))
  assert source.step == 7 and source.model.num_classes == 3
  jax.tree.map(np.testing.assert_array_equal, source.params, saved[7])
  leaf = jax.tree.leaves(source.params)[0]
  assert len(leaf.sharding.device_set) == 1
  earlier = sources.workdir_source(str(root), step=3)
  jax.tree.map(np.testing.assert_array_equal, earlier.params, saved[3])


@pytest.mark.slow
def test_checkpoint_pictures(workdir, image, tmp_path):
  root, _ = workdir
  source = sources.workdir_source(str(root))
  make.make_pictures(
    source, str(tmp_path), image=image, cell_px=CELL, attention_layers=1
  )
  assert png_size(tmp_path / "products.png") == (
    (HEADS + 1) * CELL,
    DEPTH * CELL,
  )
  assert png_size(tmp_path / "attention.png") == (3 * CELL, CELL)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["step"] == 7 and summary["init"] is None
  assert str(root) in summary["source"]


@pytest.mark.slow
def test_workdir_errors(workdir, tmp_path):
  with pytest.raises(UserError, match="is not a trainer workdir"):
    sources.workdir_source(str(tmp_path))
  (tmp_path / "config.json").write_text(smoke_config().to_json_best_effort())
  with pytest.raises(UserError, match="No finalized checkpoint"):
    sources.workdir_source(str(tmp_path))
  root, _ = workdir
  with pytest.raises(UserError, match=r"finalized steps there are \[3, 7\]"):
    sources.workdir_source(str(root), step=5)


def test_bad_image_is_a_clear_error(tmp_path):
  path = tmp_path / "not_an_image.png"
  path.write_text("hello")
  with pytest.raises(UserError, match="Cannot read the image"):
    attention_maps.load_image(str(path), 32)


def test_real_cifar10_image(cifar10_archive, fresh, tmp_path):
  with tarfile.open(cifar10_archive) as archive:
    member = next(
      m
      for m in archive
      if m.isfile() and "/test/" in m.name and m.name.endswith(".jpg")
    )
    path = tmp_path / pathlib.Path(member.name).name
    path.write_bytes(archive.extractfile(member).read())
  image = attention_maps.load_image(str(path), SIZE)
  make.make_pictures(
    fresh["mimetic"],
    str(tmp_path / "out"),
    image=image,
    image_path=str(path),
    cell_px=CELL,
  )
  assert png_size(tmp_path / "out" / "attention.png") == (
    3 * CELL,
    min(4, DEPTH) * CELL,
  )
  summary = json.loads((tmp_path / "out" / "summary.json").read_text())
  assert summary["attention"]["image"] == str(path)


# ----------------------------------------------------------------------------
# Command line (subprocesses).
# ----------------------------------------------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "mimetic_jax.pictures", *args],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )


@pytest.mark.e2e
def test_cli_fresh_init(image_path, tmp_path):
  result = run_cli(
    "--config",
    "configs/cifar10.py:smoke",
    "--init",
    "mimetic",
    "--out",
    str(tmp_path),
    "--image",
    str(image_path),
    "--cell_px",
    str(CELL),
  )
  assert result.returncode == 0, result.stderr
  for name in (
    "qk.png",
    "vo.png",
    "products.png",
    "attention.png",
    "summary.json",
  ):
    assert f"Wrote {tmp_path / name}" in result.stdout
  assert png_size(tmp_path / "qk.png") == (HEADS * CELL, DEPTH * CELL)


@pytest.mark.e2e
def test_cli_errors_are_one_paragraph(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  result = run_cli("--workdir", str(empty), "--out", str(tmp_path / "out"))
  assert result.returncode != 0
  assert "Error:" in result.stderr and "config.json does not exist" in (
    result.stderr
  )
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "out").exists()
