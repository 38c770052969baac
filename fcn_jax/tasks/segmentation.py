"""Segmentation: a class per output pixel (softmax over K outputs), for stride-1 nets.

* targets: the label of the input pixel under each output's centre (a crop for nets
  whose output is smaller, e.g. U-Net with valid convolutions), int32 `(H', W')`,
  `base.IGNORE` where unlabelled; with `weight_map` set, also Ronneberger et al.'s
  border weights aligned the same way (`weight`, float32 `(H', W')`), which the data
  pipeline computes from the instance ids (`unet_weight_map`);
* loss: per-pixel softmax cross-entropy over labelled pixels, each multiplied by its
  class weight (`class_weights`) and by the weight map when there is one;
* metrics: Long et al.'s four from a confusion matrix over labelled pixels (pixel
  accuracy, mean accuracy, mean IoU, frequency-weighted IoU; classes present in the
  truth); chance = the pixel accuracy of predicting the most frequent class everywhere.
"""

import dataclasses
from typing import Sequence

import jax.numpy as jnp
import numpy as np
import optax
from scipy import ndimage

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import stats
from fcn_jax.tasks import base


def dense_offsets(g: geometry.Geometry, size: Sequence[int]) -> tuple[int, int]:
  """For a stride-1 net: the input pixel under output (0, 0)'s centre.

  An output of the input's own size is labelled pixel for pixel, whatever its field's
  centre: torchvision's segmentation nets resize their scores to the input size, which
  centres output i's field 3.5 px before pixel i at output stride 8 (`models.resnet`), and
  they are trained and evaluated with label i at output i.
  """
  fields = g.field(size)
  if all(f.jump == 1 for f in fields) and tuple(g.output_size(size)) == tuple(size):
    return 0, 0
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


def long_metrics(confusion: np.ndarray) -> dict[str, float]:
  """Long et al.'s four metrics from a `(K, K)` confusion matrix (rows: truth, cols: prediction).

  Pixel accuracy, mean (per-class) accuracy, mean IoU and frequency-weighted IoU,
  over the classes present in the ground truth.
  """
  confusion = np.asarray(confusion, np.float64)
  truth = confusion.sum(1)
  present = truth > 0
  hits = np.diag(confusion)
  union = truth + confusion.sum(0) - hits
  iou = hits[present] / np.maximum(union[present], 1)
  frequency = truth[present] / max(truth.sum(), 1)
  return {'pixel_accuracy': float(hits.sum() / max(confusion.sum(), 1)),
          'mean_accuracy': float((hits[present] / truth[present]).mean()),
          'mean_iou': float(stats.mean_iou(confusion.reshape(-1))),  # the bootstrapped form
          'fw_iou': float((frequency * iou).sum())}


def cross_entropy(logits, labels, weight=None, class_weights: Sequence[float] | None = None):
  """Per-pixel softmax CE, mean over labelled pixels (`base.IGNORE` ones do not count).

  `class_weights` (one per class) and `weight` (a per-pixel map, e.g. U-Net's
  border weights) multiply each pixel's loss.
  """
  valid = labels != base.IGNORE
  safe = jnp.where(valid, labels, 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  w = valid.astype(jnp.float32)
  if class_weights is not None:
    w = w * jnp.asarray(class_weights, jnp.float32)[safe]
  if weight is not None:
    w = w * weight
  return jnp.sum(losses * w) / jnp.maximum(jnp.sum(valid), 1)


@dataclasses.dataclass(frozen=True)
class Segmentation(base.Task):
  """Per-pixel classes; `class_weights` (per class) and U-Net `weight_map` (w0, sigma)."""

  name = 'segmentation'
  headline = 'pixel_accuracy'
  class_weights: tuple[float, ...] | None = None
  weight_map: tuple[float, float] | None = None

  def inputs(self) -> tuple[str, ...]:
    return ('mask', 'weight') if self.weight_map else ('mask',)

  def target_specs(self, g, size):
    shape = tuple(g.output_size(size))
    specs = {'target': (shape, np.dtype(np.int32))}
    if self.weight_map:
      specs['weight'] = (shape, np.dtype(np.float32))
    return specs

  def target_maker(self, g, size):
    dense_offsets(g, size)  # refuses a net that is not dense, once

    def make(fields):
      out = {'target': dense_labels(fields['mask'], g).astype(np.int32)}
      if 'weight' in fields:  # evaluation does not weigh its pixels
        out['weight'] = dense_labels(fields['weight'], g).astype(np.float32)
      return out

    return make

  def loss(self, logits, batch):
    return cross_entropy(logits, batch['target'], batch.get('weight'), self.class_weights)

  def metrics(self, num_classes: int) -> base.Confusion:
    return base.Confusion(num_classes, long_metrics)

  def holds_positives(self, target) -> bool:
    target = np.asarray(target)
    return bool(((target != 0) & (target != base.IGNORE)).any())

  def panels(self, target, logits):
    return (np.where(target == base.IGNORE, -1, target), np.argmax(logits, -1),
            dict(vmin=-1, vmax=max(2, logits.shape[-1] - 1), cmap='tab10',
                 interpolation='nearest'))

  def overlay(self, image, logits):
    return base.blend(image, base.class_colours(logits))
