"""fcn_jax: fully convolutional networks in JAX/Flax (see README.md)."""
