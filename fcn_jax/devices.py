"""CPU cores as JAX devices, and the meshes that split work over them.

XLA:CPU runs most convolution kernels (and their gradients) on one thread, so a
jitted network leaves the other cores idle (measured: `benchmarks/README.md`).
On CPU, importing `fcn_jax` therefore asks JAX for one CPU device per usable
core, and the work is split over them the way it is over GPUs: training splits
the batch (`batch_mesh`), whole-image inference splits the image into row
bands (`fcn_jax.inference.band_rows`) or halves (`row_sharding`; XLA's SPMD
partitioner exchanges the halos each convolution needs), tiled inference the
tiles (`batch_sharding`); the results are the same function. Measured side by side on 2 cores:
patch_net training 1.9x, 1024^2 inference 2.0x.

`FCN_JAX_CPU_DEVICES=N` overrides the count (`1` turns this off). Nothing is
changed when JAX's backends are already running, when the user has set
`jax_num_cpu_devices` or `--xla_force_host_platform_device_count` themselves,
or on GPU/TPU machines (the setting only concerns the CPU platform).
"""

import logging
import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

logger = logging.getLogger(__name__)

ENV = 'FCN_JAX_CPU_DEVICES'


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def use_all_cores() -> None:
  """Asks JAX for one CPU device per usable core (or `$FCN_JAX_CPU_DEVICES`), if still possible."""
  wanted = os.environ.get(ENV)
  try:
    count = int(wanted) if wanted else usable_cores()
  except ValueError as e:
    raise ValueError(f'{ENV} must be a whole number of CPU devices, got {wanted!r}') from e
  if (count < 1 or jax.config.jax_num_cpu_devices != -1 or
      'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', '')):
    return
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError:  # JAX refuses once its backends are running
    if wanted:
      logger.warning('%s=%s ignored: JAX was already running before fcn_jax was imported',
                     ENV, wanted)


def batch_mesh(batch_size: int) -> Mesh:
  """A 'data' mesh over the most local devices that split `batch_size` evenly.

  Several processes (`jax.distributed`) use all global devices; the batch must divide.
  """
  devices = jax.devices()
  if jax.process_count() > 1:
    if batch_size % len(devices):
      raise ValueError(f'batch_size {batch_size} must be a multiple of the number of devices '
                       f'({len(devices)})')
    return Mesh(np.asarray(devices), ('data',))
  count = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
  return Mesh(np.asarray(devices[:count]), ('data',))


def row_sharding(shape, min_rows: int = 256) -> NamedSharding | None:
  """Splits an `(N, H, W, C)` input's rows over the local CPU devices, or None (one device).

  Only when there are several devices, `H` divides evenly and each gets `min_rows` rows:
  below that the split costs more than it saves (patch_net on 2 cores: 256^2 runs at 11.2
  Mpixel/s on one device, 7.4 split; 512^2 at 17.0 on one, 20.5 split).
  """
  devices = jax.local_devices()
  n = len(devices)
  if n < 2 or devices[0].platform != 'cpu' or shape[1] % n or shape[1] // n < min_rows:
    return None
  return NamedSharding(Mesh(np.asarray(devices), ('rows',)), P(None, 'rows'))


def batch_sharding(shape) -> NamedSharding | None:
  """Splits a batch (e.g. of tiles) over the local CPU devices, or None when it does not divide."""
  devices = jax.local_devices()
  n = len(devices)
  if n < 2 or devices[0].platform != 'cpu' or shape[0] % n:
    return None
  return NamedSharding(Mesh(np.asarray(devices), ('data',)), P('data'))


def replicate(model: nnx.Module, sharding: NamedSharding | None) -> nnx.Module:
  """`model` with its parameters copied to every device of `sharding`'s mesh (as it is when
  None), ready for a jitted call whose inputs are split by `sharding`."""
  if sharding is None:
    return model
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, jax.device_put(state, NamedSharding(sharding.mesh, P())))


def place(arrays, sharding: NamedSharding | None) -> list:
  """`arrays` split over devices as `sharding` says (as they are when None)."""
  return list(arrays) if sharding is None else [jax.device_put(a, sharding) for a in arrays]
