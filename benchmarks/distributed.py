r"""Many processes on one image, and the memory of streamed outputs.

  python -m benchmarks.distributed      # about eight minutes on 2 cores

1. Speed: patch_net on a 4096×4096 and a U-Net on a 2048×2048 uint8 `.npy` scan (random
   weights), exact tiles of 512, written to `.zarr` logits: `inference.predict_to_file` in one process against
   `inference.predict_to_zarr` (2 × 2 tiles per Dask task) on Dask's local threads, on a
   `LocalCluster` of 1 process × all cores and of 2 processes × half the cores each. Each
   row is timed after a warm-up run on the same cluster (compilation excluded); the
   cluster's start is reported apart. Median of 3.
2. Peak memory (the resident set's high-water mark `VmHWM`, reset through
   `/proc/self/clear_refs` after loading JAX, the model and the map, minus the resident set
   then; each in a fresh process): a 3-class encoder-decoder (output the image's size) on
   2048² and 4096² scans, whole-image logits held in memory (`predict_tiled` + `np.save`)
   against the streamed outputs of `predict_to_file`.

Rewrites the "Many processes on one image" section of benchmarks/README.md.
"""

import os
import shutil
import statistics
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
from benchmarks import workload
from fcn_jax import inference
from fcn_jax import models

SECTION = '## Many processes on one image'
TILE = 512
FLAGS = flags.FLAGS


def _timed(run) -> float:
  """Median seconds of 3 runs after a warm-up run (compilation, per process)."""
  return statistics.median(workload.timed(run, 3)[1])


def _fresh(path: str) -> str:
  for p in (path, path + '.source.json'):
    if os.path.isdir(p):
      shutil.rmtree(p)
    elif os.path.exists(p):
      os.remove(p)
  return path


SPEED_MODELS = (('patch_net', dict(name='patch_net'), 4096, 3),
                ('U-Net (depth 4, width 16, same)', dict(name='unet', in_channels=3, depth=4,
                                                         width=16, padding='same'), 2048, 3))


def speed_rows(folder: str) -> list[tuple[str, str, int, float, float | None]]:
  """(model, how, image side, seconds, cluster start seconds) per model and way of running."""
  from dask import distributed as dask_distributed  # pylint: disable=g-import-not-at-top
  cores = os.cpu_count() or 1
  rows = []
  for label, spec, side, channels in SPEED_MODELS:
    model = models.get_model(spec, rngs=nnx.Rngs(0))
    model.eval()
    scan = os.path.join(folder, f'scan{side}.npy')
    np.save(scan, (np.random.default_rng(0).random((side, side, channels)) * 255).astype(
        np.uint8))
    out = os.path.join(folder, 'out.zarr')
    source = inference.open_image(scan)
    rows.append((label, 'one process: predict_to_file', side, _timed(
        lambda: inference.predict_to_file(model, source, _fresh(out), TILE, 4, progress=False)),
                 None))
    rows.append((label, 'Dask local threads: predict_to_zarr', side, _timed(
        lambda: inference.predict_to_zarr(model, scan, _fresh(out), TILE)), None))
    for workers in (1, 2):
      t0 = time.perf_counter()
      threads = max(1, cores // workers)
      with dask_distributed.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                         processes=True, dashboard_address=None) as cluster, \
           dask_distributed.Client(cluster) as client:
        client.wait_for_workers(workers)
        start = time.perf_counter() - t0
        seconds = _timed(lambda: inference.predict_to_zarr(model, scan, _fresh(out), TILE,
                                                           client=client))
      rows.append((label, f'LocalCluster {workers} process(es) × {threads} thread(s)', side,
                   seconds, start))
      print(rows[-1], flush=True)
  return rows


def _child(kind: str, scan: str) -> None:
  """One peak-memory measurement (prints `baseline_kb peak_kb`)."""
  model = models.get_model(dict(name='encoder_decoder', out_channels=3), rngs=nnx.Rngs(0))
  source = inference.open_image(scan)
  inference.predict(model, np.zeros((64, 64, 3), np.float32))  # JAX and XLA loaded
  # The high-water mark from here on: ru_maxrss would carry the parent's across fork and exec.
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
  baseline = _status_kb('VmRSS')
  stem = os.path.splitext(os.path.basename(scan))[0]
  out = os.path.join(os.path.dirname(scan), f'{stem}_{kind.split(" ")[0].replace("+", "_")}')
  if kind == 'in-memory logits':
    np.save(out + '.npy', inference.predict_tiled(model, source, TILE, 4))
  else:
    values, ext = kind.split(' ')
    inference.predict_to_file(model, source, out + ext, TILE, 4, progress=False, values=values)
  print(baseline, _status_kb('VmHWM'))


def _status_kb(field: str) -> int:
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


MEMORY_KINDS = ('in-memory logits', 'logits .zarr', 'labels .zarr', 'labels+confidence .npy',
                'probabilities .ome.zarr', 'labels .ome.zarr')


MEMORY_SIZES = (2048, 4096)


def memory_rows(folder: str) -> list[tuple[str, list[float]]]:
  """Per output kind, the peak growth in MiB at each of `MEMORY_SIZES`."""
  scans = []
  for size in MEMORY_SIZES:
    scans.append(os.path.join(folder, f'mem{size}.npy'))
    np.save(scans[-1], (np.random.default_rng(1).random((size, size, 3)) * 255).astype(np.uint8))
  rows = []
  for kind in MEMORY_KINDS:
    growth = []
    for scan in scans:
      result = subprocess.run([sys.executable, '-m', 'benchmarks.distributed',
                               f'--child={kind}', f'--scan={scan}'], capture_output=True,
                              text=True, check=False)
      if result.returncode:
        raise RuntimeError(f'{kind} on {scan} failed: {result.stderr[-2000:]}')
      baseline, peak = map(int, result.stdout.split()[-2:])
      growth.append((peak - baseline) / 1024)
    rows.append((kind, growth))
    print(rows[-1], flush=True)
  return rows


def main(argv):
  del argv
  if FLAGS.child:
    return _child(FLAGS.child, FLAGS.scan)
  with tempfile.TemporaryDirectory() as folder:
    fast = speed_rows(folder)
    memory = memory_rows(folder)
  lines = [SECTION, '',
           f'`python -m benchmarks.distributed` on {speed.cpu_name()}, jax {jax.__version__}.', '',
           f'**Speed**: random weights, uint8 `.npy` scans, exact tiles of {TILE} (batch 4 in one '
           'process; 2 × 2 tiles per Dask task), float32 logits to `.zarr`; median of 3 after a '
           'warm-up run on the same cluster (compilation excluded; the cluster\'s start apart). '
           'Every output equals the single-process one (tested in `tests/test_distributed.py`).',
           '', '| model | image | how | seconds | Mpixel/s | vs one process | cluster start s |',
           '|---|---|---|---:|---:|---:|---:|']
  one = {}
  for label, how, side, seconds, start in fast:
    one.setdefault(label, seconds)
    lines.append(f'| {label} | {side}² | {how} | {seconds:.2f} | {side * side / seconds / 1e6:.1f} '
                 f'| {one[label] / seconds:.2f}× | {"" if start is None else f"{start:.1f}"} |')
  sizes = ' and '.join(f'{n}×{n}' for n in MEMORY_SIZES)
  logits = ' and '.join(f'{n * n * 3 * 4 / 2 ** 20:.0f}' for n in MEMORY_SIZES)
  lines += ['', f'**Peak memory of streamed outputs**: a 3-class encoder-decoder (random weights, '
            f'output of the image\'s size: {logits} MiB of float32 logits) on uint8 scans of '
            f'{sizes} (memory-mapped), tiles of {TILE}, batch 4; each in a fresh process: the '
            'growth of the resident set\'s high-water mark over the resident set after loading '
            'JAX, the model and the map (`VmHWM` reset through `/proc/self/clear_refs`). A '
            'streamed output\'s growth is mostly one batch of tiles through XLA and grows far '
            'less than the logits (by row bands; OME-Zarr adds Dask\'s pyramid chunks); the '
            'in-memory logits grow with the image.', '',
            '| output | ' + ' | '.join(f'peak growth at {n}² MiB' for n in MEMORY_SIZES) + ' |',
            '|---|' + '---:|' * len(MEMORY_SIZES)]
  for kind, growth in memory:
    lines.append(f'| {kind} | ' + ' | '.join(f'{g:.0f}' for g in growth) + ' |')
  report.write_section('\n'.join(lines) + '\n')


if __name__ == '__main__':
  flags.DEFINE_string('child', None, 'Internal: one memory measurement in this process.')
  flags.DEFINE_string('scan', None, 'Internal: the scan of the memory measurement.')
  app.run(main)
