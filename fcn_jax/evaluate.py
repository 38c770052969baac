"""Evaluation at many input sizes: metrics per size, `results.md`, and PNG examples.

Whole images of the evaluation split are run at their native sizes (one XLA
compilation per distinct size) and grouped by size. The task (`fcn_jax.tasks`)
gives the metrics, with the score of a trivial predictor beside them so that
"better than chance" can be read off: F1 of heat-map cells, accuracy, or Long et
al.'s four segmentation metrics.

Beside the headline metric of each size (F1, accuracy, pixel accuracy) is its 95 %
bootstrap interval over that size's images (`fcn_jax.stats.interval`), and for heat
maps the number of positive target cells, which sets how narrow it can be. The
example plotted for a size is its first image whose target holds a positive
(`Task.holds_positives`: heat map, a cell > 0.5; segmentation, a labelled pixel of
a class other than 0); the first image where none does.
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
from fcn_jax import tasks
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
  interval: stats.Interval | None = None  # of the task's headline metric, over images
  positives: int | None = None  # heat maps: positive target cells
  counts: np.ndarray | None = None  # per image: (tp, fp, fn) for heat maps, else (correct, total)
  headline: str | None = None  # the metric `interval` is of


@nnx.jit
def _forward(model, image):
  return model(image)


def evaluate(model: nnx.Module, data, *, split: str, max_images: int = 0) -> list[SizeResult]:
  """Metrics per input size on whole images of `split` (see the module docstring).

  `model` is run in inference mode and left in the mode it was in.
  """
  model = models.inference_view(model)
  g = geometry.of(model)
  task = tasks.from_config(data)
  k = catalog.num_classes(data)
  groups: dict[tuple[int, int], tasks.Metrics] = {}
  shapes, counts, examples = {}, collections.Counter(), {}
  for ex in pipeline.eval_examples(data, g, split, max_images or None):
    size = tuple(ex['size'])
    logits = np.asarray(jax.device_get(_forward(model, ex['image'])))[0]
    target = ex['target']
    groups.setdefault(size, task.metrics(k)).add(logits, target)
    shapes[size] = tuple(logits.shape)
    counts[size] += 1
    positive = task.holds_positives(target)
    if size not in examples or (positive and not examples[size]['positive']):
      examples[size] = {'image': ex['image'][0], 'target': target, 'logits': logits,
                        'positive': positive}
  results = []
  for size in sorted(groups, key=lambda s: (s[0] * s[1], s)):
    metrics, chance = groups[size].result()
    results.append(SizeResult(size, shapes[size], counts[size], metrics, chance, examples[size],
                              groups[size].interval(), groups[size].positives,
                              np.stack(groups[size].per_image), task.headline))
  return results


def markdown(results: list[SizeResult], title: str) -> str:
  """The results table: one row per input size, the headline metric's interval, and a note."""
  names = list(results[0].metrics) if results else []
  headline = results[0].headline if results else None
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


def plot_examples(results: list[SizeResult], task: tasks.Task, path: str) -> str:
  """One row per size: input, target, prediction (of the image chosen as the module docstring
  says, drawn by `task.panels`); written atomically as PNG."""
  fig, axes = figures.subplots(len(results), 3, figsize=(9, 3 * len(results)), squeeze=False)
  for row, r in zip(axes, results):
    image, target, logits = r.example['image'], r.example['target'], r.example['logits']
    row[0].imshow(image[..., 0] if image.shape[-1] == 1 else image,
                  cmap='gray' if image.shape[-1] == 1 else None)
    row[0].set_title(f'input {r.size[0]}×{r.size[1]}', fontsize=9)
    panels = task.panels(target, logits)
    if panels is None:
      continue
    shown_t, shown_p, kw = panels
    row[1].imshow(shown_t, **kw)
    row[1].set_title(f'target {shown_t.shape[0]}×{shown_t.shape[1]}', fontsize=9)
    row[2].imshow(shown_p, **kw)
    row[2].set_title('prediction', fontsize=9)
  for ax in axes.ravel():
    ax.axis('off')
  fig.tight_layout()
  return figures.save(fig, path, dpi=80)
