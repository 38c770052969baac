r"""Runs a trained model on image files of any (valid) size.

  python -m fcn_jax.predict --workdir=/tmp/fcn_default --input='photos/*.png' --output=/tmp/out
  python -m fcn_jax.predict --workdir=/tmp/fcn_default --input=scan.npy --tile=512  # huge image
  python -m fcn_jax.predict --workdir=/tmp/fcn_default --export=/tmp/model.jaxexport

Loads the model of a training run (latest checkpoint, or `--step`), reads each
input (PNG, JPEG, TIFF via Pillow, or `.npy` HxWxC arrays; uint8 images are
scaled to [0, 1] as in training; a glob matches many files), runs it on the
whole image, and writes `<output>/<name>.npy` (the raw logits) and
`<name>_overlay.png` (the task's overlay: the heat map or the class colours
blended over the image, `fcn_jax.tasks`); with `--instances=components|watershed`, a
segmentation model's `<name>_instances.npy` too (instance ids, `fcn_jax.instances`).
Prints the output shape and the time of each image. Files are written
under a temporary name and renamed, so a crash never leaves a partial file.
With `--tile`, inference is exact and tiled (`fcn_jax.inference.predict_tiled`);
`.npy`/`.tif`/`.zarr` inputs are then read tile by tile and the output written
tile by tile (`--format=npy|zarr|ome-zarr`; `--values=logits|probabilities|labels|
labels+confidence`, reduced tile by tile), so images larger than RAM work and an
interrupted run resumes; an existing output of another model or image is refused. `--pad` pads an image whose size the net does not accept (edge pixels)
and crops the output back, for nets whose output has the input's size. `--stitch=N` gives a strided net's output every N input pixels by
shift-and-stitch (Long et al. §3.2; `fcn_jax.inference.stitch`). `--blend=gaussian
--overlap=0.25` runs models that exact tiling refuses on overlapping weighted windows
(`fcn_jax.inference.blended`). `--tta=d4` averages over flipped and rotated views
(`--tta_scales=1,0.5` also over scales; `fcn_jax.inference.tta`). `--workers=N` computes
the tiles as Dask tasks on a LocalCluster of N processes, `--scheduler=ADDRESS` on a running
dask.distributed cluster (`fcn_jax.inference.distributed`; resumable, a dead worker's tiles
are re-run).
"""

import glob
import os
import pathlib
import sys
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image

from fcn_jax import errors
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import instances
from fcn_jax import tasks


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'Workdir of a training run.')
  flags.DEFINE_string('input', None, 'Image file, or a glob of files (quote it).')
  flags.DEFINE_string('output', None, 'Output folder (default: <workdir>/predictions).')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_integer('tile', None, 'Exact tiled inference with tiles of about this many '
                       'pixels a side (default: whole image). .npy/.tif inputs are then read '
                       'as memory maps and the output written tile by tile (resumable).')
  flags.DEFINE_integer('batch', 8, 'Tiles per batch (with --tile).')
  flags.DEFINE_enum('blend', None, ['constant', 'gaussian', 'hann'], 'Blended tiling: '
                    'overlapping windows of --tile pixels (default 256) averaged with these '
                    'weights, for models exact tiling refuses (GroupNorm, ...); exact tiling '
                    'where it applies (fcn_jax.inference.predict_blended).')
  flags.DEFINE_float('overlap', 0.25, 'Fraction of a window\'s outputs shared with the next '
                     '(with --blend).')
  flags.DEFINE_enum('tta', None, ['flips', 'd4'], 'Test-time augmentation: the mean over the '
                    '4 flips or the 8 symmetries of the square (fcn_jax.inference.predict_tta).')
  flags.DEFINE_list('tta_scales', ['1'], 'With --tta: scales of the image to average over, '
                    'e.g. 1,0.5,1.5.')
  flags.DEFINE_enum('tta_average', 'logits', ['logits', 'sigmoid', 'softmax'], 'With --tta: '
                    'average logits, or probabilities (then written instead of logits).')
  flags.DEFINE_string('memory', None, 'A memory budget (e.g. 2GB) for tiled prediction: picks '
                      '--tile and --batch so that the estimated peak stays under it, and says '
                      'what it chose (fcn_jax.inference.plan_memory); .npy/.tif/.zarr inputs '
                      'are then streamed from disk.')
  flags.DEFINE_bool('border_map', False, 'Also write <name>_border.npy: per output, the '
                    'fraction of its receptive field outside the image '
                    '(fcn_jax.inference.border_map).')
  flags.DEFINE_enum('instances', None, list(instances.METHODS), 'Segmentation models: also '
                    'write <name>_instances.npy, int32 instance ids (0 = background) of the '
                    'predicted foreground (every class but 0), by 4-connected components or '
                    'a watershed of its distance transform (fcn_jax.instances; in-memory '
                    'outputs).')
  flags.DEFINE_bool('pad', False, 'Pad images of a size the net does not accept (e.g. not a '
                    'multiple of 2**(depth-1) for a same-padded U-Net) at the bottom and right '
                    'with their edge pixels, and crop the output back to the image (nets whose '
                    'output has the input\'s size; in-memory inputs).')
  flags.DEFINE_integer('stitch', None, 'Shift-and-stitch: one output every this many input '
                       'pixels (a divisor of the net\'s stride; 1 = every pixel), from '
                       '(stride / N)^2 shifted runs (fcn_jax.inference.shift_and_stitch); with '
                       '--tile, .npy/.tif/.zarr inputs are streamed from disk to a .npy output.')
  flags.DEFINE_integer('workers', None, 'Compute the tiles on a dask.distributed LocalCluster '
                       'of this many worker processes (fcn_jax.inference.distributed; '
                       '--format=zarr or ome-zarr).')
  flags.DEFINE_string('scheduler', None, 'Compute the tiles on the running dask.distributed '
                      'cluster at this address (e.g. tcp://10.0.0.5:8786); its workers must see '
                      '--input and --output at the same paths.')
  flags.DEFINE_string('export', None, 'Instead of predicting, write the model as a jax.export '
                      'artifact with symbolic sizes to this path (run it with '
                      'fcn_jax.inference.load_exported).')
  flags.DEFINE_enum('format', 'npy', ['npy', 'zarr', 'ome-zarr'], 'Output format of tiled '
                    'runs: .npy, .zarr, or an OME-Zarr (NGFF) store with the image and the '
                    'labels as multiscale layers (napari and other NGFF viewers open it).')
  flags.DEFINE_enum('values', 'logits', list(inference.VALUES), 'What tiled runs write per '
                    'output: float32 logits, float16 probabilities, uint8/16 labels, or labels '
                    'and their float16 confidence (fcn_jax.inference.outputs), tile by tile.')
  flags.mark_flags_as_required(['workdir'])


def read_image(path: str) -> np.ndarray:
  """`(H, W, C)` float32 in [0, 1] (uint8 scaled by 1/255)."""
  try:
    if path.endswith('.npy'):
      array = np.load(path)
    else:
      with Image.open(path) as image:
        array = np.asarray(image)
  except (OSError, ValueError) as e:
    raise errors.InputError(f'cannot read {path!r} as an image: {e}') from None
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3:
    raise errors.InputError(f'{path!r}: expected an HxW or HxWxC image, got shape {array.shape}')
  if array.dtype == np.uint8:
    array = array.astype(np.float32) / 255
  elif not np.issubdtype(array.dtype, np.floating):
    raise errors.InputError(
        f'{path!r}: unsupported dtype {array.dtype} (use uint8 or float in [0, 1])')
  array = array.astype(np.float32)
  if not np.isfinite(array).all():
    raise errors.InputError(f'{path!r} holds NaN or infinite pixels')
  return array


def _write_atomically(path: str, write) -> None:
  """Writes under a temporary name and renames; a failed write (a full disk) leaves nothing."""
  try:
    files.write_atomically(path, write)
  except OSError as e:
    raise errors.InputError(
        f'cannot write {path}: {e.strerror or e}; nothing was left under that name '
        '(free some space or choose another --output)') from None


def export(workdir: str, step: int | None, path: str) -> int:
  """Writes the trained model as a serialized `jax.export` artifact; returns the exit code."""
  try:
    model, config = inference.load_trained(workdir, step)
    data = inference.export(model, config.model.get('in_channels', 3))
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  _write_atomically(path, lambda p: pathlib.Path(p).write_bytes(data))
  lattice = [inference.size_lattice(model, a) for a in range(2)]
  print(f'wrote {path} ({len(data) / 1e6:.1f} MB): {geometry.of(model).name}, sizes ' +
        ' x '.join(f'{first}+{period}k' if period else str(first) for first, period in lattice))
  return 0


def _as_logits(output: np.ndarray) -> np.ndarray:
  """Logits for the overlay: `--tta_average` sigmoid/softmax outputs are probabilities."""
  if not FLAGS.tta or FLAGS.tta_average == 'logits':
    return output
  p = np.clip(output, 1e-6, 1 - 1e-6)
  return np.log(p) - np.log1p(-p) if FLAGS.tta_average == 'sigmoid' else np.log(p)


def _predict_on_cluster(model, path: str, target: str, name: str) -> None:
  """`--workers=N` (a LocalCluster of N processes) or `--scheduler=ADDRESS`: the tiles as Dask
  tasks (`fcn_jax.inference.distributed`)."""
  from dask import distributed as dask_distributed  # pylint: disable=g-import-not-at-top
  source = path if path.rstrip('/').endswith(('.npy', '.tif', '.tiff', '.zarr')) else (
      read_image(path))
  tile = FLAGS.tile or 512
  if FLAGS.scheduler:
    with dask_distributed.Client(FLAGS.scheduler) as client:
      inference.predict_to_zarr(model, source, target, tile, FLAGS.values, client, name)
    return
  threads = max(1, (os.cpu_count() or 1) // FLAGS.workers)
  with dask_distributed.LocalCluster(n_workers=FLAGS.workers, threads_per_worker=threads,
                                     processes=True, dashboard_address=None) as cluster, \
       dask_distributed.Client(cluster) as client:
    inference.predict_to_zarr(model, source, target, tile, FLAGS.values, client, name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.export:
    return export(FLAGS.workdir, FLAGS.step, FLAGS.export)
  if not FLAGS.input:
    raise app.UsageError('give --input (images to predict) or --export (a path to write)')
  paths = sorted(glob.glob(FLAGS.input)) or ([FLAGS.input] if os.path.exists(FLAGS.input) else [])
  if not paths:
    raise app.UsageError(f'no file matches --input={FLAGS.input}')
  try:
    t0 = time.time()
    model, config = inference.load_trained(FLAGS.workdir, FLAGS.step)
    task = tasks.from_config(config.data, config.get('loss'))
    print(f'loaded {geometry.of(model).name} from {FLAGS.workdir} in {time.time() - t0:.1f}s')
    if FLAGS.tile and not FLAGS.blend:
      inference.check_tile(model, FLAGS.tile)
    if FLAGS.instances and task.name != 'segmentation':
      raise errors.ConfigError(f'--instances labels a segmentation model\'s foreground; this '
                               f'run\'s task is {task.name!r}')
    if FLAGS.instances and (FLAGS.workers or FLAGS.scheduler):
      raise errors.ConfigError('--instances needs the output in memory: drop --workers and '
                               '--scheduler')
    output = FLAGS.output or os.path.join(FLAGS.workdir, 'predictions')
    os.makedirs(output, exist_ok=True)
    for path in paths:
      name = os.path.splitext(os.path.basename(path.rstrip('/')))[0]
      target = os.path.join(output, f'{name}.npy')
      t0 = time.time()
      if FLAGS.workers or FLAGS.scheduler:
        target = os.path.join(output, f'{name}.{FLAGS.format.replace("-", ".")}')
        _predict_on_cluster(model, path, target, name)
        print(f'{path} -> {target} ({FLAGS.values}) in {time.time() - t0:.2f}s on '
              f'{FLAGS.scheduler or f"{FLAGS.workers} local worker process(es)"}')
        continue
      tile, batch = FLAGS.tile, FLAGS.batch
      array_file = path.rstrip('/').endswith(('.npy', '.tif', '.tiff', '.zarr'))
      if FLAGS.instances and tile and array_file:
        raise errors.ConfigError(f'--instances needs the output in memory: {path} is read tile '
                                 'by tile with --tile (drop --tile, or label the written '
                                 'output with fcn_jax.instances.label)')
      if FLAGS.stitch and tile and array_file:  # dense output streamed to disk
        inference.shift_and_stitch(model, inference.open_image(path), FLAGS.stitch, tile=tile,
                                   batch=batch, output=target)
        print(f'{path} -> {target} (shift-and-stitch, one output every {FLAGS.stitch} pixels) '
              f'in {time.time() - t0:.2f}s')
        continue
      streamed = FLAGS.format != 'npy' or FLAGS.values != 'logits'
      if (not (FLAGS.stitch or FLAGS.blend or FLAGS.tta or FLAGS.pad) and
          (((tile or FLAGS.memory) and array_file) or streamed)):
        if FLAGS.instances:
          raise errors.ConfigError('--instances needs the output in memory: it does not apply '
                                   'to outputs streamed to disk (--format, --values, or '
                                   '--memory with an array file)')
        # Out of core (array files are read tile by tile) and streamed outputs: written tile
        # by tile, resumable.
        source = inference.open_image(path) if array_file else read_image(path)
        if FLAGS.memory:
          chosen = inference.plan_memory(model, source.shape, FLAGS.memory, streamed=array_file,
                                         image_itemsize=np.dtype(source.dtype).itemsize)
          print(f'{path}: memory plan: {chosen}')
          tile, batch = chosen.tile, chosen.batch
        target = os.path.join(output, f'{name}.{FLAGS.format.replace("-", ".")}')
        inference.predict_to_file(model, source, target, tile or 512, batch,
                                  values=FLAGS.values, name=name)
        out_h, out_w, out_c = inference.output_shape(model, source.shape)
        print(f'{path}: input {"x".join(map(str, source.shape))} -> {target} ({FLAGS.values}, '
              f'{out_h}x{out_w} outputs of {out_c} channel(s)) in {time.time() - t0:.2f}s '
              f'(tiled, {inference.compilations()} compilation(s))')
        continue
      image = read_image(path)
      size = image.shape[:2]
      # What this output is computed from: an output of another model, image or mode is
      # refused and kept; the same command again finds it complete.
      mode = {k: v for k, v in dict(tta=FLAGS.tta, tta_scales=FLAGS.tta_scales if FLAGS.tta
                                    else None, tta_average=FLAGS.tta_average if FLAGS.tta
                                    else None, blend=FLAGS.blend, overlap=FLAGS.overlap if
                                    FLAGS.blend else None, stitch=FLAGS.stitch,
                                    pad=FLAGS.pad).items() if v}
      wanted = inference.outputs.record(model, image, ' '.join(
          ['logits', *(f'{k}={v}' for k, v in sorted(mode.items()))]), tile or FLAGS.memory or 0)
      if inference.outputs.check_not_foreign(target, wanted):
        print(f'{path}: {target} is complete already (same model, image and settings)')
        continue
      if FLAGS.memory:
        out_h, out_w, _ = inference.output_shape(model, image.shape)
        overlay = out_h * out_w * 3 * 8 + image.shape[0] * image.shape[1] * 3  # colours, picture
        chosen = inference.plan_memory(model, image.shape, FLAGS.memory, overlay)
        print(f'{path}: memory plan: {chosen}')
        tile, batch = chosen.tile, chosen.batch
      if FLAGS.pad:
        image, _ = inference.pad_to_accepted(model, image)
      if FLAGS.tta:
        logits = inference.predict_tta(model, image, FLAGS.tta,
                                       [float(r) for r in FLAGS.tta_scales], FLAGS.tta_average,
                                       tile, batch)
      elif FLAGS.blend:
        logits = inference.predict_blended(model, image, tile or 256, FLAGS.overlap,
                                           FLAGS.blend, batch)
      elif FLAGS.stitch:
        logits = inference.shift_and_stitch(model, image, FLAGS.stitch, tile=tile,
                                            batch=batch)
      elif tile:
        logits = inference.predict_tiled(model, image, tile, batch)
      else:
        logits = inference.predict(model, image)
      if FLAGS.pad:
        image, logits = image[:size[0], :size[1]], logits[:size[0], :size[1]]
      seconds = time.time() - t0
      _write_atomically(target, lambda p: np.save(p, logits))
      if FLAGS.instances:
        ids = instances.label(np.argmax(_as_logits(logits), -1) != 0, FLAGS.instances)
        _write_atomically(os.path.join(output, f'{name}_instances.npy'),
                          lambda p: np.save(p, ids))
      if FLAGS.border_map and not (FLAGS.stitch or FLAGS.tta):  # outputs on the plain grid
        border = inference.border_map(model, image.shape[:2])
        _write_atomically(os.path.join(output, f'{name}_border.npy'),
                          lambda p: np.save(p, border))
      picture = task.overlay(image, _as_logits(logits))
      if picture is not None:
        _write_atomically(os.path.join(output, f'{name}_overlay.png'),
                          lambda p: Image.fromarray(picture).save(p))
      files.write_json(target + '.source.json', wanted)
      print(f'{path}: input {image.shape[0]}x{image.shape[1]}x{image.shape[2]} -> output '
            f'{"x".join(map(str, logits.shape))} in {seconds:.2f}s')
  except errors.UserError as e:  # one clear line; a bug keeps its traceback
    hint = ('; or pass --pad to pad images to an accepted size' if isinstance(
        e, errors.GeometryError) and not FLAGS.pad and not FLAGS.tile else '')
    print(f'error: {e}{hint}', file=sys.stderr)
    return 1
  except OSError as e:  # e.g. a full disk while writing tiles: the partial file resumes later
    print(f'error: {e.strerror or e} while writing {e.filename or "the output"}; finished tiles '
          'are kept and the same command resumes once the problem is fixed', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
