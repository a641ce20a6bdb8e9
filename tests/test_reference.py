"""The project's ViT computes what timm's `VisionTransformer` computes.

Flax params (default and mimetic init) are copied into timm's ViT of the same
architecture with `mimetic_jax.timm_port`, and both run real CIFAR-10 test
images in float32. Conventions that differ and how they are matched (see
`timm_port`'s docstring for the details):

* input: neither model normalises; both get the pixels the trainer gives
  (`tasks.to_value_range` onto the default `dataset.value_range`);
* patch embedding layout: HWIO -> OIHW;
* position embedding: fixed 2-D sin-cos on the patch tokens only
  (`no_embed_class=True`);
* fused `qkv` rows vs separate `query`/`key`/`value` kernels, head-major;
  attention scale `head_dim ** -0.5` in both;
* Flax `(in, out)` kernels vs torch `(out, in)` weights;
* GELU: tanh approximation (Flax default) vs exact erf (timm): the Flax model
  is built with `gelu_approximate=False`;
* LayerNorm epsilon 1e-6 in both;
* GAP: final norm, then the token mean (`global_pool='avg'`,
  `fc_norm=False`).

Needs the `reference` extra (torch, timm); skips with the reason otherwise.
"""

import io
import sys
import tarfile

import jax
import numpy as np
import PIL.Image
import pytest

from configs import cifar10
from mimetic_jax import tasks
from mimetic_jax.models import ViT, initialize

# torch's CUDA build imports triton, whose native library crashes the process
# when loaded after what the rest of the suite loads (TensorFlow, h5py, ...);
# these CPU-only checks never need it, and torch runs without it.
sys.modules.setdefault("triton", None)
torch = pytest.importorskip(
  "torch", reason="needs PyTorch: pip install -e '.[reference]'"
)
pytest.importorskip("timm", reason="needs timm: pip install -e '.[reference]'")
from mimetic_jax import timm_port  # noqa: E402 (after the triton stub / importorskip)

# Imports torch and timm and builds ViTs of width 192: seconds per test.
pytestmark = pytest.mark.slow

NUM_IMAGES = 8
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def cifar10_images(cifar10_archive) -> np.ndarray:
  """The first `NUM_IMAGES` test JPEGs of the archive, float32, mapped onto
  the default `dataset.value_range` as the trainer maps them."""
  images = []
  with tarfile.open(cifar10_archive, "r|gz") as tar:
    for member in tar:
      if member.isfile() and "/test/" in member.name:
        data = tar.extractfile(member).read()
        images.append(
          np.asarray(
            PIL.Image.open(io.BytesIO(data)).convert("RGB"), np.float32
          )
          / 255
        )
        if len(images) == NUM_IMAGES:
          break
  return np.asarray(
    tasks.to_value_range(np.stack(images), cifar10.get_config().dataset)
  )


def _timm_features(model, params, images):
  """`(timm ViT with params ported, its pre-logits tensor for images)`."""
  vit = timm_port.timm_vit(model, image_size=images.shape[1]).eval()
  timm_port.load_params(vit, jax.tree.map(np.asarray, params))
  inputs = torch.from_numpy(images).permute(0, 3, 1, 2)
  with torch.no_grad():
    return vit, vit.forward_head(vit.forward_features(inputs), pre_logits=True)


@pytest.mark.parametrize("pool", ["token", "gap"])
@pytest.mark.parametrize("init", ["default", "mimetic"])
def test_ported_params_give_the_same_logits(cifar10_images, init, pool):
  model = ViT(
    num_classes=10,
    patch_size=4,
    width=192,
    depth=6,
    mlp_dim=768,
    num_heads=3,
    pool=pool,
    gelu_approximate=False,
  )
  params = initialize(model, jax.random.key(0), cifar10_images, init=init)
  # The head is zero-initialised; a random one makes the logits informative.
  params["head"]["kernel"] = 0.1 * jax.random.normal(
    jax.random.key(1), params["head"]["kernel"].shape
  )
  params["head"]["bias"] = 0.1 * jax.random.normal(
    jax.random.key(2), params["head"]["bias"].shape
  )
  logits, intermediates = model.apply({"params": params}, cifar10_images)

  vit, features = _timm_features(model, params, cifar10_images)
  with torch.no_grad():
    timm_logits = vit.head(features)

  assert float(np.abs(logits).std()) > 0.1  # Not trivially equal.
  np.testing.assert_allclose(
    features.numpy(),
    intermediates["pre_logits"],
    atol=TOLERANCE,
    rtol=TOLERANCE,
  )
  np.testing.assert_allclose(
    timm_logits.numpy(), logits, atol=TOLERANCE, rtol=TOLERANCE
  )


def test_gelu_convention_matters(cifar10_images):
  """The tanh-approximate GELU (the Flax default) is *not* what timm
  computes: a wrong convention is caught, not hidden by the tolerance."""
  model = ViT(
    num_classes=0, patch_size=4, width=192, depth=6, mlp_dim=768, num_heads=3
  )
  params = initialize(model, jax.random.key(0), cifar10_images)
  features, _ = model.apply({"params": params}, cifar10_images)
  _, timm_features = _timm_features(model, params, cifar10_images)
  assert np.abs(timm_features.numpy() - np.asarray(features)).max() > TOLERANCE
