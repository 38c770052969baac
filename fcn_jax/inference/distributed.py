"""Many processes and machines on one image: the exact tiled prediction as a Dask graph.

`prediction(model, source, tile)` is the whole-image output as a lazy Dask array. The input
is a Dask array chunked on the tile lattice (a chunk holds the input rows whose outputs its
`tiles_per_task` tiles per axis keep: a multiple of every layer's stride); `map_overlap` adds
each chunk's halo (the context before it) and the rest of its last tile's window after it;
each chunk then runs the exact tile function of `tiled` on its tiles as one batch (so the
result equals the whole-image run, and every worker process compiles once).

`predict_to_zarr(model, source, output, tile, values, client)` computes that graph on a
`dask.distributed` cluster (a `LocalCluster` here, any cluster elsewhere) or on Dask's local
scheduler, into a `.zarr` or `.ome.zarr` output through the same partial arrays, records and
final step as `outofcore.predict_to_file`. Each task writes its chunk of the output (whole
zarr chunks, so tasks never write the same chunk) and then a marker; the scheduler re-runs
the tasks of a worker that died, and running the same command again computes only the
chunks without a marker. Dask does the scheduling; fcn_jax only says what a tile is.
"""

import json
import os

import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax.inference import outofcore
from fcn_jax.inference import outputs
from fcn_jax.inference import tiled
from fcn_jax.inference import tiling
from fcn_jax.inference import whole


class _Source:
  """An image file opened lazily where it is read (a worker opens its own memory map): what
  goes over the wire is the path."""

  def __init__(self, path: str):
    self.path = path
    image = outofcore.open_image(path)
    self.shape, self.dtype, self.ndim = tuple(image.shape), image.dtype, 3
    self._image = None

  def __getstate__(self):
    return {**self.__dict__, '_image': None}

  def __getitem__(self, index):
    if self._image is None:
      self._image = outofcore.open_image(self.path)
    return np.asarray(self._image[index])


class _BlockView:
  """A block of the image (from `origin`) seen with whole-image indices, as `tiled._tiles`
  reads its windows: only the rows and columns the block holds are asked for."""

  def __init__(self, block: np.ndarray, origin: tuple[int, int], shape, dtype):
    self.block, self.origin, self.shape, self.dtype = block, origin, shape, dtype

  def __getitem__(self, index):
    rows, cols = index[:2]
    r0, c0 = self.origin
    return self.block[rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0]


def _layout(model: nnx.Module, shape, tile: int, group: int) -> list[tiling.AxisTiling]:
  g = geometry.of(model)
  g.check(shape[:2])
  if tiling.wraps(g, shape[:2]):
    raise errors.TilingError(f'{g.name} pads circularly: the Dask path does not wrap halos; '
                             'use predict_to_file (predict without --workers)')
  if group < 1:
    raise errors.InputError(f'tiles_per_task must be at least 1, got {group}')
  axes = [tiling.axis_tiling(g, n, a, tile) for a, n in enumerate(shape[:2])]
  for a, ax in enumerate(axes):
    if group * ax.step < _tail(ax):
      raise errors.TilingError(
          f'tile {tile} is too small for the Dask path: each chunk ({group * ax.step} rows along '
          f'axis {a}) must be at least the context it lends its neighbours ({_tail(ax)}); use a '
          f'tile of at least {_tail(ax) // group + 1}')
  return axes


def _tail(ax: tiling.AxisTiling) -> int:
  """Rows after the last chunk: the rest of the last tile's window, and at least what a chunk
  lends its neighbours (Dask's overlap needs every chunk as large as the depth)."""
  return max(ax.halo, ax.size - ax.step - ax.halo, 1)


def _chunks(ax: tiling.AxisTiling, group: int) -> int:
  return -(-ax.count // group)


def _input(source, axes, group: int):
  """The image as a Dask array on the tile lattice: one chunk of `group * step` rows per
  `group` tiles and a tail chunk holding the last tile's remaining context, zero-padded or cut
  to that length (the tile function reads only inside the image). The tail's block computes
  nothing."""
  import dask.array as da  # pylint: disable=g-import-not-at-top
  h, w, c = source.shape
  x = da.from_array(source, chunks=(group * axes[0].step, group * axes[1].step, c),
                    asarray=False)
  length = [_chunks(ax, group) * group * ax.step + _tail(ax) for ax in axes]
  x = da.pad(x, ((0, max(length[0] - h, 0)), (0, max(length[1] - w, 0)), (0, 0)))
  return x[:length[0], :length[1]].rechunk(
      tuple((group * ax.step,) * _chunks(ax, group) + (_tail(ax),) for ax in axes) + ((c,),))


def _out_chunks(axes, group: int, last) -> tuple:
  """Output chunk sizes: the outputs the tiles of each chunk keep, 0 for the tail, then
  `last` (the channel or status axes)."""
  return tuple(tuple(min((k + 1) * group * ax.kept, ax.out_size) - k * group * ax.kept
                     for k in range(_chunks(ax, group))) + (0,) for ax in axes) + last


def _run_chunk(block, model, tile, image_shape, image_dtype, axes, group, block_info=None):
  """The outputs kept by the tiles of this chunk (the exact tile function, `group²` tiles a
  call); None for a tail chunk."""
  ci, cj = block_info[None]['chunk-location'][:2]
  if ci == _chunks(axes[0], group) or cj == _chunks(axes[1], group):
    return None
  first = [k * group for k in (ci, cj)]
  tiles = [(i, j) for i in range(first[0], min(first[0] + group, axes[0].count))
           for j in range(first[1], min(first[1] + group, axes[1].count))]
  origin = tuple(max(0, f * ax.step - ax.halo) for f, ax in zip(first, axes))
  view = _BlockView(block, origin, image_shape, image_dtype)
  out_origin = [f * ax.kept for f, ax in zip(first, axes)]
  out = None
  for _, keeps, pieces in tiled._tiles(model, view, tile, group * group, only=tiles):
    for keep, piece in zip(keeps, pieces):
      if out is None:
        size = [min(o + group * ax.kept, ax.out_size) - o for o, ax in zip(out_origin, axes)]
        out = np.zeros((*size, piece.shape[-1]), np.float32)
      out[keep[0].start - out_origin[0]:keep[0].stop - out_origin[0],
          keep[1].start - out_origin[1]:keep[1].stop - out_origin[1]] = piece
  return out


def _overlap(function, source, layout, per_chunk, out_chunks, dtype, drop_axis, **kwargs):
  """`function` over the chunks of `_input` with their overlaps (its keyword arguments:
  `kwargs`)."""
  import dask.array as da  # pylint: disable=g-import-not-at-top
  depth = {a: (ax.halo, ax.size - ax.step - ax.halo) for a, ax in enumerate(layout)}
  return da.map_overlap(function, _input(source, layout, per_chunk), depth={**depth, 2: 0},
                        boundary='none', trim=False, chunks=out_chunks, dtype=dtype,
                        drop_axis=drop_axis, allow_rechunk=False, **kwargs)


def prediction(model: nnx.Module, source, tile: int = 512, tiles_per_task: int = 2):
  """The whole-image output of `model` on `source` (an `(H, W, C)` array or an image file
  path: `.npy`, `.tif`, `.zarr`) as a lazy Dask array, one chunk per `tiles_per_task` ×
  `tiles_per_task` tiles (computed as one batch)."""
  source = _Source(source) if isinstance(source, str) else source
  group = tiles_per_task
  axes = _layout(model, source.shape, tile, group)
  out_c = whole.output_shape(model, source.shape)[2]

  def block(x, model, block_info=None):
    out = _run_chunk(x, model, tile, source.shape, source.dtype, axes, group, block_info)
    return np.zeros(block_info[None]['chunk-shape'], np.float32) if out is None else out

  return _overlap(block, source, axes, group, _out_chunks(axes, group, ((out_c,),)),
                  np.float32, None, model=model)


def _write_chunk(x, model, tile, image_shape, image_dtype, axes, group, planned, done_dir,
                 block_info=None):
  """Computes one chunk's tiles, writes their part of every output array, then a marker."""
  import zarr  # pylint: disable=g-import-not-at-top
  ci, cj = block_info[None]['chunk-location'][:2]
  tail = (ci == _chunks(axes[0], group), cj == _chunks(axes[1], group))
  if any(tail):
    return np.zeros((int(not tail[0]), int(not tail[1])), np.int8)
  marker = os.path.join(done_dir, f'{ci}_{cj}')
  if not os.path.exists(marker):
    out = _run_chunk(x, model, tile, image_shape, image_dtype, axes, group, block_info)
    rows, cols = [slice(k * group * ax.kept, k * group * ax.kept + n)
                  for k, ax, n in zip((ci, cj), axes, out.shape)]
    reduced = {kind: outputs.reduce(out, kind) for kind in {s[0] for s in planned.values()}}
    for path, (kind, suffix, *_) in planned.items():
      zarr.open_array(path, mode='r+')[rows, cols] = reduced[kind][suffix]
    with open(marker, 'w'):
      pass
  return np.ones((1, 1), np.int8)


def predict_to_zarr(model: nnx.Module, source, output: str, tile: int = 512,
                    values: str = 'logits', client=None, name: str = 'image',
                    tiles_per_task: int = 2) -> str:
  """Exact tiled prediction of `source` (an image file path or an array) into `output`
  (`.zarr` or `.ome.zarr`), its tiles computed as Dask tasks: on `client` (a
  `dask.distributed.Client`: its cluster's processes and hosts share the work; they must
  see `source` and `output` at the same paths) or, without one, on Dask's local threads.

  Each task computes `tiles_per_task` × `tiles_per_task` tiles as one batch (fewer, larger
  tasks: less scheduling per pixel). Resumable and safe like `outofcore.predict_to_file`: the
  final name appears only when every tile is written; finished tasks are recorded one marker
  file each in `<output>.done.d/`, so the tasks of a worker that died are re-run by the scheduler and
  running again computes only the missing tiles; an output (or partial output) of another
  model, image or values is refused and left as it was.
  """
  output = output.rstrip('/')
  if outofcore.output_format(output) == 'npy':
    raise errors.InputError(f'{output}: the Dask path writes .zarr or .ome.zarr (chunks that '
                            'processes on several hosts can write), not .npy')
  path = source if isinstance(source, str) else None
  source = _Source(source) if path else source
  image = outofcore.open_image(path) if path else source
  group = tiles_per_task
  axes = _layout(model, source.shape, tile, group)
  planned = outofcore.planned_arrays(output, values, whole.output_shape(model, source.shape))
  wanted = outputs.record(model, image, values, tile)
  if outputs.check_not_foreign(output, wanted):
    return output
  done_dir = output + '.done.d'
  record_path = os.path.join(done_dir, 'record.json')
  if os.path.exists(record_path):
    with open(record_path) as f:
      if json.load(f) != wanted:
        raise errors.InputError(f'{done_dir} records a partial output of another model, image, '
                                'values or tile: delete it and the .partial arrays to start '
                                'over, or choose another --output')
  if not (os.path.exists(record_path) and all(os.path.exists(p) for p in planned)):
    for p in [*planned, done_dir, output + '.done.json']:  # a single-process run's record too
      outputs.remove(p)
    if outofcore.output_format(output) == 'ome-zarr':
      os.makedirs(output + '.partial', exist_ok=True)
    for p, spec in planned.items():
      outofcore.create_array(p, spec[3], spec[4], (axes[0].kept, axes[1].kept))
    os.makedirs(done_dir)
    files.write_json(record_path, wanted)
  # On a cluster the model goes to each worker once (not once per task).
  payload = model if client is None else client.scatter(model, broadcast=True)
  status = _overlap(_write_chunk, source, axes, group,
                    tuple((1,) * _chunks(ax, group) + (0,) for ax in axes),
                    np.int8, 2, model=payload, tile=tile, image_shape=source.shape,
                    image_dtype=source.dtype, axes=axes, group=group, planned=planned,
                    done_dir=done_dir)
  if client is not None:
    client.compute(status.sum()).result()
  else:
    status.sum().compute()
  outofcore.finish(model, image, output, planned, name)
  files.write_json(output + '.source.json', wanted)
  outputs.remove(done_dir)
  return output
