"""Test-time augmentation: the mean output over flipped, rotated and rescaled views.

`predict_tta(model, image, views='d4', scales=(1.0,))` runs the model on each view of the
image — the 8 symmetries of the square (`'d4'`: rotations by 0/90/180/270 degrees, each
with and without a horizontal flip), the 4 flips (`'flips'`: none, horizontal, vertical,
both) or none (`'none'`) — at each scale, maps each output back onto the plain output's
grid, and averages them, in logit space (`average='logits'`) or as probabilities
(`'sigmoid'` or `'softmax'` over the channels, returning probabilities).

A view is undone exactly when the net's output grid is symmetric in the image: output
`i` centred on `c + s*i` for `i < n` must satisfy `H - 1 - 2c = s*(n - 1)` (true for
same-size nets at every size; patch_net, centres at `8i`, needs `H = 8k + 1`); other sizes
are refused in one line naming the nearest that work (`symmetric_sizes`). Rotations by 90 degrees also need the same geometry along both axes. A
scale `r != 1` runs the image resized (bilinear) to the symmetric size nearest `r*H x r*W`
and resizes that output back (bilinear) to the plain output's size: an approximation,
as multi-scale testing always is.

Each view runs whole (`predict`) or exactly tiled (`tile=`, `predict_tiled`): one
compilation per view shape (at most two per scale: H x W and W x H), or one per tile size.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax.inference import tiled
from fcn_jax.inference import whole

VIEWS = {'none': [(0, False)], 'flips': [(0, False), (0, True), (2, True), (2, False)],
         'd4': [(k, flip) for k in range(4) for flip in (False, True)]}
AVERAGES = ('logits', 'sigmoid', 'softmax')


def _symmetric_axis(g: geometry.Geometry, n: int, a: int) -> bool:
  """Whether the output centres along axis `a` of an input of size `n` are symmetric in it."""
  try:
    k, field = g.axis(n, a)
  except errors.GeometryError:
    return False
  return n - 1 - 2 * field.centre == field.jump * (k - 1)


def symmetric_sizes(g: geometry.Geometry, n: int, a: int) -> list[int]:
  """The sizes nearest `n` (below and above, up to one each) whose output grid along axis `a`
  is symmetric, so that flipped views map back exactly."""
  below = next((m for m in range(n, 0, -1) if _symmetric_axis(g, m, a)), None)
  above = next((m for m in range(n, 4 * n + 64) if _symmetric_axis(g, m, a)), None)
  return sorted({m for m in (below, above) if m is not None})


def _run(model, image, tile, batch):
  return tiled.predict_tiled(model, image, tile, batch) if tile else whole.predict(model, image)


def _view(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
  x = np.rot90(image, k)
  return np.ascontiguousarray(x[:, ::-1] if flip else x)


def _undo(out: np.ndarray, k: int, flip: bool) -> np.ndarray:
  x = out[:, ::-1] if flip else out
  return np.rot90(x, -k)


def _resize(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
  return np.asarray(jax.image.resize(jnp.asarray(x, jnp.float32), (*size, x.shape[-1]),
                                     'bilinear'))


def _activate(logits: np.ndarray, average: str) -> np.ndarray:
  if average == 'sigmoid':
    return np.asarray(jax.nn.sigmoid(logits))
  if average == 'softmax':
    return np.asarray(jax.nn.softmax(logits, axis=-1))
  return logits


def predict_tta(model: nnx.Module, image: np.ndarray, views: str = 'd4',
                scales: Sequence[float] = (1.0,), average: str = 'logits',
                tile: int | None = None, batch: int = 8) -> np.ndarray:
  """The mean of `model`'s outputs over the views and scales of an `(H, W, C)` image (see the
  module docstring): logits, or probabilities when `average` is 'sigmoid' or 'softmax'."""
  if views not in VIEWS:
    raise errors.InputError(f'views must be one of {sorted(VIEWS)}, got {views!r}')
  if average not in AVERAGES:
    raise errors.InputError(f'average must be one of {AVERAGES}, got {average!r}')
  if not scales or any(r <= 0 for r in scales):
    raise errors.InputError(f'scales must be positive, got {tuple(scales)}')
  g = geometry.of(model)
  h, w = image.shape[:2]
  g.check((h, w))
  out_size = g.output_size((h, w))
  total = None
  for r in scales:
    size = (h, w)
    if r != 1:  # the size nearest r*H x r*W that the views can be mapped back from
      size = tuple((symmetric_sizes(g, max(1, round(r * n)), a) or [n])[0]
                   for a, n in enumerate((h, w)))
      g.check(size)
    scaled = image if size == (h, w) else _resize(image, size)
    for k, flip in VIEWS[views]:
      shape = size[::-1] if k % 2 else size
      if k or flip:
        g.check(shape)
        bad = [a for a in range(2) if not _symmetric_axis(g, shape[a], a)]
        if bad:
          sizes = '; '.join(f'{("height", "width")[a]} {shape[a]}: nearest '
                            f'{symmetric_sizes(g, shape[a], a)}' for a in bad)
          raise errors.InputError(
              f'{g.name}\'s output centres on {shape[0]}x{shape[1]} are not symmetric in the '
              f'image, so a flipped or rotated view cannot be mapped back exactly ({sizes}): '
              "crop the image to such a size, or use views='none'")
      out = _undo(_run(model, _view(scaled, k, flip), tile, batch), k, flip)
      if out.shape[:2] != tuple(out_size):
        if r == 1:
          raise errors.InputError(f'{g.name}: a rotated view gives a {out.shape[0]}x'
                                  f'{out.shape[1]} output, not {out_size[0]}x{out_size[1]}: '
                                  "its geometry differs between the axes; use views='flips'")
        out = _resize(out, out_size)
      out = _activate(out, average)
      total = out.astype(np.float64) if total is None else total + out
  return (total / (len(scales) * len(VIEWS[views]))).astype(np.float32)
