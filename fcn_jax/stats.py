"""Evidence for experiments: bootstrap intervals, paired differences, margins, verdicts.

Experiments report their numbers through this module, so that every interval and verdict
is computed one way:

* A metric is pooled from additive counts per evaluation unit (image): `f1` from
  (true positives, false positives, false negatives), `accuracy` from (correct,
  total). Counts come as an array `[units, k]` for one run or `[seeds, units, k]`
  for several seeds evaluated on the same images.
* `interval`: the pooled metric with a percentile bootstrap interval (95 %, 2,000
  resamples, a fixed resampling seed). Each resample draws images with
  replacement and, when there are several, seeds with replacement; the same image
  indices are used for every seed drawn (the test images are shared, so an image's
  difficulty is too). With one seed it is the bootstrap over images.
* `difference`: metric(a) - metric(b) with its interval. Paired (the default) when
  `a` and `b` were scored on the same images (size vs a reference size on crops of
  one scene, variant vs variant on one test set): every resample uses the same
  indices for both. Unpaired resamples each independently.
* `compare`: the verdict word from a difference's interval and a margin declared
  before the run: 'failed to train' if either run collapsed (`collapsed`);
  'equivalent' only if the whole interval lies inside [-margin, margin]; 'higher' /
  'lower' only if it excludes zero; otherwise 'inconclusive'.
"""

import dataclasses
from typing import Callable

import numpy as np

Metric = Callable[[np.ndarray], np.ndarray]
LEVEL = 0.95
RESAMPLES = 2000
SEED = 0


def f1(sums: np.ndarray) -> np.ndarray:
  """F1 from pooled (tp, fp, fn) on the last axis; 0 where there is nothing to find or predict."""
  sums = np.asarray(sums, np.float64)
  tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
  return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def accuracy(sums: np.ndarray) -> np.ndarray:
  """Accuracy from pooled (correct, total) on the last axis."""
  sums = np.asarray(sums, np.float64)
  return sums[..., 0] / np.maximum(sums[..., 1], 1)


def mean_iou(sums: np.ndarray) -> np.ndarray:
  """Mean IoU over the classes present, from a pooled `K x K` confusion matrix (rows: truth)
  flattened on the last axis (`[..., K*K]`)."""
  sums = np.asarray(sums, np.float64)
  k = int(round(sums.shape[-1] ** 0.5))
  confusion = sums.reshape(*sums.shape[:-1], k, k)
  truth, hits = confusion.sum(-1), np.diagonal(confusion, axis1=-2, axis2=-1)
  union = truth + confusion.sum(-2) - hits
  present = truth > 0
  iou = np.where(present, hits / np.maximum(union, 1), 0)
  return iou.sum(-1) / np.maximum(present.sum(-1), 1)


def binary_counts(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """(tp, fp, fn) of boolean maps per unit: `[units, ...]` -> `[units, 3]`."""
  predicted = np.asarray(predicted, bool).reshape(len(predicted), -1)
  truth = np.asarray(truth, bool).reshape(len(truth), -1)
  if predicted.shape != truth.shape:
    raise ValueError(f'predictions {predicted.shape} and targets {truth.shape} differ in shape')
  return np.stack([(predicted & truth).sum(1), (predicted & ~truth).sum(1),
                   (~predicted & truth).sum(1)], axis=1)


@dataclasses.dataclass(frozen=True)
class Interval:
  """A point estimate with its bootstrap interval [low, high] at `level`."""
  estimate: float
  low: float
  high: float
  level: float = LEVEL

  def excludes_zero(self) -> bool:
    return self.low > 0 or self.high < 0

  def within(self, margin: float) -> bool:
    """The whole interval lies inside [-margin, margin]."""
    return -margin <= self.low and self.high <= margin

  def __str__(self) -> str:
    return f'{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]'


def _by_seed(counts: np.ndarray) -> np.ndarray:
  counts = np.asarray(counts, np.float64)
  if counts.ndim == 2:
    counts = counts[None]
  if counts.ndim != 3 or not counts.shape[1]:
    raise ValueError(f'counts must be [units, k] or [seeds, units, k] with units > 0, got '
                     f'{counts.shape}')
  return counts


def _draws(rng: np.random.Generator, seeds: int, units: int, resamples: int):
  """How often each seed and each image is drawn in each resample: `[resamples, seeds]`,
  `[resamples, units]` (seeds are drawn only when there are several)."""
  seed_draws = (rng.integers(0, seeds, (resamples, seeds)) if seeds > 1 else
                np.zeros((resamples, 1), np.int64))
  unit_draws = rng.integers(0, units, (resamples, units))
  return _tally(seed_draws, seeds), _tally(unit_draws, units)


def _tally(draws: np.ndarray, n: int) -> np.ndarray:
  rows = np.repeat(np.arange(len(draws)), draws.shape[1])
  out = np.zeros((len(draws), n))
  np.add.at(out, (rows, draws.ravel()), 1)
  return out


def _pooled(counts: np.ndarray, seed_weights: np.ndarray, unit_weights: np.ndarray):
  """The counts summed over the drawn seeds and images of each resample: `[resamples, k]`."""
  return np.einsum('rs,rn,snk->rk', seed_weights, unit_weights, counts, optimize=True)


def _interval(estimate: float, boot: np.ndarray, level: float) -> Interval:
  tail = 100 * (1 - level) / 2
  low, high = np.percentile(boot, [tail, 100 - tail])
  return Interval(float(estimate), float(low), float(high), level)


def interval(counts: np.ndarray, metric: Metric = f1, level: float = LEVEL,
             resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
  """The pooled `metric` of `counts` (`[units, k]` or `[seeds, units, k]`) with its interval."""
  counts = _by_seed(counts)
  seed_idx, unit_idx = _draws(np.random.default_rng(seed), counts.shape[0], counts.shape[1],
                              resamples)
  boot = metric(_pooled(counts, seed_idx, unit_idx))
  return _interval(metric(counts.sum((0, 1))), boot, level)


def difference(a: np.ndarray, b: np.ndarray, metric: Metric = f1, paired: bool = True,
               level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
  """metric(a) - metric(b) with its interval; `paired`: a and b score the same images and seeds
  (same shape), and each resample draws the same indices for both."""
  a, b = _by_seed(a), _by_seed(b)
  rng = np.random.default_rng(seed)
  draws_a = _draws(rng, a.shape[0], a.shape[1], resamples)
  if paired:
    if a.shape[:2] != b.shape[:2]:
      raise ValueError(f'paired counts must score the same seeds and images: {a.shape[:2]} vs '
                       f'{b.shape[:2]}')
    draws_b = draws_a
  else:
    draws_b = _draws(rng, b.shape[0], b.shape[1], resamples)
  boot = metric(_pooled(a, *draws_a)) - metric(_pooled(b, *draws_b))
  return _interval(metric(a.sum((0, 1))) - metric(b.sum((0, 1))), boot, level)


def collapsed(predictions: np.ndarray, labels: np.ndarray | None = None,
              num_classes: int | None = None, tolerance: float = 0.02) -> bool:
  """A run that failed to train: every predicted label the same (`predictions` are labels, or
  scores with classes on the last axis when `num_classes` > 1; one channel is thresholded at 0),
  or, given `labels`, an accuracy within `tolerance` of chance (1 / num_classes)."""
  predictions = np.asarray(predictions)
  if num_classes and num_classes > 1 and predictions.ndim and predictions.shape[-1] == num_classes:
    predicted = predictions.argmax(-1)
  elif np.issubdtype(predictions.dtype, np.floating):
    predicted = predictions > 0
  else:
    predicted = predictions
  if np.unique(predicted).size <= 1:
    return True
  if labels is not None and num_classes:
    labels = np.asarray(labels)
    if labels.shape != predicted.shape:
      raise ValueError(f'labels {labels.shape} do not match predictions {predicted.shape}')
    return abs(float((predicted == labels).mean()) - 1 / num_classes) <= tolerance
  return False


def compare(diff: Interval, margin: float, failed: bool = False) -> str:
  """The verdict word for a difference (a - b) against a margin declared before the run."""
  if failed:
    return 'failed to train'
  if diff.within(margin):
    return 'equivalent'
  if diff.low > 0:
    return 'higher'
  if diff.high < 0:
    return 'lower'
  return 'inconclusive'


def sentence(a: str, b: str, diff: Interval, margin: float, failed: bool = False,
             metric: str = 'F1') -> str:
  """`compare` in words, with the numbers and the branch taken, e.g. for results.md."""
  word = compare(diff, margin, failed)
  if word == 'failed to train':
    return f'{a} vs {b}: failed to train (a collapsed run is not compared).'
  said = {
      'equivalent': f'equivalent within the margin of {margin:g} (the whole interval lies inside '
                    f'±{margin:g})',
      'higher': f'{a} is higher (the interval excludes 0)',
      'lower': f'{a} is lower (the interval excludes 0)',
      'inconclusive': f'inconclusive (the interval contains 0 and reaches outside ±{margin:g})',
  }[word]
  text = f'{metric} {a} − {b} = {diff} ({diff.level:.0%} interval): {said}.'
  return text[0].upper() + text[1:]
