"""Instances: objects labelled from a foreground, and how well they match the true objects.

A semantic segmentation says which pixels are cells; an instance segmentation says which
cell each pixel belongs to (ids 1, 2, ...; 0 = background). This module turns the first into
the second and scores the result against true instance ids:

* `label(foreground, method)`: 'components' (connected components, 4-connected: two cells
  touch only where their pixels share an edge, so a one-pixel diagonal gap separates
  them) or 'watershed' (split components at the narrow necks of their distance transform:
  one marker per peak at least `min_distance` px from another, `skimage.segmentation`);
* `otsu_watershed(image)`: the classical baseline, Otsu's threshold then the watershed;
* `match(truth, pred)`: instance metrics.

`match` pairs objects one to one at IoU >= `iou` (0.5 by default), greedily from the highest
IoU, and counts true positives (matched), false positives (predicted objects left unmatched)
and false negatives (true objects left unmatched), with precision, recall and F1. It also
counts the errors a matching at IoU 0.5 hides the kind of:

* merges: true objects lying mostly (more than half their pixels) in a predicted object
  that already holds another such true object (two cells predicted as one: 1 merge);
* splits: predicted objects lying mostly in a true object that already holds another such
  predicted object (one cell predicted as two: 1 split);
* the adapted Rand error of the SNEMI3D challenge (`skimage.metrics.adapted_rand_error`,
  true background ignored): 0 for a perfect segmentation, it counts pixel pairs that the two
  labellings group differently, so it weighs a large merge more than a small one.
"""

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import feature
from skimage import filters
from skimage import metrics
from skimage import segmentation

from fcn_jax import errors

METHODS = ('components', 'watershed')
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def label(foreground: np.ndarray, method: str = 'components', min_distance: int = 5,
          min_size: int = 0) -> np.ndarray:
  """Instance ids `(H, W)` int32 (0 = background) of a boolean foreground `(H, W)`.

  `min_size`: objects of fewer pixels are dropped (set to background), after labelling.
  """
  foreground = np.asarray(foreground, bool)
  if foreground.ndim != 2:
    raise errors.InputError(f'instances: expected an HxW foreground, got shape '
                            f'{foreground.shape}')
  if method not in METHODS:
    raise errors.ConfigError(f'instances: method {method!r} is not one of {METHODS}')
  components, _ = ndimage.label(foreground, _FOUR_CONNECTED)
  if method == 'watershed':
    distance = ndimage.distance_transform_edt(foreground)
    peaks = feature.peak_local_max(distance, min_distance=min_distance, labels=components,
                                   exclude_border=False)
    markers = np.zeros(foreground.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A component without a peak (thinner than min_distance everywhere) keeps one marker.
    unmarked = np.setdiff1d(np.unique(components[foreground]), components[markers > 0])
    for i, c in enumerate(unmarked, start=len(peaks) + 1):
      markers[tuple(np.argwhere(components == c)[0])] = i
    components = segmentation.watershed(-distance, markers, mask=foreground,
                                        connectivity=_FOUR_CONNECTED)
  if min_size:
    sizes = np.bincount(components.ravel())
    components = np.where(sizes[components] >= min_size, components, 0)
  return _consecutive(components)


def otsu_watershed(image: np.ndarray, min_distance: int = 5, min_size: int = 0) -> np.ndarray:
  """The baseline without learning: Otsu's threshold of a grey image `(H, W)` or `(H, W, 1)`
  (bright objects), then `label(..., 'watershed')`."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim != 2:
    raise errors.InputError(f'otsu_watershed: expected a grey HxW image, got {image.shape}')
  return label(image > filters.threshold_otsu(image), 'watershed', min_distance, min_size)


@dataclasses.dataclass(frozen=True)
class Match:
  """Instance metrics of one image (see the module docstring). Counts add over images."""

  true_objects: int
  pred_objects: int
  tp: int
  fp: int
  fn: int
  merges: int
  splits: int
  rand_error: float  # adapted Rand error, in [0, 1]

  @property
  def precision(self) -> float:
    return self.tp / max(self.tp + self.fp, 1)

  @property
  def recall(self) -> float:
    return self.tp / max(self.tp + self.fn, 1)

  @property
  def f1(self) -> float:
    return 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)


def match(truth: np.ndarray, pred: np.ndarray, iou: float = 0.5) -> Match:
  """Instance metrics of predicted instance ids `pred` against true ones `truth` (same
  `(H, W)` shape; 0 = background in both)."""
  truth, pred = np.asarray(truth), np.asarray(pred)
  if truth.shape != pred.shape:
    raise errors.InputError(f'instances: truth {truth.shape} and prediction {pred.shape} '
                            'differ in shape')
  truth, pred = _consecutive(truth), _consecutive(pred)
  n_true, n_pred = int(truth.max()), int(pred.max())
  # overlap[t, p]: pixels of true object t in predicted object p (row/column 0: background).
  overlap = np.bincount(truth.ravel().astype(np.int64) * (n_pred + 1) + pred.ravel(),
                        minlength=(n_true + 1) * (n_pred + 1)).reshape(n_true + 1, n_pred + 1)
  true_size, pred_size = overlap.sum(1), overlap.sum(0)
  inner = overlap[1:, 1:]
  union = true_size[1:, None] + pred_size[None, 1:] - inner
  ious = inner / np.maximum(union, 1)
  tp = 0
  used_true, used_pred = set(), set()
  candidates = np.argwhere(ious >= iou)
  for t, p in sorted(candidates.tolist(), key=lambda tp_: -ious[tp_[0], tp_[1]]):
    if t not in used_true and p not in used_pred:
      used_true.add(t)
      used_pred.add(p)
      tp += 1
  # A true object lies mostly in p when more than half its pixels are in p (at most one p).
  true_in = np.argwhere(2 * inner > true_size[1:, None])  # (t, p) pairs
  pred_in = np.argwhere(2 * inner > pred_size[None, 1:])
  merges = int(sum(max(0, c - 1) for c in np.bincount(true_in[:, 1], minlength=n_pred)))
  splits = int(sum(max(0, c - 1) for c in np.bincount(pred_in[:, 0], minlength=n_true)))
  if n_true:
    rand_error = float(metrics.adapted_rand_error(truth, pred, ignore_labels=(0,))[0])
  else:
    rand_error = 0.0 if n_pred == 0 else 1.0
  return Match(true_objects=n_true, pred_objects=n_pred, tp=tp, fp=n_pred - tp,
               fn=n_true - tp, merges=merges, splits=splits, rand_error=rand_error)


def _consecutive(ids: np.ndarray) -> np.ndarray:
  """The same objects with ids 1..N (0 stays background), int32."""
  ids = np.asarray(ids)
  if ids.dtype.kind not in 'iu':
    raise errors.InputError(f'instances: expected integer ids, got {ids.dtype}')
  if (ids < 0).any():
    raise errors.InputError('instances: ids must be >= 0 (0 = background)')
  values, inverse = np.unique(ids, return_inverse=True)
  if values[0] != 0:
    inverse = inverse + 1
  return inverse.reshape(ids.shape).astype(np.int32)
