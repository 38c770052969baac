"""Shift-and-stitch: a dense output from a strided net, without retraining.

Long et al. (FCN, §3.2) and OverFeat's fine stride: a net of total stride `s` gives one
output per `s` input pixels. Evaluating it on the image shifted by `d, 2d, ..., s - d`
pixels along each axis (`f = s / d` shifts per axis, `f**2` runs) and interleaving the
outputs gives one output per `d` pixels: `dense[f*i + a, f*j + b]` is output `(i, j)` of the
run on `image[a*d:, b*d:]`, so dense output `(k, l)` is centred on input
`(c0 + d*k, c1 + d*l)`, where `(c0, c1)` is the centre of the plain output (0, 0)'s field
(`geometry.of(model).offset`). Every run is the net on real pixels: at the borders it sees
the padding the plain run sees at its own borders, nothing else.

All runs use one input size (the image cropped by `(f - 1) * d` at the bottom and right,
then down to the nearest size the net accepts), so they share one compilation and the
dense output is a whole `f*n x f*m` grid. Shifted views go `batch` at a time through one
call (the last batch padded); `tile=` runs each view through exact tiling (`predict_tiled`,
`batch` tiles per call) instead, for images too large for one pass.
"""

from typing import Sequence

import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax.inference import tiled
from fcn_jax.inference import tiling
from fcn_jax.inference import whole


def factors(model: nnx.Module, stride: int | Sequence[int]) -> tuple[int, int]:
  """Shifts per axis, `s / stride`; one line if `stride` does not divide the net's stride."""
  g = geometry.of(model)
  strides = stride if isinstance(stride, (tuple, list)) else (stride, stride)
  out = []
  for a, (s, d) in enumerate(zip(g.stride, strides)):
    if s.denominator != 1 or s <= 1:
      raise errors.InputError(f'{g.name} has output stride {s} along axis {a}: shift-and-stitch '
                              'needs an integer stride > 1 (this net is already dense)')
    if int(d) < 1 or int(s) % int(d):
      raise errors.InputError(f'stride {d} does not divide {g.name}\'s output stride {s}: use '
                              f'one of {[k for k in range(1, int(s) + 1) if int(s) % k == 0]}')
    out.append(int(s) // int(d))
  return tuple(out)


def shift_and_stitch(model: nnx.Module, image: np.ndarray, stride: int | Sequence[int] = 1, *,
                     tile: int | None = None, batch: int = 8, output: str | None = None):
  """The output of `model` on an `(H, W, C)` image at `stride` input pixels per output
  (1: one per pixel), by `f**2` shifted runs (see the module docstring). Memory: `batch`
  views of the image and their activations (with `tile`: `batch` tiles).

  With `output` (a `.npy` path) the image may be larger than memory (a memory map from
  `open_image`): the dense output is written to disk tile row by tile row — every shifted
  view's tiles of one row, then the next row — so the image and the output are each read
  or written once, a row band at a time; returns the path (written under a temporary name,
  renamed when complete; not resumable)."""
  f = factors(model, stride)
  g = geometry.of(model)
  d = [int(s) // k for s, k in zip(g.stride, f)]
  size = _view_size(g, image.shape, f, d)
  shifts = [(a, b) for a in range(f[0]) for b in range(f[1])]
  if output is not None:
    return _stitch_to_file(model, image, f, d, size, shifts, tile or 512, batch, output)
  out = None
  for first in range(0, len(shifts), batch):
    chunk = shifts[first:first + batch]
    views = np.stack([image[a * d[0]:a * d[0] + size[0], b * d[1]:b * d[1] + size[1]]
                      for a, b in chunk + chunk[-1:] * (batch - len(chunk))])
    if tile:  # each view exactly tiled (one compilation for all: the tiles share a shape)
      logits = [tiled.predict_tiled(model, view, tile, batch) for view in views[:len(chunk)]]
    else:  # `batch` views per call, the last batch padded: one compilation
      logits = whole.predict(model, views.astype(np.float32))[:len(chunk)]
    for (a, b), piece in zip(chunk, logits):
      if out is None:
        out = np.empty((f[0] * piece.shape[0], f[1] * piece.shape[1], piece.shape[2]),
                       piece.dtype)
      out[a::f[0], b::f[1]] = piece
  return out


def _stitch_to_file(model, image, f, d, size, shifts, tile, batch, output):
  """`shift_and_stitch` into a `.npy` on disk, one tile row of every shifted view at a time."""
  if not output.endswith('.npy'):
    raise errors.InputError(f'shift-and-stitch writes a .npy output, not {output!r}')
  g = geometry.of(model)
  axes = [tiling.axis_tiling(g, n, a, tile) for a, n in enumerate(size)]
  out_h, out_w, out_c = whole.output_shape(model, (*size, image.shape[2]))
  views = {(a, b): _crop(image, (a * d[0], b * d[1]), size) for a, b in shifts}

  def write(path):
    out = np.lib.format.open_memmap(path, mode='w+', dtype=np.float32,
                                    shape=(f[0] * out_h, f[1] * out_w, out_c))
    for i in range(axes[0].count):
      row = [(i, j) for j in range(axes[1].count)]
      for (a, b), view in views.items():
        for _, keeps, pieces in tiled._tiles(model, view, tile, batch, only=row):  # pylint: disable=protected-access
          for keep, piece in zip(keeps, pieces):
            out[keep[0].start * f[0] + a:keep[0].stop * f[0]:f[0],
                keep[1].start * f[1] + b:keep[1].stop * f[1]:f[1]] = piece
      out.flush()
      tiled.release_rows(out, (i + 1) * axes[0].kept * f[0])  # this band is written
      for view in views.values():
        tiled.release_rows(view, (i + 1) * axes[0].step - axes[0].halo)
    del out

  return files.write_atomically(output, write)


class _Crop:
  """A window of an array-like that reads on demand (a zarr array's slices are reads)."""

  def __init__(self, array, origin, size):
    self.array, self.origin = array, origin
    self.shape, self.dtype = (*size, array.shape[2]), array.dtype

  def __getitem__(self, index):
    rows, cols = index[:2]
    return self.array[slice(rows.start + self.origin[0], rows.stop + self.origin[0]),
                      slice(cols.start + self.origin[1], cols.stop + self.origin[1])]


def _crop(image, origin, size):
  """`image[origin : origin + size]` without reading it: a view of a NumPy array or memory
  map, a `_Crop` of anything else."""
  if isinstance(image, np.ndarray):
    return image[origin[0]:origin[0] + size[0], origin[1]:origin[1] + size[1]]
  return _Crop(image, origin, size)


def _view_size(g, shape, f, d) -> list[int]:
  """The common input size of the shifted views (see the module docstring)."""
  size = []
  for a in range(2):
    n = g.first_valid(shape[a] - (f[a] - 1) * d[a], -1, a)
    if n is None:
      raise errors.InputError(
          f'image {shape[0]}x{shape[1]} is too small for shift-and-stitch of '
          f'{g.name} at stride {d[a]}: it needs {g.min_input_size[a] + (f[a] - 1) * d[a]} '
          f'pixels along axis {a}')
    size.append(n)
  return size
