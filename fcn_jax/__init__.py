"""fcn_jax: fully convolutional networks in JAX/Flax (see README.md)."""

from fcn_jax import devices as _devices

_devices.use_all_cores()
