r"""The memory-budget planner against the measured peak, up to a gigapixel image.

  python -m benchmarks.memory_budget      # about five minutes on 2 cores

Each row runs in a fresh process: patch_net (random weights), `inference.plan_memory` for the
budget, then `inference.predict_to_file` (float32 logits to `.npy`) from a uint8 `.npy` image
memory-mapped from disk (a streamed run: row bands of the image and the output are released
as the tiles pass, `tiled.release_rows`). The peak is the process's resident set high-water
mark (`VmHWM`, all of Python, JAX and the maps included), against the budget it was planned
for. Rewrites the "Memory budget" section of benchmarks/README.md.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app
from absl import flags
from flax import nnx

from benchmarks import report
from benchmarks import speed
from fcn_jax import inference
from fcn_jax import models

SECTION = '## Memory budget'
RUNS = ((8192, '1GB'), (8192, '600MB'), (32768, '1GB'), (32768, '2GB'))
FLAGS = flags.FLAGS


def _vm(field: str) -> int:
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ':'))


def _child(path: str, budget: str) -> None:
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  model.eval()
  image = inference.open_image(path)
  chosen = inference.plan_memory(model, image.shape, budget, streamed=True, image_itemsize=1)
  t0 = time.perf_counter()
  inference.predict_to_file(model, image, path[:-4] + f'_out_{budget}.npy', chosen.tile,
                            chosen.batch, progress=False)
  print(json.dumps({'tile': chosen.tile, 'batch': chosen.batch, 'estimate': chosen.estimate,
                    'budget': chosen.budget, 'peak': _vm('VmHWM'),
                    'seconds': time.perf_counter() - t0}))


def _image(folder: str, side: int) -> str:
  """A uint8 `(side, side, 3)` `.npy` on disk, written in bands (never whole in memory)."""
  path = os.path.join(folder, f'scan{side}.npy')
  out = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint8, shape=(side, side, 3))
  band = (np.random.default_rng(0).random((1024, side, 3)) * 255).astype(np.uint8)
  for top in range(0, side, 1024):
    out[top:top + 1024] = band[:side - top]
    out.flush()
  del out
  return path


def main(argv):
  del argv
  if FLAGS.child:
    return _child(FLAGS.child, FLAGS.budget)
  rows = []
  with tempfile.TemporaryDirectory() as folder:
    images = {}
    for side, budget in RUNS:
      if side not in images:
        images[side] = _image(folder, side)
      result = subprocess.run([sys.executable, '-m', 'benchmarks.memory_budget',
                               f'--child={images[side]}', f'--budget={budget}'],
                              capture_output=True, text=True, check=False)
      if result.returncode:
        raise RuntimeError(f'{side}² at {budget} failed: {result.stderr[-2000:]}')
      rows.append((side, budget, json.loads(result.stdout.strip().splitlines()[-1])))
      print(rows[-1], flush=True)
  lines = [SECTION, '',
           f'`python -m benchmarks.memory_budget` on {speed.cpu_name()}, jax {jax.__version__}: '
           'patch_net (random weights) from a uint8 `.npy` memory-mapped from disk to float32 '
           'logits `.npy`, tile and batch chosen by `inference.plan_memory(..., streamed=True)`; '
           'each run in a fresh process; "measured peak" is its whole resident set\'s '
           'high-water mark (`VmHWM`: Python, JAX, XLA, the maps).', '',
           '| image | pixels | budget | chosen tile, batch | estimate MB | measured peak MB | '
           'peak / budget | seconds | Mpixel/s |', '|---|---:|---|---|---:|---:|---:|---:|---:|']
  for side, budget, r in rows:
    lines.append(f'| {side}×{side} uint8 | {side * side / 1e6:,.0f} M | {budget} | {r["tile"]}, '
                 f'{r["batch"]} | {r["estimate"] / 2 ** 20:,.0f} | {r["peak"] / 2 ** 20:,.0f} | '
                 f'{r["peak"] / r["budget"]:.2f} | {r["seconds"]:.0f} | '
                 f'{side * side / r["seconds"] / 1e6:.1f} |')
  report.write_section('\n'.join(lines) + '\n')


if __name__ == '__main__':
  flags.DEFINE_string('child', None, 'Internal: run one prediction of this image.')
  flags.DEFINE_string('budget', None, 'Internal: the budget of --child.')
  app.run(main)
