"""The mesh that splits a training batch over devices (GPUs, TPU cores, hosts).

fcn_jax leaves the number of CPU devices to JAX: one by default. oneDNN's convolutions
(`fcn_jax.onednn`) and jax 0.12's use every core from one device; with oneDNN, one device
per core oversubscribes the cores and trains 2-2.6x slower (measured by `python -m
benchmarks.cpu_strategy`; the figures are in `benchmarks/README.md`, "CPU strategy"). To
split a CPU batch anyway (e.g. with `lowering='cpu'`), ask JAX before it starts:
`JAX_NUM_CPU_DEVICES=N` (or `jax.config.update('jax_num_cpu_devices', N)`); the training
code is the same.
"""

import jax
import numpy as np
from jax.sharding import Mesh

from fcn_jax import errors


def batch_mesh(batch_size: int) -> Mesh:
  """A 'data' mesh over the most local devices that split `batch_size` evenly.

  Several processes (`jax.distributed`) use all global devices; the batch must divide.
  """
  devices = jax.devices()
  if jax.process_count() > 1:
    if batch_size % len(devices):
      raise errors.ConfigError(
          f'batch_size {batch_size} must be a multiple of the number of devices '
          f'({len(devices)})')
    return Mesh(np.asarray(devices), ('data',))
  count = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
  return Mesh(np.asarray(devices[:count]), ('data',))
