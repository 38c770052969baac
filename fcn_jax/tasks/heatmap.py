"""Heat maps: each output cell predicts whether it holds the target (one sigmoid output).

For a net with integer stride `J` whose output `i` is centred on input pixel
`c_i = c_0 + J*i` (`fcn_jax.geometry`), output `i` owns the *cell* of input
rows `[ceil(c_i - J/2), ceil(c_i - J/2) + J)`: the cells tile the input, and
each output is trained on the pixels around the centre of what it sees.

* targets (`config.data.heatmap`): `'fraction'`, per cell the fraction of its
  labelled in-image pixels that belong to `target_class` (a soft target), or
  `'centres'`, 1 where an object centre falls in the cell; `(H', W', 1)` float32;
* loss: sigmoid cross-entropy against the soft targets, mean over cells;
* metrics: precision / recall / F1 of the cells (prediction > 0.5 vs target > 0.5),
  pooled over images; chance = the F1 of calling every cell positive, `2p / (1 + p)`
  for a share `p` of positive cells; per image (tp, fp, fn).
"""

import dataclasses
import math
from fractions import Fraction
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np
import optax
from matplotlib import colormaps

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import stats
from fcn_jax.tasks import base

KINDS = ('fraction', 'centres')


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


def _fraction_maker(g, size, target_class: int) -> Callable[[np.ndarray], np.ndarray]:
  rows, cols, jump = cell_starts(g, size)
  by_row = cell_matrix(rows, jump, size[0]).T
  by_col = cell_matrix(cols, jump, size[1])

  def fraction_of(mask):
    valid = (mask != base.IGNORE).astype(np.float32)
    hits = (mask == target_class).astype(np.float32)
    return (by_row @ hits @ by_col) / np.maximum(by_row @ valid @ by_col, 1)

  return fraction_of


def _centres_maker(g, size) -> Callable[[np.ndarray], np.ndarray]:
  rows, cols, jump = cell_starts(g, size)

  def centres_in(centres):
    out = np.zeros((len(rows), len(cols)), np.float32)
    for y, x in np.floor(np.asarray(centres, np.float64).reshape(-1, 2)).astype(np.int64):
      i = np.nonzero((rows <= y) & (y < rows + jump))[0]
      j = np.nonzero((cols <= x) & (x < cols + jump))[0]
      if i.size and j.size:
        out[i[0], j[0]] = 1
    return out

  return centres_in


def fraction(mask: np.ndarray, target_class: int, g: geometry.Geometry) -> np.ndarray:
  """`(H', W')` fraction of each cell's labelled in-image pixels that are `target_class`."""
  return _fraction_maker(g, mask.shape[:2], target_class)(mask)


def centres(points: np.ndarray, size: Sequence[int], g: geometry.Geometry) -> np.ndarray:
  """`(H', W')` map with 1 in every cell that holds an object centre `(row, col)`."""
  return _centres_maker(g, tuple(size))(points)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
  return 1 / (1 + np.exp(-logits))


class CellCounts(base.Metrics):
  """Precision / recall / F1 of heat-map cells; per image (tp, fp, fn)."""

  def __init__(self):
    self.tp = self.fp = self.fn = self.cells = self.positives = 0
    self.per_image = []

  def add(self, logits: np.ndarray, target: np.ndarray) -> None:
    called, positive = np.asarray(logits) > 0, np.asarray(target) > 0.5  # sigmoid(x) > 0.5
    image = stats.binary_counts(called[None], positive[None])[0]
    self.per_image.append(image)
    tp, fp, fn = image.tolist()
    self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
    self.cells += positive.size
    self.positives += int(positive.sum())

  def result(self) -> tuple[dict[str, float], float]:
    precision = self.tp / max(self.tp + self.fp, 1)
    recall = self.tp / max(self.tp + self.fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    p = self.positives / max(self.cells, 1)
    return {'precision': precision, 'recall': recall, 'f1': f1}, 2 * p / (1 + p)

  def interval(self) -> stats.Interval:
    return stats.interval(np.stack(self.per_image), stats.f1)


@dataclasses.dataclass(frozen=True)
class Heatmap(base.Task):
  """Cell heat maps of `target_class` (targets of `kind` 'fraction' or 'centres')."""

  name = 'heatmap'
  headline = 'f1'
  kind: str = 'fraction'
  target_class: int = 1

  def __post_init__(self):
    if self.kind not in KINDS:
      raise errors.ConfigError(f'data.heatmap must be one of {KINDS}, got {self.kind!r}')

  def inputs(self) -> tuple[str, ...]:
    return ('mask',) if self.kind == 'fraction' else ('centres',)

  def target_specs(self, g, size):
    return {'target': ((*g.output_size(size), 1), np.dtype(np.float32))}

  def target_maker(self, g, size):
    if self.kind == 'fraction':
      make = _fraction_maker(g, size, self.target_class)
      return lambda fields: {'target': make(fields['mask'])[..., None]}
    make = _centres_maker(g, size)
    return lambda fields: {'target': make(fields['centres'])[..., None]}

  def loss(self, logits, batch):
    target = batch['target']
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target.astype(logits.dtype)))

  def metrics(self, num_classes: int) -> CellCounts:
    del num_classes
    return CellCounts()

  def holds_positives(self, target) -> bool:
    return bool((np.asarray(target) > 0.5).any())

  def panels(self, target, logits):
    return target[..., 0], _sigmoid(logits[..., 0]), dict(vmin=0, vmax=1, cmap='magma')

  def overlay(self, image, logits):
    return base.blend(image, colormaps['magma'](_sigmoid(logits[..., 0]))[..., :3])
