"""Pictures of attention structure (the idea of the paper's Figure 1).

For a fresh initialization or a trained checkpoint (`sources`), draws the
weight products `W_q^h (W_k^h)^T` and `W_v W_o` of every layer and, on an
image, the softmax attention of a ViT (`attention_maps`, `figures`), and
writes them with per-layer numbers as `summary.json` (`make`). The command
line is `python -m mimetic_jax.pictures` (`__main__`).

Conventions: Flax kernels are `(in, out)`; attention q/k/v kernels
`(d, heads, head_dim)`, out `(heads, head_dim, d)`; images `(H, W, 3)` float
in [0, 1]; attention weights `(heads, queries, keys)`, rows summing to 1.
"""
