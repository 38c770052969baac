"""The benchmark inputs and timing loop, shared by the JAX and the PyTorch side (NumPy only).

The PyTorch peers run in their own Python (`benchmarks/torch_peers.py`), so what both sides
must agree on lives here and imports neither framework.
"""

import statistics
import time

import numpy as np


# The models trained on a heat map (stride 8, one channel; the others: per-pixel classes).
HEATMAP_MODELS = ('patch_net', 'user_net')


def batch(name: str, size_batch: int, size: int):
  """Inputs and targets of a training step: NHWC images and, for HEATMAP_MODELS, an `(N, H/8,
  W/8, 1)` heat map, otherwise `(N, H, W)` class indices in {0, 1}."""
  rng = np.random.default_rng(0)
  x = rng.random((size_batch, size, size, 3), dtype=np.float32)
  if name in HEATMAP_MODELS:
    return x, rng.random((size_batch, size // 8, size // 8, 1), dtype=np.float32)
  return x, rng.integers(0, 2, (size_batch, size, size)).astype(np.int32)


def image(size: int) -> np.ndarray:
  """The `(1, size, size, 3)` inference input."""
  return np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)


def timed(run, repeats: int, inner: int = 1, wait=lambda result: result, warmup: int = 0):
  """(seconds of the first call, [seconds of each of `repeats` runs of `inner` calls]).

  `wait(result)` blocks until the last call's work is done (JAX dispatches asynchronously:
  `jax.block_until_ready`); it runs after the first call and after each run of `inner` calls.
  `warmup` untimed calls follow the first: a fresh process's first calls after the compiling
  one are slower than its later ones (allocator and page-fault warm-up, on both frameworks).
  """
  t0 = time.perf_counter()
  wait(run())
  first = time.perf_counter() - t0
  for _ in range(warmup):
    wait(run())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(inner):
      result = run()
    wait(result)
    times.append(time.perf_counter() - t0)
  return first, times


def stats(times: list[float]) -> dict:
  return {'median': statistics.median(times), 'min': min(times), 'max': max(times)}
