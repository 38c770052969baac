"""A memory budget for tiled prediction: the largest tiles and batch that fit it.

`plan(model, image_shape, budget)` picks the tile side and batch size of `predict_tiled`
whose estimated peak memory stays under `budget` bytes, preferring the most pixels per
call (fewest calls, least halo recomputed), and says what it chose. The estimate is

  the process's resident memory after planning (Python, JAX, the model, the image if
    loaded, and what compiling the candidates left behind)
  + the output array (`H' x W' x C'` float32, held whole by `predict_tiled`), or for a
    streamed run (`predict_to_file` from a memory-mapped image) the row bands of input and
    output resident between releases (`tiled.release_rows`)
  + XLA's need for one call (arguments, outputs and temporaries of the compiled tile
    function, from its memory analysis at one tile per call, times the batch)
  + two host copies of one batch of windows and of their logits
  + a margin of 10 % and 64 MB (allocator slack).

Candidates: tile sides 64 * 2^k until one tile covers the image, batches 1, 2, 4, ..., 32
(no larger than the number of tiles); planning compiles one function per tile side. A
budget too small for the smallest candidate is refused with the minimum it would need.
"""

import dataclasses
import re

import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax.inference import tiled
from fcn_jax.inference import tiling
from fcn_jax.inference import whole
from fcn_jax import geometry

UNITS = {'': 1, 'B': 1, 'K': 2 ** 10, 'KB': 2 ** 10, 'M': 2 ** 20, 'MB': 2 ** 20,
         'G': 2 ** 30, 'GB': 2 ** 30}
BATCHES = (32, 16, 8, 4, 2, 1)
MARGIN_FRACTION, MARGIN_BYTES = 0.10, 64 * 2 ** 20


def parse_bytes(text: str) -> int:
  """'2GB', '512M', '1.5G' -> bytes (powers of 1024)."""
  match = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*([KMG]?B?)\s*', str(text).upper())
  if not match:
    raise errors.InputError(f'memory budget {text!r}: give a size such as 2GB, 512MB or 1.5G')
  return int(float(match.group(1)) * UNITS[match.group(2)])


def resident_bytes() -> int:
  """This process's resident memory now (Linux /proc; 0 where unavailable)."""
  try:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * 4096
  except (OSError, IndexError, ValueError):
    return 0


@dataclasses.dataclass
class Plan:
  tile: int
  batch: int
  estimate: int  # bytes
  budget: int

  def __str__(self):
    return (f'tile {self.tile}, batch {self.batch}: estimated peak '
            f'{self.estimate / 2 ** 20:,.0f} MB of the {self.budget / 2 ** 20:,.0f} MB budget')


def _host_bytes(model: nnx.Module, image_shape, axes, batch: int, streamed: bool,
                image_itemsize: int) -> int:
  """The output held (whole, or for a streamed run the row bands of the memory-mapped input
  and output that are resident between releases) and two host copies of one batch of
  windows and of their logits."""
  out_h, out_w, out_c = whole.output_shape(model, image_shape)
  out_c = out_c or 1
  if streamed:
    held = ((axes[0].size + axes[0].step) * image_shape[1] * image_shape[2] * image_itemsize +
            2 * axes[0].kept * out_w * out_c * 4)
  else:
    held = out_h * out_w * out_c * 4
  windows = batch * axes[0].size * axes[1].size * image_shape[2] * 4
  logits = batch * axes[0].size * axes[1].size * out_c * 4  # at most one output per pixel
  return held + 2 * (windows + logits)


def plan(model: nnx.Module, image_shape, budget: int | str, extra_bytes: int = 0,
         streamed: bool = False, image_itemsize: int = 4) -> Plan:
  """The tile and batch with the most pixels per call whose estimate fits `budget`.

  XLA's need is measured for one tile per call (one compilation per tile side) and scaled
  by the batch; the process's resident memory is read after those compilations, so what
  compiling leaves behind is counted. `extra_bytes`: what the caller needs besides (the CLI:
  its overlay picture). `streamed`: the run reads a memory-mapped image and writes its output
  tile by tile (`predict_to_file`), so only row bands of them are resident, not the output
  whole; `image_itemsize` is the bytes per pixel channel of that image (1 for uint8).
  """
  budget = parse_bytes(budget) if isinstance(budget, str) else int(budget)
  g = geometry.of(model)
  h, w = image_shape[:2]
  candidates, side = [], 64
  while side < 2 * max(h, w):
    try:
      axes = [tiling.axis_tiling(g, n, a, side) for a, n in enumerate((h, w))]
    except errors.TilingError:
      break
    count = axes[0].count * axes[1].count
    candidates.append((side, axes, count, tiled.compiled_bytes(model, image_shape, side, 1)))
    if count == 1:
      break  # one tile covers the image: larger tiles add nothing
    side *= 2
  if not candidates:
    tiling.axis_tiling(g, h, 0, 64)  # the model's own refusal (a TilingError)
  baseline = resident_bytes()
  best, smallest = None, None
  for side, axes, count, device in candidates:
    for batch in BATCHES:
      if batch > count and batch > 1:
        continue  # a batch larger than the image's tiles only pads
      need = (baseline + extra_bytes + batch * device +
              _host_bytes(model, image_shape, axes, batch, streamed, image_itemsize))
      need = int(need * (1 + MARGIN_FRACTION) + MARGIN_BYTES)
      smallest = need if smallest is None else min(smallest, need)
      if need <= budget:
        key = (min(batch, count) * side * side, -need)  # most pixels per call, least memory
        if best is None or key > best[0]:
          best = (key, Plan(side, batch, need, budget))
        break  # smaller batches of this tile hold fewer pixels
  if best is None:
    raise errors.InputError(
        f'a memory budget of {budget / 2 ** 20:,.0f} MB is too small for tiled prediction of '
        f'{g.name} on {h}x{w}: it needs at least {(smallest or 0) / 2 ** 20:,.0f} MB (this '
        f'process already uses {baseline / 2 ** 20:,.0f} MB)')
  return best[1]
