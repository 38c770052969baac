r"""What test-time augmentation costs: `predict_tta` against one plain pass.

  python -m benchmarks.tta      # about a minute on 2 cores

patch_net (the default config's net, random weights) on a 1025x1025 image (8k + 1, so
flipped views map back exactly), whole-image passes: views 'none', 'flips' (4), 'd4' (8),
and 'd4' at scales (1, 0.5, 1.5) (24 passes). Median of 3 after a warm-up call (which
compiles). Rewrites the "Test-time augmentation" section of benchmarks/README.md.
"""

import statistics
import time

import jax
import numpy as np
from absl import app
from flax import nnx

from benchmarks import report
from benchmarks import speed
from fcn_jax import inference
from fcn_jax import models
from fcn_jax.inference import tta

SECTION = '## Test-time augmentation'
SIZE = 1025
CASES = (('none', (1.0,)), ('flips', (1.0,)), ('d4', (1.0,)), ('d4', (1.0, 0.5, 1.5)))


def _median_seconds(fn) -> float:
  fn()
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main(argv):
  del argv
  model = models.get_model(dict(name='patch_net', features=(32, 64, 128), head=(32, 1)),
                           rngs=nnx.Rngs(0))
  model.eval()
  image = np.random.default_rng(0).random((SIZE, SIZE, 3), dtype=np.float32)
  plain = _median_seconds(lambda: inference.predict(model, image))
  rows = []
  for views, scales in CASES:
    passes = len(tta.VIEWS[views]) * len(scales)
    seconds = _median_seconds(lambda: inference.predict_tta(model, image, views, scales))
    rows.append((views, scales, passes, seconds))
    print(rows[-1], flush=True)
  lines = [SECTION, '',
           f'`python -m benchmarks.tta` on {speed.cpu_name()}, jax {jax.__version__}: '
           f'`inference.predict_tta` on a {SIZE}² image (patch_net, whole-image passes) against '
           f'one plain `predict` ({1e3 * plain:.0f} ms), median of 3 after a warm-up call.', '',
           '| views | scales | passes | ms | × one pass | per pass, × one pass |',
           '|---|---|---:|---:|---:|---:|']
  for views, scales, passes, seconds in rows:
    lines.append(f'| {views} | {", ".join(f"{r:g}" for r in scales)} | {passes} | '
                 f'{1e3 * seconds:.0f} | {seconds / plain:.1f}× | {seconds / plain / passes:.2f}× |')
  report.write_section('\n'.join(lines) + '\n')


if __name__ == '__main__':
  app.run(main)
