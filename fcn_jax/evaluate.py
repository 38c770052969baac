"""Evaluation at many input sizes: metrics per size, `results.md`, and PNG overlays.

Whole images of the evaluation split are run at their native sizes (one XLA
compilation per distinct size) and grouped by size. Metrics, with the score of
a trivial predictor beside them so that "better than chance" can be read off:

* heat maps: precision / recall / F1 of the cells (prediction > 0.5 vs target
  > 0.5); chance = F1 of calling every cell positive, `2p / (1 + p)`;
* classification: accuracy; chance = the most frequent class's share;
* segmentation: pixel accuracy, mean accuracy, mean IoU and frequency-weighted
  IoU (Long et al.; labelled pixels, classes present);
  chance = pixel accuracy of predicting the most frequent class everywhere.

Beside the headline metric of each size (F1, accuracy, pixel accuracy) is its 95 %
bootstrap interval over that size's images (`fcn_jax.stats.interval`), and for heat
maps the number of positive target cells, which sets how narrow it can be. The
example plotted for a size is its first image whose target holds a positive (heat
map: a cell > 0.5; segmentation: a labelled pixel of a class other than 0); the
first image where none does.
"""

import collections
import dataclasses
from typing import Any

import jax
import numpy as np
from flax import nnx

from fcn_jax import figures
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax import models
from fcn_jax import stats
from fcn_jax.data import catalog
from fcn_jax.data import pipeline



@dataclasses.dataclass
class SizeResult:
  """Metrics for the images of one input size."""
  size: tuple[int, int]
  output_shape: tuple[int, ...]
  images: int
  metrics: dict[str, float]
  chance: float
  example: dict[str, Any] | None = None  # an image, its target and prediction, for plots
  interval: stats.Interval | None = None  # of the headline metric (HEADLINE), over images
  positives: int | None = None  # heat maps: positive target cells
  counts: np.ndarray | None = None  # per image: (tp, fp, fn) for heat maps, else (correct, total)


@nnx.jit
def _forward(model, image):
  return model(image)


HEADLINE = {'heatmap': 'f1', 'classification': 'accuracy', 'segmentation': 'pixel_accuracy'}


def holds_positives(task: str, target: np.ndarray) -> bool:
  """Whether an evaluation target shows something to find (see the module docstring)."""
  target = np.asarray(target)
  if task == 'heatmap':
    return bool((target > 0.5).any())
  if task == 'segmentation':
    return bool(((target != 0) & (target != catalog.IGNORE)).any())
  return True


class Accumulator:
  """Counts over images (e.g. of one size) for a task's metrics: `add` each image's logits
  and target, then `result()` gives `(metrics, chance level)`."""

  def __init__(self, task: str, num_classes: int):
    self.task, self.k = task, num_classes
    self.counts = collections.Counter()
    self.confusion = np.zeros((num_classes, num_classes), np.int64)
    self.class_counts = np.zeros(num_classes, np.int64)
    self.per_image = []  # heat maps: (tp, fp, fn); else (correct, labelled)

  def add(self, logits: np.ndarray, target: np.ndarray):
    if self.task == 'heatmap':
      pred, truth = logits > 0, target > 0.5  # sigmoid(x) > 0.5  <=>  x > 0
      image = stats.binary_counts(pred[None], truth[None])[0]
      self.per_image.append(image)
      self.counts.update(dict(zip(('tp', 'fp', 'fn'), image.tolist())))
      self.counts['cells'] += truth.size
      self.counts['positive'] += int(truth.sum())
      return
    pred = np.argmax(logits, axis=-1)
    valid = target != catalog.IGNORE
    t, p = np.asarray(target)[valid].astype(np.int64), pred[valid]
    np.add.at(self.confusion, (t, p), 1)
    self.class_counts += np.bincount(t, minlength=self.k)[:self.k]
    self.per_image.append(np.array([int((t == p).sum()), t.size]))

  def interval(self) -> stats.Interval:
    """The headline metric (HEADLINE[task]) with its 95 % bootstrap interval over the images."""
    return stats.interval(np.stack(self.per_image),
                          stats.f1 if self.task == 'heatmap' else stats.accuracy)

  def result(self) -> tuple[dict[str, float], float]:
    if self.task == 'heatmap':
      c = self.counts
      precision = c['tp'] / max(c['tp'] + c['fp'], 1)
      recall = c['tp'] / max(c['tp'] + c['fn'], 1)
      f1 = 2 * precision * recall / max(precision + recall, 1e-12)
      p = c['positive'] / max(c['cells'], 1)
      return {'precision': precision, 'recall': recall, 'f1': f1}, 2 * p / (1 + p)
    total = max(self.confusion.sum(), 1)
    accuracy = np.trace(self.confusion) / total
    chance = self.class_counts.max() / total
    if self.task == 'classification':
      return {'accuracy': float(accuracy)}, float(chance)
    return segmentation_metrics(self.confusion), float(chance)


def segmentation_metrics(confusion: np.ndarray) -> dict[str, float]:
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


def evaluate(model: nnx.Module, data, *, split: str, max_images: int = 0) -> list[SizeResult]:
  """Metrics per input size on whole images of `split` (see the module docstring).

  `model` is run in inference mode and left in the mode it was in.
  """
  model = models.inference_view(model)
  g = geometry.of(model)
  k = catalog.num_classes(data.name)
  groups: dict[tuple[int, int], Accumulator] = {}
  shapes, counts, examples = {}, collections.Counter(), {}
  for ex in pipeline.eval_examples(data, g, split, max_images or None):
    size = tuple(ex['size'])
    logits = np.asarray(jax.device_get(_forward(model, ex['image'])))[0]
    target = ex['target']
    acc = groups.setdefault(size, Accumulator(data.task, k))
    acc.add(logits, target)
    shapes[size] = tuple(logits.shape)
    counts[size] += 1
    positive = holds_positives(data.task, target)
    if size not in examples or (positive and not examples[size]['positive']):
      examples[size] = {'image': ex['image'][0], 'target': target, 'logits': logits,
                        'positive': positive}
  results = []
  for size in sorted(groups, key=lambda s: (s[0] * s[1], s)):
    acc = groups[size]
    metrics, chance = acc.result()
    results.append(SizeResult(size, shapes[size], counts[size], metrics, chance, examples[size],
                              acc.interval(),
                              acc.counts['positive'] if data.task == 'heatmap' else None,
                              np.stack(acc.per_image)))
  return results


def markdown(results: list[SizeResult], title: str) -> str:
  """The results table: one row per input size, the headline metric's interval, and a note."""
  names = list(results[0].metrics) if results else []
  headline = next((n for n in HEADLINE.values() if n in names), None)
  positives = any(r.positives is not None for r in results)
  lines = [f'| input (H×W) | output | images | {"positive cells | " if positives else ""}'
           f'{" | ".join(names)} | {headline} 95 % CI | chance |',
           '|---|---|---:|' + '---:|' * (len(names) + 2 + positives)]
  for r in results:
    values = ' | '.join(f'{r.metrics[n]:.3f}' for n in names)
    cells = f'{r.positives:,} | ' if positives else ''
    ci = f'{r.interval.low:.3f}–{r.interval.high:.3f}' if r.interval else '-'
    lines.append(f'| {r.size[0]}×{r.size[1]} | {"×".join(map(str, r.output_shape))} | '
                 f'{r.images} | {cells}{values} | {ci} | {r.chance:.3f} |')
  note = (f'{headline} 95 % CI: percentile bootstrap over the images of each size '
          f'({stats.RESAMPLES:,} resamples, `fcn_jax.stats`)' +
          ('; positive cells: target cells > 0.5, which bound how narrow it can be.'
           if positives else '.'))
  return f'## {title}\n\n' + '\n'.join(lines) + '\n\n' + note + '\n'


def plot_examples(results: list[SizeResult], task: str, path: str) -> str:
  """One row per size: input, target, prediction (of the image chosen as the module docstring
  says); written atomically as PNG."""
  fig, axes = figures.subplots(len(results), 3, figsize=(9, 3 * len(results)), squeeze=False)
  for row, r in zip(axes, results):
    image, target, logits = r.example['image'], r.example['target'], r.example['logits']
    row[0].imshow(image[..., 0] if image.shape[-1] == 1 else image,
                  cmap='gray' if image.shape[-1] == 1 else None)
    row[0].set_title(f'input {r.size[0]}×{r.size[1]}', fontsize=9)
    if task == 'heatmap':
      shown_t, shown_p = target[..., 0], 1 / (1 + np.exp(-logits[..., 0]))
      kw = dict(vmin=0, vmax=1, cmap='magma')
    elif task == 'segmentation':
      shown_t = np.where(target == catalog.IGNORE, -1, target)
      shown_p = np.argmax(logits, -1)
      kw = dict(vmin=-1, vmax=max(2, logits.shape[-1] - 1), cmap='tab10', interpolation='nearest')
    else:
      continue
    row[1].imshow(shown_t, **kw)
    row[1].set_title(f'target {shown_t.shape[0]}×{shown_t.shape[1]}', fontsize=9)
    row[2].imshow(shown_p, **kw)
    row[2].set_title('prediction', fontsize=9)
  for ax in axes.ravel():
    ax.axis('off')
  fig.tight_layout()
  return figures.save(fig, path, dpi=80)
