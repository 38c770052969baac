"""Exact tiled prediction: `predict_tiled(model, image, tile)` runs tiles of one fixed shape
(one compilation per model, tile and batch size) laid out by `tiling`, each layer rebuilding
its input outside the region the whole-image run would hold there (or, for a circularly
padded net, reading the image cyclically: `tiling.wraps`).
"""

import functools

import jax
import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import models
from fcn_jax.inference import tiling
from fcn_jax.inference import whole


_TRACES = {'tiled': 0}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _tiled_forward(graphdef, paths, state, windows, extents):
  # A plain jit of the split model (split once per call of `_tiles`): called once per
  # batch of tiles, it skips nnx.jit's per-call walk over the model. `paths[k]` is the NNX
  # path of the layer whose valid input region is `extents[:, k]`; each is given its own on
  # this merged copy of the model, which lives only in this trace.
  _TRACES['tiled'] += 1  # runs once per compilation
  model = nnx.merge(graphdef, state)
  modules = dict(nnx.iter_graph(model))
  for k, path in enumerate(paths):
    modules[path].tile_extents = extents[:, k]
  return model(windows)


@functools.partial(jax.jit, static_argnums=(0,))
def _wrapped_forward(graphdef, state, windows):
  # Tiles of a circularly padded net read their halo around the image's borders, so every
  # position of every layer holds what the whole-image run holds there: nothing to rebuild.
  _TRACES['tiled'] += 1
  return nnx.merge(graphdef, state)(windows)


def _window_reads(start: int, size: int, n: int, wrap: bool) -> list[tuple[slice, slice]]:
  """`(image, window)` slice pairs that fill a window of `size` positions from `start` on an
  axis of `n`: the part inside the image, or with `wrap` the image read cyclically."""
  if not wrap:
    lo, hi = min(max(start, 0), n), max(min(start + size, n), min(max(start, 0), n))
    return [(slice(lo, hi), slice(lo - start, hi - start))]
  reads, pos = [], start
  while pos < start + size:
    src = pos % n
    length = min(n - src, start + size - pos)
    reads.append((slice(src, src + length), slice(pos - start, pos - start + length)))
    pos += length
  return reads


def release_rows(array, rows: int) -> None:
  """Drops the pages holding rows `[0, rows)` of a memory-mapped array from this process's
  resident set (the file keeps them: they are read again if asked for). A streamed run reads
  and writes each row band once; without this, every page it touched would stay resident
  and a gigapixel image would count whole in the process's memory. No-op for other arrays."""
  import mmap  # pylint: disable=g-import-not-at-top
  mapped = getattr(array, '_mmap', None)
  if mapped is None or rows <= 0 or array.strides[0] <= 0:
    return
  base = np.frombuffer(mapped, np.uint8).ctypes.data
  end = array.__array_interface__['data'][0] + min(rows, array.shape[0]) * array.strides[0]
  end = (end - base) // mmap.PAGESIZE * mmap.PAGESIZE
  if end > 0:
    mapped.madvise(mmap.MADV_DONTNEED, 0, end)


def compilations() -> int:
  """How many times the tiled forward pass has been compiled in this process."""
  return _TRACES['tiled']


def _tiles(model: nnx.Module, image, tile: int | tuple[int, int], batch: int, skip=frozenset(),
           only=None):
  """Yields `(tile_indices, keep_slices, logits)` per batch of tiles not in `skip` (of the
  tiles in `only`, a list of `(row, col)` tile indices, when given).

  `image` is any `(H, W, C)` array-like (a NumPy array or a memory map); uint8
  pixels are scaled to [0, 1]. `tile` is a square tile's side or `(rows, cols)`.
  Only one batch of windows is in memory at a time. The model runs in inference mode.
  """
  model = models.inference_view(model)
  g = geometry.of(model)
  h, w = image.shape[:2]
  g.check((h, w))
  axes = [tiling.axis_tiling(g, n, a, t) for a, (n, t) in
          enumerate(zip((h, w), tile if isinstance(tile, tuple) else (tile, tile)))]
  keys = tiling.layer_keys(g.node)
  wrap = tiling.wraps(g, (h, w))
  tiles = [(i, j) for i, j in only or
           ((i, j) for i in range(axes[0].count) for j in range(axes[1].count))
           if (i, j) not in skip]
  scale = 1 / 255 if image.dtype == np.uint8 else None
  # The geometry names its layers by object (`key`); the jitted pass finds them by NNX path.
  path_of = {id(module): path for path, module in nnx.iter_graph(model)}
  paths = tuple(path_of[key] for key in keys)
  graphdef, state = nnx.split(model)
  for first in range(0, len(tiles), batch):
    chunk = tiles[first:first + batch]
    release_rows(image, chunk[0][0] * axes[0].step - axes[0].halo)  # no later tile reads them
    windows = np.zeros((batch, axes[0].size, axes[1].size, image.shape[2]), np.float32)
    extents = np.zeros((batch, len(keys), 4), np.int32)
    origins = []
    for b, tile_index in enumerate(chunk + [chunk[-1]] * (batch - len(chunk))):
      starts = [k * ax.step - ax.halo for k, ax in zip(tile_index, axes)]
      # A tile may lie wholly past the image (outputs of a net that pads beyond it).
      for rows, dst_rows in _window_reads(starts[0], axes[0].size, h, wrap):
        for cols, dst_cols in _window_reads(starts[1], axes[1].size, w, wrap):
          window = windows[b, dst_rows, dst_cols]
          window[...] = image[rows, cols]
          if scale:
            window *= scale
          if not np.isfinite(window).all():
            raise errors.InputError(f'the image holds NaN or infinite pixels in rows '
                                    f'{rows.start}-{rows.stop - 1}, columns {cols.start}-'
                                    f'{cols.stop - 1}')
      out_origin = []
      for a, (n, s, ax) in enumerate(zip((h, w), starts, axes)):
        per_layer: dict[int, list[int]] = {}
        out_origin.append(tiling.plan(g.node, n, ax.size, s, a, per_layer)[1])
        for row, key in enumerate(keys):
          extents[b, row, 2 * a:2 * a + 2] = per_layer[key][:2]
      origins.append(out_origin)
    logits = np.asarray(jax.device_get(
        _wrapped_forward(graphdef, state, windows) if wrap else
        _tiled_forward(graphdef, paths, state, windows, extents)))
    keeps, pieces = [], []
    for b, tile_index in enumerate(chunk):
      keep = [slice(k * ax.kept, min((k + 1) * ax.kept, ax.out_size))
              for k, ax in zip(tile_index, axes)]
      local = [slice(sl.start - o, sl.stop - o) for sl, o in zip(keep, origins[b])]
      keeps.append(keep)
      pieces.append(logits[b, local[0], local[1]])
    yield chunk, keeps, pieces


def compiled_bytes(model: nnx.Module, image_shape, tile: int, batch: int) -> int:
  """Bytes XLA needs for one call of the tiled forward pass of `tile` and `batch` on an image
  of `image_shape` (arguments, outputs and temporaries of the compiled function, from its
  memory analysis): the device side of `predict_tiled`'s memory."""
  model = models.inference_view(model)
  g = geometry.of(model)
  h, w, c = image_shape
  axes = [tiling.axis_tiling(g, n, a, tile) for a, n in enumerate((h, w))]
  keys = tiling.layer_keys(g.node)
  path_of = {id(module): path for path, module in nnx.iter_graph(model)}
  paths = tuple(path_of[key] for key in keys)
  graphdef, state = nnx.split(model)
  windows = jax.ShapeDtypeStruct((batch, axes[0].size, axes[1].size, c), np.float32)
  extents = jax.ShapeDtypeStruct((batch, len(keys), 4), np.int32)
  analysis = _tiled_forward.lower(graphdef, paths, state, windows, extents).compile(
      ).memory_analysis()
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes +
             analysis.temp_size_in_bytes)


def predict_tiled(model: nnx.Module, image: np.ndarray, tile: int | tuple[int, int] = 256,
                  batch: int = 8) -> np.ndarray:
  """The whole-image output of `model` on an `(H, W, C)` image, computed tile by tile.

  `tile` is about the side of a tile in input pixels, or `(rows, cols)`; each is
  rounded up to the model's alignment.

  Equal to `predict(model, image)` up to float rounding: every tile carries a
  halo of real image context covering the receptive field of the outputs it
  keeps, tile origins are aligned to every layer's stride, and inside each tile
  every layer rebuilds the positions outside the image as the whole-image run
  pads them (zeros, reflection or replication), so padding happens only where
  the whole-image run pads. All tiles have one shape and batches are padded to
  `batch` tiles: one compilation per model, tile size and batch size, whatever
  the number or size of the images.
  """
  out = np.zeros(whole.output_shape(model, image.shape), np.float32)
  for _, keeps, pieces in _tiles(model, image, tile, batch):
    for keep, piece in zip(keeps, pieces):
      out[keep[0], keep[1]] = piece
  return out
