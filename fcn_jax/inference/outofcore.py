"""Images larger than memory: `open_image` maps a `.npy`, TIFF or `.zarr` array without
loading it, and `predict_to_file` streams tiled prediction into `.npy`, `.zarr` or OME-Zarr
outputs (logits, probabilities, labels or labels with confidence: `outputs`), resumably
(finished tiles are recorded; the final name appears only when complete).
"""

import json
import os
import shutil

import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax.inference import outputs
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


def create_array(path: str, shape, dtype, chunks):
  """A writable array on disk: a `.npy` memory map, or a `.zarr` array chunked like the tiles."""
  if path.endswith('.zarr'):
    import zarr  # pylint: disable=g-import-not-at-top
    return zarr.create_array(store=path, shape=shape, chunks=(*chunks, *shape[2:]), dtype=dtype,
                             overwrite=True)
  return np.lib.format.open_memmap(path, mode='w+', dtype=dtype, shape=shape)


def _open(path: str):
  if path.endswith('.zarr'):
    import zarr  # pylint: disable=g-import-not-at-top
    return zarr.open_array(path, mode='r+')
  return np.load(path, mmap_mode='r+')


FORMATS = {'.npy': 'npy', '.zarr': 'zarr', '.ome.zarr': 'ome-zarr'}


def output_format(output: str) -> str:
  """'npy', 'zarr' or 'ome-zarr', from the output's name."""
  for ext in ('.ome.zarr', '.zarr', '.npy'):
    if output.endswith(ext):
      return FORMATS[ext]
  raise errors.InputError(f'output {output!r} must end in .npy, .zarr or .ome.zarr')


def planned_arrays(output: str, values: str, out_shape) -> dict[str, tuple]:
  """`{partial path: (values kind, suffix, final path, shape, dtype)}` of the arrays streamed."""
  fmt = output_format(output)
  if fmt != 'ome-zarr':
    stem, ext = output[:-len('.' + fmt)], '.' + fmt
    return {f'{stem}{suffix}.partial{ext}': (values, suffix, f'{stem}{suffix}{ext}', *spec)
            for suffix, spec in outputs.arrays(values, out_shape).items()}
  # OME-Zarr: labels always (the layer a viewer overlays), and the float values asked for.
  work = output + '.partial'
  kinds = (['labels+confidence'] if values == 'labels+confidence' else
           ['labels'] + ([values] if values in ('probabilities', 'logits') else []))
  planned = {}
  for kind in kinds:
    for suffix, spec in outputs.arrays(kind, out_shape).items():
      key = suffix.lstrip('_') or kind.split('+')[0]
      planned[os.path.join(work, f'{key}.zarr')] = (kind, suffix, key, *spec)
  return planned


def predict_to_file(model: nnx.Module, image, output: str, tile: int = 256, batch: int = 8,
                    progress: bool = True, values: str = 'logits', name: str = 'image') -> str:
  """Tiled prediction of a (possibly larger than memory) image, streamed to disk.

  `output` ends in `.npy` or `.zarr` (the `values`, see `fcn_jax.inference.outputs`;
  `labels+confidence` adds `<stem>_confidence.<ext>`) or `.ome.zarr` (an NGFF store with
  the image, `name`, and the labels as layers, plus `<stem>_<values>.ome.zarr` for float
  values: `outputs.write_ome_zarr`). Each tile's outputs are reduced to the values as they
  arrive, so memory is one batch of windows plus the touched pages of the arrays, whatever
  the values.

  Arrays are written tile by tile under `.partial` names and renamed when complete, so a
  file under a final name is always whole. Finished tiles are recorded in
  `<output>.done.json` after each batch with what the output is computed from
  (`outputs.record`): running again after an interruption computes only the missing tiles;
  running again on a complete output does nothing; an output or partial output of another
  model, image or values is refused, never overwritten.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  output = output.rstrip('/')
  planned = planned_arrays(output, values, whole.output_shape(model, image.shape))
  wanted = outputs.record(model, image, values, tile)
  if outputs.check_not_foreign(output, wanted):
    return output
  done_path = output + '.done.json'
  g = geometry.of(model)
  axes = [tiling.axis_tiling(g, n, a, tile) for a, n in enumerate(image.shape[:2])]
  chunks = (axes[0].kept, axes[1].kept)
  done: set[tuple[int, int]] = set()
  if os.path.exists(done_path):
    with open(done_path) as f:
      found = json.load(f)
    if not isinstance(found, dict) or found.get('record') != wanted:
      raise errors.InputError(f'{done_path} records a partial output of another model, image, '
                              'values or tile: delete it and the .partial arrays to start over, '
                              'or choose another --output')
  if os.path.exists(done_path) and all(os.path.exists(p) for p in planned):
    done = {tuple(t) for t in found['tiles']}
    arrays = {p: _open(p) for p in planned}
  else:
    for p in [*planned, output + '.done.d']:  # a Dask run's markers would claim these tiles
      outputs.remove(p)
    if output_format(output) == 'ome-zarr':
      os.makedirs(output + '.partial', exist_ok=True)
    arrays = {p: create_array(p, spec[3], spec[4], chunks) for p, spec in planned.items()}
  total = axes[0].count * axes[1].count
  with tqdm.tqdm(total=total, initial=len(done), unit='tile', disable=not progress) as bar:
    for chunk, keeps, pieces in tiled._tiles(model, image, tile, batch, skip=frozenset(done)):
      for keep, piece in zip(keeps, pieces):
        reduced = {kind: outputs.reduce(piece, kind) for kind in {s[0] for s in planned.values()}}
        for p, (kind, suffix, *_) in planned.items():
          arrays[p][keep[0], keep[1]] = reduced[kind][suffix]
      for array in arrays.values():
        if isinstance(array, np.memmap):
          array.flush()
          tiled.release_rows(array, min(keep[0].start for keep in keeps))  # written
      done.update(chunk)
      files.write_json(done_path, {'record': wanted, 'tiles': sorted(done)})
      bar.update(len(chunk))
  del arrays
  finish(model, image, output, planned, name)
  files.write_json(output + '.source.json', wanted)
  os.remove(done_path)
  return output


def finish(model, image, output: str, planned: dict, name: str) -> None:
  """Moves the complete arrays to their final names (for OME-Zarr: writes the pyramids)."""
  if output_format(output) != 'ome-zarr':
    for p, (_, _, final, *_) in planned.items():
      outputs.remove(final)
      os.replace(p, final)
    return
  import zarr  # pylint: disable=g-import-not-at-top
  arrays = {key: zarr.open_array(p, mode='r') for p, (_, _, key, *_) in planned.items()}
  labels = arrays.pop('labels')
  kind = next(iter(arrays), None)
  stem = output[:-len('.ome.zarr')]
  float_path = f'{stem}_{kind}.ome.zarr' if kind else None
  g = geometry.of(model)
  num_classes = whole.output_shape(model, image.shape)[2]
  tmp = [output + '.tmp', float_path + '.tmp' if float_path else None]
  outputs.write_ome_zarr(tmp[0], image, arrays, labels, g.field(image.shape[:2]), name,
                         num_classes, tmp[1])
  for t, final in zip(tmp, (output, float_path)):
    if t:
      outputs.remove(final)
      os.replace(t, final)
  shutil.rmtree(output + '.partial')
