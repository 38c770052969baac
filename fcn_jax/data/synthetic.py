"""Deterministic NumPy generators behind the offline datasets (no TensorFlow here).

Every generator takes a `numpy.random.Generator`, so an example is a pure
function of its seed.
"""

from typing import Any

import numpy as np
from scipy import ndimage

SHAPE_CLASSES = ('background', 'circle', 'square', 'triangle')


def _smooth_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
  """Zero-mean, unit-variance low-frequency noise."""
  field = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma, mode='wrap')
  return (field - field.mean()) / (field.std() + 1e-8)


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A dim, tinted, blotchy background with fine grain, float32 in [0, 1]."""
  base = rng.uniform(0.15, 0.45, size=3)
  blotches = _smooth_noise(rng, height, width, sigma=rng.uniform(6, 20))
  tint = rng.uniform(0.3, 1.0, size=3)
  image = base + 0.08 * blotches[..., None] * tint
  image += 0.04 * rng.standard_normal((height, width, 3))
  return np.clip(image, 0, 1).astype(np.float32)


def _shape_mask(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float,
                angle: float) -> np.ndarray:
  """Pixels of a circle / rotated square / rotated triangle of 'radius' r (on a local grid)."""
  dy, dx = yy - cy, xx - cx
  if kind == 'circle':
    return dy * dy + dx * dx <= r * r
  cos, sin = np.cos(angle), np.sin(angle)
  u, v = cos * dx + sin * dy, -sin * dx + cos * dy
  if kind == 'square':
    half = r / np.sqrt(2)
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  # Equilateral triangle inscribed in the circle of radius r: three half-planes.
  inside = np.ones_like(u, dtype=bool)
  for k in range(3):
    theta = angle + np.pi / 2 + 2 * np.pi * k / 3
    inside &= (np.cos(theta) * dx + np.sin(theta) * dy) <= r / 2
  return inside


OBJECTS_PER_PIXEL = 2.5 / 128 ** 2  # shapes' density: 2.5 objects per 128x128 pixels


def shapes_example(rng: np.random.Generator, height: int, width: int,
                   min_radius: float = 6, max_radius: float = 36) -> dict[str, Any]:
  """An image with circles, squares and triangles; mask classes follow `SHAPE_CLASSES`.

  The image is a window onto a stationary scene: objects (Poisson, OBJECTS_PER_PIXEL
  per pixel) have centres uniform over the image grown by `max_radius` on every side
  and radii uniform in [min_radius, max_radius], whatever the image size, so shapes
  near the border are cut as a crop would cut them, and object density and size do
  not depend on `height` and `width` (tested). An image may hold no object.

  Objects are drawn in random order (later ones occlude earlier ones); centres
  (row, col; outside the image for a cut shape) and boxes (ymin, xmin, ymax, xmax,
  normalised, of the visible part) and radii describe every visible shape.
  """
  image = textured_background(rng, height, width)
  mask = np.zeros((height, width), np.uint8)
  m = max_radius
  count = rng.poisson(OBJECTS_PER_PIXEL * (height + 2 * m) * (width + 2 * m))
  centres, boxes, labels, radii = [], [], [], []
  for _ in range(count):
    label = int(rng.integers(1, len(SHAPE_CLASSES)))
    r = float(rng.uniform(min_radius, max_radius))
    cy, cx = float(rng.uniform(-m, height + m)), float(rng.uniform(-m, width + m))
    top, bottom = max(0, int(cy - r) - 1), min(height, int(cy + r) + 2)
    left, right = max(0, int(cx - r) - 1), min(width, int(cx + r) + 2)
    if bottom <= top or right <= left:  # wholly outside the window
      continue
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32) + 0.5
    inside = _shape_mask(SHAPE_CLASSES[label], yy, xx, cy, cx, r, rng.uniform(0, 2 * np.pi))
    if not inside.any():
      continue
    colour = rng.uniform(0.35, 1.0, size=3)
    colour[rng.integers(3)] = rng.uniform(0.75, 1.0)  # at least one bright channel
    shade = colour + 0.05 * rng.standard_normal((*inside.shape, 3))
    region = image[top:bottom, left:right]
    region[inside] = np.clip(shade[inside], 0, 1)
    mask[top:bottom, left:right][inside] = label
    rows, cols = np.nonzero(inside)
    boxes.append([(top + rows.min()) / height, (left + cols.min()) / width,
                  (top + rows.max() + 1) / height, (left + cols.max() + 1) / width])
    centres.append([cy, cx])
    labels.append(label)
    radii.append(r)
  return {
      'image': (image * 255).round().astype(np.uint8),
      'mask': mask[..., None],
      'objects': {'centre': np.asarray(centres, np.float32).reshape(-1, 2),
                  'box': np.asarray(boxes, np.float32).reshape(-1, 4),
                  'label': np.asarray(labels, np.int64),
                  'radius': np.asarray(radii, np.float32)},
  }


# --------------------------------------------------------------------------
# Digits (scikit-learn's copy of the UCI handwritten digits: 1,797 8x8 images).


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """The 8x8 digit images as float32 in [0, 1] and their labels."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def digit_split(labels: np.ndarray, split: str, test_fraction: float = 0.2) -> np.ndarray:
  """Indices of a fixed, seeded train/test split of the digits (no digit is in both)."""
  order = np.random.default_rng(1797).permutation(len(labels))
  n_test = int(round(test_fraction * len(labels)))
  return np.sort(order[:n_test] if split == 'test' else order[n_test:])


def upscale_digit(digit: np.ndarray, scale: int) -> np.ndarray:
  """Bilinear upscaling of an 8x8 digit by an integer factor, clipped to [0, 1]."""
  return np.clip(ndimage.zoom(digit, scale, order=1, grid_mode=True, mode='grid-constant'),
                 0, 1)


def single_digit(digit: np.ndarray, size: int = 28, scale: int = 3) -> np.ndarray:
  """An MNIST-like `size`x`size` uint8 image of one upscaled digit, centred."""
  big = upscale_digit(digit, scale)
  canvas = np.zeros((size, size), np.float32)
  top, left = (size - big.shape[0]) // 2, (size - big.shape[1]) // 2
  canvas[top:top + big.shape[0], left:left + big.shape[1]] = big
  return (canvas * 255).round().astype(np.uint8)[..., None]


def digit_canvas(rng: np.random.Generator, height: int, width: int, digits: np.ndarray,
                 labels: np.ndarray, threshold: float = 0.35) -> dict[str, Any]:
  """Digits scattered without overlap on a noisy canvas; mask = 0 background, 1 + digit ink."""
  canvas = np.clip(0.05 * rng.standard_normal((height, width)), 0, 1).astype(np.float32)
  mask = np.zeros((height, width), np.uint8)
  taken = np.zeros((height, width), bool)
  centres, boxes, classes = [], [], []
  target = max(1, int(height * width / 40 ** 2))
  for _ in range(8 * target):
    if len(classes) == target:
      break
    scale = int(rng.integers(2, 5))
    side = 8 * scale
    if side >= min(height, width):
      continue
    top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
    if taken[max(0, top - 2):top + side + 2, max(0, left - 2):left + side + 2].any():
      continue
    k = int(rng.integers(len(labels)))
    big = upscale_digit(digits[k], scale)
    canvas[top:top + side, left:left + side] = np.maximum(canvas[top:top + side,
                                                                 left:left + side], big)
    mask[top:top + side, left:left + side][big > threshold] = labels[k] + 1
    taken[top:top + side, left:left + side] = True
    centres.append([top + side / 2, left + side / 2])
    boxes.append([top / height, left / width, (top + side) / height, (left + side) / width])
    classes.append(labels[k])
  return {
      'image': (canvas * 255).round().astype(np.uint8)[..., None],
      'mask': mask[..., None],
      'objects': {'centre': np.asarray(centres, np.float32).reshape(-1, 2),
                  'box': np.asarray(boxes, np.float32).reshape(-1, 4),
                  'label': np.asarray(classes, np.int64)},
  }


# --------------------------------------------------------------------------
# Cells.


def cells_example(rng: np.random.Generator, height: int, width: int,
                  mean_radius: float = 14) -> dict[str, Any]:
  """Touching, irregular fluorescent cells with blur and noise.

  Cells grow from random seeds with wobbly radii; where two cells meet, a
  one-pixel line of background separates them (as in the U-Net paper's data).
  Returns the grey image, the foreground mask and the instance ids (0 = none).
  """
  count = max(2, int(rng.poisson(height * width / (2.2 * mean_radius) ** 2)))
  cy = rng.uniform(0, height, count)
  cx = rng.uniform(0, width, count)
  radius = rng.uniform(0.7, 1.3, count) * mean_radius
  harmonics = rng.normal(0, 0.12, (count, 4)) / np.arange(1, 5)
  phases = rng.uniform(0, 2 * np.pi, (count, 4))
  best = np.full((height, width), np.inf, np.float32)
  instances = np.zeros((height, width), np.int32)
  for i in range(count):
    reach = 1.6 * radius[i]  # the wobble stays within +-(0.12 * sum 1/k) < 60 %
    top, bottom = max(0, int(cy[i] - reach)), min(height, int(cy[i] + reach) + 1)
    left, right = max(0, int(cx[i] - reach)), min(width, int(cx[i] + reach) + 1)
    if top >= bottom or left >= right:
      continue
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
    dy, dx = yy - cy[i], xx - cx[i]
    theta = np.arctan2(dy, dx)
    wobble = 1 + sum(harmonics[i, k] * np.cos((k + 2) * theta + phases[i, k]) for k in range(4))
    dist = np.sqrt(dy * dy + dx * dx) / (radius[i] * np.maximum(wobble, 0.2))
    window_best = best[top:bottom, left:right]
    closer = (dist < 1) & (dist < window_best)
    window_best[closer] = dist[closer]
    instances[top:bottom, left:right][closer] = i + 1
  # Separate touching cells by a background line where neighbouring ids differ.
  border = np.zeros_like(instances, bool)
  for axis in (0, 1):
    diff = np.diff(instances, axis=axis) != 0
    both = (np.delete(instances, 0, axis) > 0) & (np.delete(instances, -1, axis) > 0)
    edge = diff & both
    border[(slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))] |= edge
  instances[border] = 0
  instances = _relabel(instances)
  brightness = rng.uniform(0.45, 1.0, instances.max() + 1)
  brightness[0] = 0
  interior = np.clip(1.2 - best, 0, 1) ** 0.5  # brighter towards the centre
  image = brightness[instances] * (0.6 + 0.4 * interior)
  image *= 1 + 0.15 * _smooth_noise(rng, height, width, sigma=2)
  image = ndimage.gaussian_filter(image, rng.uniform(0.6, 1.2))
  image += 0.06 + 0.04 * rng.standard_normal((height, width))
  image = np.clip(image, 0, 1)
  return {
      'image': (image * 255).round().astype(np.uint8)[..., None],
      'mask': (instances > 0).astype(np.uint8)[..., None],
      'instances': instances.astype(np.uint16)[..., None],
  }


def _relabel(instances: np.ndarray) -> np.ndarray:
  """Consecutive ids 1..K for the ids still present (0 stays background)."""
  ids = np.unique(instances)
  lookup = np.zeros(instances.max() + 1, np.int32)
  lookup[ids] = np.arange(len(ids)) if ids[0] == 0 else np.arange(1, len(ids) + 1)
  return lookup[instances]
