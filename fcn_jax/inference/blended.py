"""Blended tiling: overlapping windows averaged with weights, for models exact tiling refuses.

Exact tiling (`tiled.predict_tiled`) equals the whole-image run, but refuses models whose
outputs depend on the whole input (GroupNorm/LayerNorm statistics, global pooling,
resizing to a fixed size, circular padding that a layer does not keep periodic). `predict_blended` runs any fully
convolutional model on overlapping windows of one shape and averages the overlapping
outputs with weights that fall off towards each window's border — MONAI's and nnU-Net's
sliding window. It approximates the whole-image run: near window borders the net sees
its own padding instead of the image (`benchmarks.blending` measures the deviation per
model family). Where exact tiling applies it is used instead (`exact=True`, the default),
so the result is then the whole-image output.

Windows: `tile` pixels a side (rounded down to a size the net accepts, a multiple of its
stride), origins on the stride's lattice so that consecutive windows share `overlap` of
their outputs (a window of K outputs steps by `K * (1 - overlap)` outputs), the last
window flush with the image's end (the image is zero-padded by less than one stride where
the lattice does not reach it). Window output `i` is global output `origin / stride + i`.
Weights per window output: 'constant', 'gaussian' (sigma = 1/8 of the window, as nnU-Net)
or 'hann' (sin^2, positive up to the edge). One compilation: every call is `batch`
windows of one shape (the last batch padded).
"""

import math

import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax.inference import tiled
from fcn_jax.inference import tiling
from fcn_jax.inference import whole

WEIGHTS = ('constant', 'gaussian', 'hann')


def weight_map(shape: tuple[int, int], kind: str) -> np.ndarray:
  """`(H', W')` weights of one window's outputs (max 1, positive everywhere)."""
  axes = []
  for n in shape:
    x = np.arange(n) + 0.5
    if kind == 'constant':
      w = np.ones(n)
    elif kind == 'gaussian':
      w = np.exp(-0.5 * ((x - n / 2) / (n / 8)) ** 2)
    elif kind == 'hann':
      w = np.sin(np.pi * x / n) ** 2
    else:
      raise errors.InputError(f'blend weights must be one of {WEIGHTS}, got {kind!r}')
    axes.append(w)
  out = np.outer(*axes)
  return np.maximum(out / out.max(), 1e-3).astype(np.float32)  # no output weighs zero


def exactly_tileable(model: nnx.Module, size: tuple[int, int], tile: int) -> bool:
  g = geometry.of(model)
  try:
    for a in range(2):
      tiling.axis_tiling(g, size[a], a, tile)
  except errors.TilingError:
    return False
  return True


def _window(g: geometry.Geometry, n: int, a: int, tile: int, stride: int) -> int:
  for size in range(min(tile, n) // stride * stride, 0, -stride):
    if g.accepts(size, a):
      return size
  raise errors.InputError(f'no window of at most {min(tile, n)} pixels (a multiple of the '
                          f'stride {stride}) suits {g.name} along axis {a}: raise the tile')


def _origins(n: int, window: int, step: int, stride: int) -> list[int]:
  last = math.ceil((n - window) / stride) * stride  # flush with the end, on the lattice
  origins = list(range(0, last, step))
  return origins + [last] if not origins or origins[-1] != last else origins


def predict_blended(model: nnx.Module, image: np.ndarray, tile: int = 256, overlap: float = 0.25,
                    weights: str = 'gaussian', batch: int = 8, exact: bool = True) -> np.ndarray:
  """The output of `model` on an `(H, W, C)` image from overlapping, weighted windows (see the
  module docstring); `exact=True` uses exact tiling where the model allows it."""
  if not 0 <= overlap < 1:
    raise errors.InputError(f'overlap must be in [0, 1), got {overlap}')
  weight_map((1, 1), weights)  # refuses an unknown kind before any work
  g = geometry.of(model)
  h, w = image.shape[:2]
  g.check((h, w))
  if exact and exactly_tileable(model, (h, w), tile):
    return tiled.predict_tiled(model, image, tile, batch)
  strides = []
  for a, s in enumerate(g.stride):
    if s.denominator != 1:
      raise errors.InputError(f'{g.name} has output stride {s} along axis {a}: blended windows '
                              'need an integer stride')
    strides.append(int(s))
  window = [_window(g, n, a, tile, s) for a, (n, s) in enumerate(zip((h, w), strides))]
  out_window = g.output_size(window)
  # Steps in output positions, so that windows of a net that shrinks its input ('valid'
  # convs) still cover every output: `overlap` is the shared fraction of window outputs.
  step = [max(s, int(k * s * (1 - overlap)) // s * s) for k, s in zip(out_window, strides)]
  origins = [_origins(n, t, p, s) for n, t, p, s in zip((h, w), window, step, strides)]
  ends = [o[-1] + t for o, t in zip(origins, window)]
  source = image
  if ends[0] > h or ends[1] > w:  # less than one stride past the end: zeros, as a net pads
    source = np.zeros((*ends, image.shape[2]), image.dtype)
    source[:h, :w] = image
  weight = weight_map(out_window, weights)[..., None]
  full = [o[-1] // s + n for o, s, n in zip(origins, strides, out_window)]
  total, norm = None, np.zeros((*full, 1), np.float32)
  starts = [(r, c) for r in origins[0] for c in origins[1]]
  for first in range(0, len(starts), batch):
    chunk = starts[first:first + batch]
    views = np.stack([source[r:r + window[0], c:c + window[1]]
                      for r, c in chunk + chunk[-1:] * (batch - len(chunk))])
    logits = whole.predict(model, views.astype(np.float32))
    if total is None:
      total = np.zeros((*full, logits.shape[-1]), np.float32)
    for (r, c), piece in zip(chunk, logits):
      i, j = r // strides[0], c // strides[1]
      total[i:i + out_window[0], j:j + out_window[1]] += weight * piece
      norm[i:i + out_window[0], j:j + out_window[1]] += weight
  out_h, out_w = g.output_size((h, w))
  return (total / norm)[:out_h, :out_w]
