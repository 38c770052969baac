"""What a streamed prediction writes: the values kept per output (`arrays`, `reduce`), the
record that ties an output to the model and image it came from (`record`), and the OME-Zarr
multiscale pyramid a viewer opens (`write_ome_zarr`).

Values (`predict --values=...`), per output position of a net with C output channels:

* `logits`: the raw outputs, float32 (C channels);
* `probabilities`: float16; a sigmoid for one channel (a heat map, binary segmentation),
  a softmax over C > 1 channels (classes);
* `labels`: the most likely class, uint8 (uint16 past 256 classes); for one channel,
  1 where the probability exceeds 1/2;
* `labels+confidence`: the labels and, float16, the probability of the label chosen.

Only `logits` keep everything; the others are what a user of a huge prediction opens, at
1/4 to 1/2 (probabilities) or 1/4 to 1/8 (labels) of the bytes.
"""

import hashlib
import json
import math
import os
import shutil

import jax
import numpy as np
from flax import nnx
from matplotlib import colormaps

from fcn_jax import errors
from fcn_jax import geometry

VALUES = ('logits', 'probabilities', 'labels', 'labels+confidence')


def arrays(values: str, out_shape) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """`{suffix: (shape, dtype)}` of the arrays written for `values` (suffix '' is the main one;
  '_confidence' is the labels' confidence)."""
  h, w, c = out_shape
  if c > 65536:
    raise errors.InputError(f'{c} output channels: labels past 65,536 classes are not supported')
  labels = np.dtype(np.uint8 if max(c, 2) <= 256 else np.uint16)
  if values == 'logits':
    return {'': ((h, w, c), np.dtype(np.float32))}
  if values == 'probabilities':
    return {'': ((h, w, c), np.dtype(np.float16))}
  if values == 'labels':
    return {'': ((h, w), labels)}
  if values == 'labels+confidence':
    return {'': ((h, w), labels), '_confidence': ((h, w), np.dtype(np.float16))}
  raise errors.InputError(f'values must be one of {", ".join(VALUES)}, got {values!r}')


def reduce(logits: np.ndarray, values: str) -> dict[str, np.ndarray]:
  """The arrays of `values` (see `arrays`) for a block of `(h, w, C)` logits."""
  logits = np.asarray(logits, np.float32)
  if values == 'logits':
    return {'': logits}
  if logits.shape[-1] == 1:
    p = 1 / (1 + np.exp(-logits[..., 0]))
    labels, confidence, probabilities = p > 0.5, np.maximum(p, 1 - p), p[..., None]
  else:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities = e / e.sum(-1, keepdims=True)
    labels = probabilities.argmax(-1)
    confidence = np.take_along_axis(probabilities, labels[..., None], -1)[..., 0]
  if values == 'probabilities':
    return {'': probabilities.astype(np.float16)}
  dtype = np.uint8 if max(logits.shape[-1], 2) <= 256 else np.uint16
  out = {'': labels.astype(dtype)}
  if values == 'labels+confidence':
    out['_confidence'] = confidence.astype(np.float16)
  return out


def record(model: nnx.Module, image, values: str, tile: int) -> dict:
  """What an output was computed from: the model's parameters and statistics (a hash), the
  image (shape, dtype and a hash of 16 evenly spaced rows: cheap on a gigapixel memory map,
  so an edit that misses those rows goes unnoticed), the values and the tile. Two runs with
  equal records write equal outputs."""
  h = hashlib.sha256(geometry.of(model).name.encode())
  for leaf in jax.tree.leaves(nnx.state(model, nnx.Param, nnx.BatchStat)):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  rows = hashlib.sha256()
  for r in sorted({int(i) for i in np.linspace(0, image.shape[0] - 1, 16)}):
    rows.update(np.ascontiguousarray(np.asarray(image[r:r + 1, :])).tobytes())
  return {'model': h.hexdigest()[:16],
          'image': {'shape': list(image.shape), 'dtype': str(np.dtype(image.dtype)),
                    'rows_sha256': rows.hexdigest()[:16]},
          'values': values, 'tile': tile}


def check_not_foreign(output: str, wanted: dict) -> bool:
  """True when `output` exists and was written for `wanted` (complete: nothing to do); False
  when it does not exist. An output of another model, image or values, or one that fcn_jax
  did not record, is refused with a one-line `InputError` and left as it is."""
  if not os.path.exists(output):
    return False
  try:
    with open(output + '.source.json') as f:
      found = json.load(f)
  except (OSError, ValueError):
    found = None
  if found == wanted:
    return True
  what = ('was not written by fcn_jax.predict' if found is None else
          'was computed ' + ', '.join(f'with another {k}' for k in wanted
                                      if found.get(k) != wanted[k]))
  raise errors.InputError(f'{output} already exists and {what}: nothing was overwritten; '
                          'delete it or choose another --output')


def _levels(shape: tuple[int, int], smallest: int = 256) -> list[int]:
  """Pyramid factors 2, 4, ... until the shorter side is at most `smallest`."""
  n = max(0, math.ceil(math.log2(max(min(shape) / smallest, 1))))
  return [2 ** k for k in range(1, n + 1)]


def write_ome_zarr(path: str, image, layers: dict, labels: np.ndarray, field: tuple, name: str,
                   num_classes: int, float_path: str | None = None) -> list[str]:
  """Writes the image and the prediction as OME-Zarr (NGFF 0.4) multiscale pyramids.

  `path` (`<name>.ome.zarr`) holds the image (channels first, as NGFF orders axes; a pyramid
  that halves down to 256 pixels, anti-aliased) and, under `labels/prediction`, the labels
  (nearest-neighbour pyramid, a colour per class): the layers napari and other NGFF viewers
  open together. The labels carry the net's stride as their scale, so they lie over the
  image; NGFF 0.4 as `ome-zarr` writes it places label pixel i at stride·i, and the offset of
  output i's field centre from there (`field`) is kept in the attributes under `fcn_jax`.
  `layers` maps names to float arrays (`(H', W')` or `(H', W', C)`: confidence,
  probabilities, logits); when given they go to `float_path`, a second NGFF image at the
  same scale. Arrays may be memory maps or zarr arrays: the pyramids are computed in chunks
  by Dask, never whole. Returns the paths written.

  NGFF 0.4 rather than 0.5: 0.4 is what most viewers read, and `ome-zarr` 0.21 writes 0.5
  label groups without the version field its own validator (`ome-zarr-models`) requires.
  """
  import dask.array as da  # pylint: disable=g-import-not-at-top
  import zarr  # pylint: disable=g-import-not-at-top
  from ome_zarr import format as ngff_format  # pylint: disable=g-import-not-at-top
  from ome_zarr import writer  # pylint: disable=g-import-not-at-top

  fmt = ngff_format.FormatV04()
  stride = {ax: float(f.jump) for ax, f in zip('yx', field)}
  centre = [float(f.centre) for f in field]
  meta = {'stride': [stride['y'], stride['x']], 'output_0_centre': centre,
          'note': 'output (i, j) of the net is centred on image pixel '
                  'output_0_centre + stride * (i, j)'}

  def channels_first(array, chunk=1024):
    a = da.from_array(array, chunks=(chunk, chunk, *array.shape[2:]))
    return a.transpose(2, 0, 1) if a.ndim == 3 else a

  group = zarr.open_group(path, mode='w', zarr_format=2)
  writer.write_image(channels_first(image), group, scale_factors=_levels(image.shape[:2]),
                     axes=['c', 'y', 'x'], name=name, fmt=fmt)
  group.attrs['fcn_jax'] = meta
  palette = colormaps['tab10']
  colours = [{'label-value': k, 'rgba': [int(255 * v) for v in palette(k % 10)]}
             for k in range(max(num_classes, 2))]
  writer.write_labels(channels_first(labels), group, name='prediction',
                      scale_factors=_levels(labels.shape), axes=['y', 'x'], scale=stride,
                      label_metadata={'colors': colours}, fmt=fmt)
  written = [path]
  if layers and float_path:
    blocks, names = [], []
    for key, a in layers.items():
      block = da.from_array(a, chunks=(1024, 1024, *a.shape[2:]))
      block = block if block.ndim == 3 else block[..., None]
      blocks.append(block)
      names += [key] if block.shape[2] == 1 else [f'{key}_{i}' for i in range(block.shape[2])]
    fgroup = zarr.open_group(float_path, mode='w', zarr_format=2)
    writer.write_image(da.concatenate(blocks, axis=2).transpose(2, 0, 1), fgroup,
                       scale_factors=_levels(labels.shape), axes=['c', 'y', 'x'],
                       scale={'c': 1.0, **stride}, name='prediction', fmt=fmt)
    fgroup.attrs['fcn_jax'] = {**meta, 'channels': names}
    written.append(float_path)
  return written


def remove(path: str) -> None:
  """Removes a file or a directory store, if there."""
  if os.path.isdir(path):
    shutil.rmtree(path)
  elif os.path.exists(path):
    os.remove(path)
