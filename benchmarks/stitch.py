r"""Shift-and-stitch against the naive loop it replaces: the net run once per output window.

  python -m benchmarks.stitch      # about half a minute on 2 cores

patch_net with valid padding (so a window's output is exactly the dense output there):
`inference.shift_and_stitch(model, image, d)` against the net on every output's own
receptive-field window (cut with NumPy, batched 512 windows per jitted call), at output
strides d = 1 and 2 on square images. Both sides are timed after one warm-up call (so
compilation is excluded), median of 3. Rewrites the "Shift-and-stitch" section of
benchmarks/README.md.
"""

import statistics
import time

import jax
import numpy as np
from absl import app
from flax import nnx

from benchmarks import report
from benchmarks import speed
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import models

SECTION = '## Shift-and-stitch'
SIZES = (64, 128, 256, 512)
WINDOWS_PER_CALL = 512


@nnx.jit
def _windows_forward(model, windows):
  return model(windows)


def naive(model, image: np.ndarray, stride: int) -> np.ndarray:
  """The dense output by running the net on each output's window (the loop stitching saves)."""
  rf = int(geometry.of(model).receptive_field[0])
  rows = range(0, image.shape[0] - rf + 1, stride)
  cols = range(0, image.shape[1] - rf + 1, stride)
  starts = [(r, c) for r in rows for c in cols]
  out = []
  for first in range(0, len(starts), WINDOWS_PER_CALL):
    chunk = starts[first:first + WINDOWS_PER_CALL]
    batch = np.zeros((WINDOWS_PER_CALL, rf, rf, image.shape[2]), np.float32)
    for k, (r, c) in enumerate(chunk):
      batch[k] = image[r:r + rf, c:c + rf]
    out.append(np.asarray(jax.device_get(_windows_forward(model, batch)))[:len(chunk), 0, 0])
  return np.concatenate(out).reshape(len(rows), len(cols), -1)


def _timed(fn) -> tuple[float, np.ndarray]:
  result = fn()  # warm-up: compilation
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), result


def main(argv):
  del argv
  model = models.get_model(dict(name='patch_net', padding='valid'), rngs=nnx.Rngs(0))
  model.eval()
  rows = []
  for size in SIZES:
    image = np.random.default_rng(size).random((size, size, 3), dtype=np.float32)
    for stride in (1, 2):
      t_stitch, dense = _timed(lambda: inference.shift_and_stitch(model, image, stride))
      t_naive, windows = _timed(lambda: naive(model, image, stride))
      n = min(dense.shape[0], windows.shape[0]), min(dense.shape[1], windows.shape[1])
      diff = float(np.abs(dense[:n[0], :n[1]] - windows[:n[0], :n[1]]).max())
      rows.append((size, stride, dense.shape, windows.shape[0] * windows.shape[1], t_stitch,
                   t_naive, diff))
      print(rows[-1], flush=True)
  lines = [SECTION, '',
           f'`python -m benchmarks.stitch` on {speed.cpu_name()}, jax {jax.__version__}: '
           '`inference.shift_and_stitch` against the net run once per output window (patch_net, '
           'valid padding, receptive field 15, stride 8; windows batched '
           f'{WINDOWS_PER_CALL} per jitted call), median of 3 after a warm-up call. "max |diff|" '
           'compares the two dense outputs where both exist.', '',
           '| image | output stride | dense output | windows | stitch ms | naive ms | '
           'naive / stitch | max \\|diff\\| |', '|---|---:|---|---:|---:|---:|---:|---:|']
  for size, stride, shape, windows, t_s, t_n, diff in rows:
    lines.append(f'| {size}² | {stride} | {shape[0]}×{shape[1]} | {windows:,} | {1e3 * t_s:.1f} | '
                 f'{1e3 * t_n:.1f} | {t_n / t_s:.1f}× | {diff:.1e} |')
  report.write_section('\n'.join(lines) + '\n')


if __name__ == '__main__':
  app.run(main)
