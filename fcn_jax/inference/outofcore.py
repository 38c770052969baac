"""Images larger than memory: `open_image` maps a `.npy`, TIFF or `.zarr` array without
loading it, and `predict_to_file` streams tiled prediction into a `.npy` or `.zarr` output,
resumably (finished tiles are recorded; the final name appears only when complete).
"""

import json
import os

import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax.inference import tiled
from fcn_jax.inference import tiling
from fcn_jax.inference import whole


class _WithChannelAxis:
  """An `(H, W)` array-like seen as `(H, W, 1)` (slicing reads only what is asked)."""

  def __init__(self, array):
    self.array, self.dtype = array, array.dtype
    self.shape = (*array.shape, 1)

  def __getitem__(self, index):
    return np.asarray(self.array[index[:2]])[..., None]


def open_image(path: str):
  """A read-only `(H, W, C)` view of a `.npy`, uncompressed TIFF (memory maps) or `.zarr` array.

  Slices are read from disk on demand; nothing is loaded whole (except compressed
  TIFFs, which tifffile cannot map).
  """
  path = path.rstrip('/')
  try:
    if path.endswith('.npy'):
      array = np.load(path, mmap_mode='r')
    elif path.endswith(('.tif', '.tiff')):
      import tifffile  # pylint: disable=g-import-not-at-top
      try:
        array = tifffile.memmap(path, mode='r')
      except ValueError:  # compressed or tiled TIFF: read it (needs RAM)
        array = tifffile.imread(path)
    elif path.endswith('.zarr'):
      import zarr  # pylint: disable=g-import-not-at-top
      array = zarr.open_array(path, mode='r')
    else:
      raise errors.InputError(f'{path!r}: out-of-core input must be .npy, .tif(f) or .zarr')
  except (OSError, TypeError) as e:  # not an array file of that kind
    raise errors.InputError(f'cannot read {path!r} as an image array: {e}') from None
  if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
    raise errors.InputError(f'{path!r}: unsupported dtype {array.dtype} (use uint8, or float in '
                            '[0, 1])')
  if array.ndim == 2:
    return array[..., None] if isinstance(array, np.ndarray) else _WithChannelAxis(array)
  if array.ndim != 3:
    raise errors.InputError(f'{path!r}: expected an HxW or HxWxC image, got shape {array.shape}')
  return array


def _create_output(path: str, shape, chunks):
  """A writable float32 array on disk: `.npy` memory map or `.zarr` (chunked like the tiles)."""
  if path.endswith('.zarr'):
    import zarr  # pylint: disable=g-import-not-at-top
    return zarr.create_array(store=path, shape=shape, chunks=chunks, dtype='float32',
                             overwrite=True)
  return np.lib.format.open_memmap(path, mode='w+', dtype=np.float32, shape=shape)


def _open_output(path: str):
  if path.endswith('.zarr'):
    import zarr  # pylint: disable=g-import-not-at-top
    return zarr.open_array(path, mode='r+')
  return np.load(path, mmap_mode='r+')


def predict_to_file(model: nnx.Module, image, output: str, tile: int = 256, batch: int = 8,
                    progress: bool = True) -> str:
  """Tiled prediction of a (possibly larger than memory) image into a `.npy` or `.zarr` output.

  The output is written tile by tile into `<stem>.partial.<ext>` and renamed to
  `output` when complete, so a file under the final name is always whole.
  Finished tiles are recorded in `<output>.done.json` after each batch: running
  again after an interruption computes only the missing tiles. Memory: one batch
  of windows plus the pages of the arrays being touched.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  output = output.rstrip('/')
  stem, ext = os.path.splitext(output)
  if ext not in ('.npy', '.zarr'):
    raise errors.InputError(f'output {output!r} must end in .npy or .zarr')
  partial, done_path = f'{stem}.partial{ext}', output + '.done.json'
  shape = whole.output_shape(model, image.shape)
  g = geometry.of(model)
  axes = [tiling.axis_tiling(g, n, a, tile) for a, n in enumerate(image.shape[:2])]
  done: set[tuple[int, int]] = set()
  if os.path.exists(partial) and os.path.exists(done_path):
    with open(done_path) as f:
      done = {tuple(t) for t in json.load(f)}
    out = _open_output(partial)
    if tuple(out.shape) != shape:
      raise errors.InputError(
          f'{partial} has shape {out.shape}, not {shape}: delete it to start over')
  else:
    out = _create_output(partial, shape, (axes[0].kept, axes[1].kept, shape[2]))
  total = axes[0].count * axes[1].count
  with tqdm.tqdm(total=total, initial=len(done), unit='tile', disable=not progress) as bar:
    for chunk, keeps, pieces in tiled._tiles(model, image, tile, batch, skip=frozenset(done)):
      for keep, piece in zip(keeps, pieces):
        out[keep[0], keep[1]] = piece
      if isinstance(out, np.memmap):
        out.flush()
      done.update(chunk)
      files.write_json(done_path, sorted(done))
      bar.update(len(chunk))
  del out
  os.replace(partial, output)
  os.remove(done_path)
  return output
