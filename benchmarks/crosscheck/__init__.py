"""Same-batch cross-check of the project's ViT against timm's (PyTorch).

Run as `python -m benchmarks.crosscheck`; see `__main__.py`.
"""
