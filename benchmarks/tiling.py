r"""Whole-image vs exact tiled inference: throughput, peak memory, compilations; a gigapixel run.

  python -m benchmarks.tiling            # 256^2 ... 16384^2 and a 32768^2 uint8 image from disk
  python -m benchmarks.tiling --quick    # 256^2 and 1024^2 only (a minute)

Each measurement runs in a fresh subprocess so that its peak RSS is its own.
The model is configs/default.py's patch_net (random weights: speed does not
depend on them). Whole-image runs stop at 4096^2 (16384^2 would need > 24 GiB);
tiled runs use 512-pixel tiles in batches of 8. Rewrites the "Tiled inference"
section of benchmarks/README.md.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from benchmarks import report

FLAGS = flags.FLAGS
TILE, BATCH = 512, 8


def measure(method: str, size: int, path: str | None) -> dict:
  """Runs in the child process: one method at one size; returns the figures."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from fcn_jax import inference  # pylint: disable=g-import-not-at-top
  from fcn_jax import models  # pylint: disable=g-import-not-at-top

  model = models.get_model(default.get_config().model, rngs=nnx.Rngs(0))
  model.eval()
  if path:  # out of core: uint8 memory map in, npy memory map out
    image = inference.open_image(path)
    out = path + '.out.npy'
    t0 = time.perf_counter()
    inference.predict_to_file(model, image, out, TILE, BATCH, progress=False)
    seconds = time.perf_counter() - t0
    os.remove(out)
    first = seconds
  else:
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    run = ((lambda: inference.predict(model, image)) if method == 'whole' else
           (lambda: inference.predict_tiled(model, image, TILE, BATCH)))
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(3 if size <= 4096 else 1):
      t0 = time.perf_counter()
      run()
      times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
  return {'method': method, 'size': size, 'seconds': seconds,
          'mpix_per_s': size * size / 1e6 / seconds,
          'compile_s': max(first - seconds, 0.0),
          'compilations': inference.compilations() if method != 'whole' else 1,
          'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(method: str, size: int, path: str | None = None) -> dict:
  cmd = [sys.executable, '-m', 'benchmarks.tiling', f'--one={method}:{size}']
  if path:
    cmd.append(f'--path={path}')
  out = subprocess.run(cmd, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _gigapixel_file(size: int, directory: str) -> str:
  """A `size`x`size`x3 uint8 .npy of smooth noise, written in row blocks (never all in RAM)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, f'image_{size}.npy')
  image = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint8, shape=(size, size, 3))
  rng = np.random.default_rng(0)
  for top in range(0, size, 1024):
    image[top:top + 1024] = rng.integers(0, 256, (min(1024, size - top), size, 3), np.uint8)
  image.flush()
  del image
  return path


def table(rows: list[dict]) -> str:
  lines = ['| input | method | Mpixel/s | compile (s) | compilations | peak RSS (MB) |',
           '|---|---|---:|---:|---:|---:|']
  for r in rows:
    lines.append(f'| {r["size"]}² | {r["method"]} | {r["mpix_per_s"]:.2f} | '
                 f'{r["compile_s"]:.2f} | {r["compilations"]} | {r["peak_rss_mb"]:,.0f} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  if FLAGS.one:
    method, size = FLAGS.one.split(':')
    print(json.dumps(measure(method, int(size), FLAGS.path)))
    return
  sizes = [256, 1024] if FLAGS.quick else [256, 1024, 4096, 16384]
  rows = []
  for size in sizes:
    for method in ('whole', 'tiled'):
      if method == 'whole' and size > 4096:
        continue
      rows.append(_child(method, size))
      print(rows[-1], flush=True)
  giga = None
  if not FLAGS.quick:
    with tempfile.TemporaryDirectory(dir=FLAGS.scratch) as scratch:
      path = _gigapixel_file(FLAGS.giga, scratch)
      giga = _child('tiled-from-disk', FLAGS.giga, path)
      print(giga, flush=True)
      rows.append(giga)
  speed = {(r['method'], r['size']): r['mpix_per_s'] for r in rows if 'mpix_per_s' in r}
  both = max((size for method, size in speed if method == 'whole' and ('tiled', size) in speed),
             default=None)
  share = (f'at {both}², tiled runs at {speed["tiled", both] / speed["whole", both]:.0%} of the '
           'whole-image speed' if both else 'tiled runs')
  text = ['## Tiled inference', '',
          f'`python -m benchmarks.tiling{" --quick" if FLAGS.quick else ""}` on this machine '
          f'(2 CPU cores): configs/default.py\'s patch_net ({TILE}-pixel tiles, batches of '
          f'{BATCH}); every row in its own process, so peak RSS is its own. "whole" = '
          '`inference.predict`, "tiled" = `inference.predict_tiled` (same output to 1e-5), '
          '"tiled-from-disk" = `inference.predict_to_file` from a uint8 `.npy` memory map. '
          'Throughput is the median of 3 runs after the first (1 run at 16384² and above); '
          'compile = first run minus a steady run.', '', table(rows), '',
          'Reading: tiles pay for their halos and, on images smaller than one batch of '
          f'tiles, for padding the batch (use whole-image inference there); {share}, '
          'with one compilation for every size. Peak RSS of the 16384² '
          'in-memory run is mostly its 3.2 GB float32 input. For '
          'the memory-mapped runs RSS counts the clean, file-backed pages of the input map '
          'that were read (the kernel drops them under memory pressure); the anonymous memory '
          'is one batch of windows and the model.']
  report.write_section('\n'.join(text))


if __name__ == '__main__':
  flags.DEFINE_bool('quick', False, 'Small sizes only, no gigapixel run.')
  flags.DEFINE_string('one', None, 'Internal: measure one method:size in this process.')
  flags.DEFINE_string('path', None, 'Internal: the input file of --one.')
  flags.DEFINE_integer('giga', 32768, 'Side of the gigapixel image read from disk.')
  flags.DEFINE_string('scratch', None, 'Folder for the gigapixel file (default: the temp dir).')
  app.run(main)
