"""mimetic-jax: mimetic initialization of self-attention layers in JAX/Flax."""

import pathlib

import setuptools

setuptools.setup(
  name="mimetic-jax",
  version="0.1.0",
  description=(
    "Mimetic initialization of self-attention layers (Trockman & Kolter, "
    "ICML 2023) for JAX/Flax, with ViT and causal-LM trainers."
  ),
  long_description=pathlib.Path("README.md").read_text(encoding="utf-8"),
  long_description_content_type="text/markdown",
  python_requires=">=3.11",
  packages=setuptools.find_packages(include=["mimetic_jax", "mimetic_jax.*"]),
  # Lower bounds: the oldest stack .ci/run tests (.ci/oldest.txt pins them).
  install_requires=[
    "jax>=0.7.1",
    "flax>=0.11.0",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11.20",
    "ml-collections>=1.0.0",
    # tfds prepares datasets with TensorFlow; the CPU build never touches
    # accelerators (we also hide them from TF explicitly).
    "tensorflow-datasets>=4.9.10",  # 4.9.9 breaks with protobuf 7.
    # 2.18 wants ml-dtypes < 0.5 (jax >= 0.7 needs >= 0.5); 2.19 wants
    # protobuf < 6, which the newest tensorflow-metadata (tfds) rejects.
    "tensorflow-cpu>=2.20",
    "tensorboard>=2.20",  # Event files, written without TensorFlow.
    "importlib_resources>=6.0",  # tfds 4.9.10 imports it without declaring it
    "dm-pix>=0.4.4",  # 0.4.3 calls jnp.reshape(newshape=), gone in jax 0.7.
    "pillow>=10.0",
    "sentencepiece>=0.2.0",
    "matplotlib>=3.8",
    "numpy>=1.26",
  ],
  extras_require={
    "test": ["pytest>=8.0", "pytest-xdist>=3.5"],
    # Cross-checks against PyTorch/timm (tests/test_reference.py); never
    # needed to train. torch 2.14.1 is the release tested here.
    "reference": ["torch>=2.14", "timm>=1.0.31"],
  },
)
