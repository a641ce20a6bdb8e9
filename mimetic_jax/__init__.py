"""mimetic-jax: mimetic initialization of self-attention layers in JAX/Flax.

    from mimetic_jax import mimetic_params, mimetic_init
"""

from mimetic_jax.mimetic import attention_kernels
from mimetic_jax.mimetic import mimetic_factors
from mimetic_jax.mimetic import mimetic_init
from mimetic_jax.mimetic import mimetic_params

__all__ = ["attention_kernels", "mimetic_factors", "mimetic_init",
           "mimetic_params"]
__version__ = "0.1.0"
