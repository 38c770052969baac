"""Training targets at the model's output resolution, derived from its geometry (NumPy).

For a net with integer stride `J` whose output `i` is centred on input pixel
`c_i = c_0 + J*i` (`fcn_jax.geometry`), output `i` owns the *cell* of input
rows `[ceil(c_i - J/2), ceil(c_i - J/2) + J)`: the cells tile the input, and
each output is trained on the pixels around the centre of what it sees.

* `heatmap_fraction`: per cell, the fraction of its (in-image, labelled)
  pixels that belong to the target class;
* `heatmap_centres`: 1 where an object centre falls in the cell;
* `dense_labels`: for stride-1 nets, the label of the pixel at each output's
  centre (a crop for nets whose output is smaller, e.g. U-Net with valid
  convolutions);
* `unet_weight_map`: Ronneberger et al.'s border weights from instance ids.
"""

import math
from fractions import Fraction
from typing import Sequence

import numpy as np
from scipy import ndimage

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import losses


def cell_starts(g: geometry.Geometry, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
  """First input row (and column) of every output cell, and the cell size J."""
  fields = g.field(size)
  out = g.output_size(size)
  jumps = {f.jump for f in fields}
  if len(jumps) != 1 or next(iter(jumps)).denominator != 1:
    raise errors.ConfigError(f'{g.name}: cell targets need one integer stride, got {jumps}')
  jump = int(next(iter(jumps)))
  starts = [np.array([math.ceil(f.centre + jump * i - Fraction(jump, 2)) for i in range(n)])
            for f, n in zip(fields, out)]
  return starts[0], starts[1], jump


def cell_matrix(starts: np.ndarray, jump: int, n: int) -> np.ndarray:
  """`(n, len(starts))` 0/1 matrix: input position y belongs to cell i."""
  positions = np.arange(n)[:, None]
  return ((positions >= starts[None]) & (positions < starts[None] + jump)).astype(np.float32)


def heatmap_fraction(mask: np.ndarray, target_class: int, g: geometry.Geometry,
                     ignore_label: int = losses.IGNORE) -> np.ndarray:
  """`(H', W')` fraction of each cell's labelled in-image pixels that are `target_class`."""
  rows, cols, jump = cell_starts(g, mask.shape[:2])
  mr, mc = cell_matrix(rows, jump, mask.shape[0]), cell_matrix(cols, jump, mask.shape[1])
  valid = (mask != ignore_label).astype(np.float32)
  hits = (mask == target_class).astype(np.float32)
  return (mr.T @ hits @ mc) / np.maximum(mr.T @ valid @ mc, 1)


def heatmap_centres(centres: np.ndarray, size: Sequence[int], g: geometry.Geometry) -> np.ndarray:
  """`(H', W')` map with 1 in every cell that holds an object centre `(row, col)`."""
  rows, cols, jump = cell_starts(g, size)
  out = np.zeros((len(rows), len(cols)), np.float32)
  for y, x in np.asarray(centres).reshape(-1, 2):
    i = np.nonzero((rows <= int(np.floor(y))) & (int(np.floor(y)) < rows + jump))[0]
    j = np.nonzero((cols <= int(np.floor(x))) & (int(np.floor(x)) < cols + jump))[0]
    if i.size and j.size:
      out[i[0], j[0]] = 1
  return out


def dense_offsets(g: geometry.Geometry, size: Sequence[int]) -> tuple[int, int]:
  """For a stride-1 net: the input pixel under output (0, 0)'s centre."""
  fields = g.field(size)
  if any(f.jump != 1 or f.centre.denominator != 1 for f in fields):
    raise errors.ConfigError(f'{g.name}: dense labels need stride 1 and a whole-pixel centre, got '
                             f'{[(f.jump, f.centre) for f in fields]}')
  return tuple(int(f.centre) for f in fields)


def dense_labels(labels: np.ndarray, g: geometry.Geometry) -> np.ndarray:
  """Labels `(H', W', ...)` aligned with a stride-1 net's output (a crop when it is smaller)."""
  top, left = dense_offsets(g, labels.shape[:2])
  out_h, out_w = g.output_size(labels.shape[:2])
  return labels[top:top + out_h, left:left + out_w]


def unet_weight_map(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                    class_weights: Sequence[float] | None = None) -> np.ndarray:
  """`w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))` (Ronneberger et al., 2015).

  `d1`, `d2`: distances to the nearest and second-nearest cell. The separation
  term is applied to background pixels (the gaps between touching cells); `w_c`
  balances the classes (background, cell): by default `N / (2 * N_class)`.
  """
  instances = np.asarray(instances)
  foreground = instances > 0
  if class_weights is None:
    counts = np.array([(~foreground).sum(), foreground.sum()], np.float64)
    class_weights = np.where(counts > 0, foreground.size / (2 * np.maximum(counts, 1)), 0)
  weights = np.where(foreground, class_weights[1], class_weights[0]).astype(np.float32)
  ids = np.unique(instances[foreground])
  if len(ids) >= 2:
    distances = np.stack([ndimage.distance_transform_edt(instances != i) for i in ids])
    distances.sort(axis=0)
    d1, d2 = distances[0], distances[1]
    separation = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))
    weights += np.where(foreground, 0, separation).astype(np.float32)
  return weights
