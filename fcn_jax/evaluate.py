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

import numpy as np
from absl import app
from flax import nnx

from fcn_jax import errors
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


def evaluate(model: nnx.Module, data, *, split: str, max_images: int = 0) -> list[SizeResult]:
  """Metrics per input size on whole images of `split` (see the module docstring).

  `model` is run in inference mode and left in the mode it was in.
  """
  from fcn_jax import inference  # pylint: disable=g-import-not-at-top
  model = models.inference_view(model)
  g = geometry.of(model)
  task = tasks.from_config(data)
  k = catalog.num_classes(data)
  groups: dict[tuple[int, int], tasks.Metrics] = {}
  shapes, counts, examples = {}, collections.Counter(), {}
  for ex in pipeline.eval_examples(data, g, split, max_images or None):
    size = tuple(ex['size'])
    logits = inference.predict(model, ex['image'])[0]
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


# --------------------------------------------------------------------------------------------
# Metrics binned by the border map: how much of each output's receptive field lies outside the
# image (`inference.border_map`). The interior bin (0: the field wholly inside) is the net at
# its best; the others are the outputs that see padding, nnU-Net's objection to patch-trained
# nets (MIC-DKFZ/nnUNet #2105) measured on one's own data.

BORDER_BINS = (0.0, 0.25, 0.5, 1.0)


@dataclasses.dataclass
class BorderRow:
  """The metrics of the outputs of one input size whose border fraction lies in one bin."""
  size: tuple[int, int]
  label: str  # the bin: 'interior (0)' or '(lo, hi]'
  outputs: int
  metrics: dict[str, float]
  interval: stats.Interval
  positives: int | None
  headline: str


def border_bins(edges=BORDER_BINS) -> list[tuple[str, float, float]]:
  """`(label, lo, hi)` of the bins: the interior (fraction exactly 0), then `(lo, hi]` for
  consecutive `edges` (which start at 0 and rise to at most 1)."""
  edges = [float(e) for e in edges]
  if len(edges) < 2 or edges[0] != 0 or edges[-1] > 1 or sorted(set(edges)) != edges:
    raise errors.InputError(f'border bins {edges}: give rising fractions from 0 to at most 1, '
                            'e.g. 0,0.25,0.5,1')
  return [('interior (0)', 0.0, 0.0)] + [(f'({lo:g}, {hi:g}]', lo, hi)
                                         for lo, hi in zip(edges, edges[1:])]


def add_by_border(groups: dict, size, logits: np.ndarray, target: np.ndarray,
                  border: np.ndarray, task: tasks.Task, k: int, bins) -> None:
  """Adds one image's outputs to `groups[(size, bin label)]`, split by its border map."""
  for label, lo, hi in bins:
    mask = border == 0 if hi == 0 else (border > lo) & (border <= hi)
    if mask.any():
      groups.setdefault((size, label), task.metrics(k)).add(logits[mask], np.asarray(target)[mask])


def by_border(model: nnx.Module, data, *, split: str, edges=BORDER_BINS,
              max_images: int = 0) -> list[BorderRow]:
  """The task's metrics per input size and per bin of the border map (see `border_bins`),
  on whole images of `split`; intervals over the images, as `evaluate`'s."""
  from fcn_jax import inference  # pylint: disable=g-import-not-at-top
  model = models.inference_view(model)
  g = geometry.of(model)
  task, k, bins = tasks.from_config(data), catalog.num_classes(data), border_bins(edges)
  groups, maps, outputs = {}, {}, collections.Counter()
  for ex in pipeline.eval_examples(data, g, split, max_images or None):
    size = tuple(ex['size'])
    logits = inference.predict(model, ex['image'])[0]
    if size not in maps:
      maps[size] = inference.border_map(model, size)
      if maps[size].shape != logits.shape[:2]:
        raise errors.InputError(f'{g.name} gives {logits.shape[:2]} outputs at {size}, not a '
                                'grid the border map describes (a classifier?)')
    add_by_border(groups, size, logits, ex['target'], maps[size], task, k, bins)
    for label, lo, hi in bins:
      outputs[(size, label)] += int(((maps[size] == 0) if hi == 0 else
                                     (maps[size] > lo) & (maps[size] <= hi)).sum())
  order = {label: i for i, (label, _, _) in enumerate(bins)}
  rows = []
  for size, label in sorted(groups, key=lambda s: (s[0][0] * s[0][1], s[0], order[s[1]])):
    acc = groups[(size, label)]
    rows.append(BorderRow(size, label, outputs[(size, label)], acc.result()[0], acc.interval(),
                          acc.positives, task.headline))
  return rows


def border_markdown(rows: list[BorderRow], title: str) -> str:
  """The binned table: per input size and bin, the outputs and the metrics."""
  names = list(rows[0].metrics) if rows else []
  positives = any(r.positives is not None for r in rows)
  headline = rows[0].headline if rows else ''
  lines = [f'| input (H×W) | border fraction | outputs | {"positive cells | " if positives else ""}'
           f'{" | ".join(names)} | {headline} 95 % CI |',
           '|---|---|---:|' + '---:|' * (len(names) + 1 + positives)]
  for r in rows:
    cells = f'{r.positives:,} | ' if positives else ''
    lines.append(f'| {r.size[0]}×{r.size[1]} | {r.label} | {r.outputs:,} | {cells}' +
                 ' | '.join(f'{r.metrics[n]:.3f}' for n in names) +
                 f' | {r.interval.low:.3f}–{r.interval.high:.3f} |')
  note = ('Border fraction: the share of an output\'s receptive field outside the image '
          '(`fcn_jax.inference.border_map`); "interior (0)" outputs see no padding. Outputs: '
          'per image of that size, summed over the images.')
  return f'## {title}\n\n' + '\n'.join(lines) + '\n\n' + note + '\n'


def main(argv):
  """`python -m fcn_jax.evaluate --workdir=DIR --border_bins=0,0.25,0.5,1`: the trained run's
  metrics per input size and border bin, written to `<workdir>/border_<split>.md`."""
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from fcn_jax import inference  # pylint: disable=g-import-not-at-top
  flag = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    model, config = inference.load_trained(flag.workdir, flag.step)
    split = flag.split or config.data.eval_split
    rows = by_border(model, config.data, split=split, edges=flag.border_bins,
                     max_images=flag.max_images)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  text = border_markdown(rows, f'Metrics by border fraction ({split} split)')
  files.write_text(os.path.join(flag.workdir, f'border_{split}.md'), text)
  print(text)
  return 0


if __name__ == '__main__':
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  absl_flags.DEFINE_string('workdir', None, 'Workdir of a training run.')
  absl_flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  absl_flags.DEFINE_string('split', None, 'Split to evaluate (default: the config\'s eval_split).')
  absl_flags.DEFINE_list('border_bins', [str(e) for e in BORDER_BINS], 'Bin edges of the border '
                         'fraction, from 0 to at most 1.')
  absl_flags.DEFINE_integer('max_images', 0, 'At most this many images (0: all).')
  absl_flags.mark_flags_as_required(['workdir'])
  app.run(main)
