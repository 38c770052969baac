r"""Padding: does a net trained on patches get used to the zeros at their borders?

  python -m experiments.padding --workdir=/tmp/exp_padding [--quick]

A net trained on 64x64 patches with 'same' padding sees padding at every patch
border during training; on a whole image the same positions see real
neighbours. Trains `configs/default.py` (patch_net, shapes heat map) four
times — zero, reflect and replicate padding, and 'valid' (no padding) — and
on new synthetic images measures

* how far whole-image outputs deviate from per-patch outputs (the image cut
  into the 64x64 patches of training, each run alone), by the cell's distance
  to the nearest patch edge: where whole-image inference changes the answer;
* the error against the target by the cell's distance to the image border:
  whether outputs near the border, computed from padding, are worse;
* cell F1 per image size.
"""

import os

import numpy as np

from configs import default
from experiments import common
from fcn_jax import geometry
from fcn_jax import stats
from fcn_jax import inference
from fcn_jax.data import synthetic
from fcn_jax.tasks import heatmap

MODES = ('zeros', 'reflect', 'replicate', 'valid')
MARGIN = 64  # real context around each crop (a multiple of the nets' stride)
DISTANCES = 4  # distance bins 0, 1, 2, >=3 (in cells)


def _config(mode: str, quick: bool):
  config = default.get_config()
  if mode == 'valid':
    config.model.padding = 'valid'
  else:
    config.model.padding_mode = mode
  config.num_train_steps = 1000
  if quick:
    config.data.name = 'fcn_shapes/tiny'
    common.quick_training(config, steps=300)
  return config


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _cell_centres(g, size, a):
  field = g.field(size)[a]
  return np.asarray([float(field.centre + i * field.jump) for i in range(g.output_size(size)[a])])


def measure(model, size, count: int, seed: int = 4321) -> dict:
  """Padding vs real context for `count` crops of `size` cut from larger scenes.

  Each scene is the crop plus a `MARGIN` of real image on every side. The crop
  run alone pads at its border; the same cells of the whole scene see real
  neighbours there. Compared cell by cell, by distance to the crop's border.
  """
  g = geometry.of(model)
  jump = int(g.stride[0])
  shift = MARGIN // jump  # crop cell p is scene cell p + shift (MARGIN is a multiple of jump)
  cy, cx = _cell_centres(g, size, 0), _cell_centres(g, size, 1)
  border = np.minimum.outer(np.minimum(cy, size[0] - 1 - cy), np.minimum(cx, size[1] - 1 - cx))
  border = np.minimum(np.maximum(border, 0) // jump, DISTANCES - 1).astype(int)
  dev, err_pad, err_ctx, dist, counts, border_gap = [], [], [], [], [], []
  for i in range(count):
    scene_size = (size[0] + 2 * MARGIN, size[1] + 2 * MARGIN)
    example = synthetic.shapes_example(np.random.default_rng((seed, *size, i)), *scene_size)
    scene = example['image'].astype(np.float32) / 255.0
    crop = scene[MARGIN:MARGIN + size[0], MARGIN:MARGIN + size[1]]
    target = heatmap.fraction(
        example['mask'][MARGIN:MARGIN + size[0], MARGIN:MARGIN + size[1], 0], 1, g)
    alone = inference.predict(model, crop)[..., 0]
    h, w = alone.shape
    context = inference.predict(model, scene)[shift:shift + h, shift:shift + w, 0]
    p_alone, p_context = _sigmoid(alone), _sigmoid(context)
    dev.append(np.abs(p_alone - p_context).ravel())
    err_pad.append(np.abs(p_alone - target).ravel())
    err_ctx.append(np.abs(p_context - target).ravel())
    dist.append(border.ravel())
    counts.append(stats.binary_counts((alone > 0)[None], (target > 0.5)[None])[0])
    at_border = border == 0
    border_gap.append([float((np.abs(p_alone - target) - np.abs(p_context - target))[
        at_border].sum()), int(at_border.sum())])
  dev, err_pad, err_ctx, dist = map(np.concatenate, (dev, err_pad, err_ctx, dist))

  def by_distance(values):
    return [float(values[dist == d].mean()) if (dist == d).any() else float('nan')
            for d in range(DISTANCES)]

  return {'size': size, 'images': count, 'deviation': by_distance(dev),
          'error_padded': by_distance(err_pad), 'error_context': by_distance(err_ctx),
          'f1': common.interval_dict(stats.interval(np.stack(counts))),
          # per image: sum over border cells of |padded - target| - |context - target|, cells
          'border_gap_sums': border_gap}


def _mean_ratio(sums: np.ndarray) -> np.ndarray:
  return sums[..., 0] / np.maximum(sums[..., 1], 1)


def run(workdir: str, quick: bool) -> dict:
  sizes = ((64, 64), (128, 128)) if quick else ((64, 64), (128, 128), (256, 256), (512, 512))
  record = common.Record(workdir, quick)
  results, gaps = {}, {}
  for mode in MODES:
    config = _config(mode, quick)
    model = record.train(config, mode)
    rf = int(geometry.of(model).receptive_field[0])
    results[mode] = [measure(model, size, 2 if quick else max(4, 48 * 64 ** 2 // (
        size[0] * size[1]) * 4 // 4)) for size in sizes]
    # Border error with padding minus with real context, per border cell, all sizes pooled
    # (images resampled): below 0 = the net is better with its padding than with real context.
    if mode != 'valid':
      gaps[mode] = common.interval_dict(stats.interval(
          np.concatenate([r.pop('border_gap_sums') for r in results[mode]]), _mean_ratio))
    else:
      for r in results[mode]:
        r.pop('border_gap_sums')

  def mean(mode, key, d):
    return float(np.nanmean([r[key][d] for r in results[mode]]))

  fig, axes = common.figure(1, 2, figsize=(10, 3.4))
  for mode in MODES:
    axes[0].plot(range(DISTANCES), [mean(mode, 'deviation', d) for d in range(DISTANCES)], 'o-',
                 label=mode)
    axes[1].plot([r['size'][0] for r in results[mode]], [r['deviation'][0] for r in results[mode]],
                 'o-', label=mode)
  axes[0].set_title('|padded − real context| probability (mean over sizes)', fontsize=10)
  axes[0].set_xlabel('cell distance to the image border (cells)')
  axes[0].set_xticks(range(DISTANCES), LABELS)
  axes[1].set_title('the same at the border cells, by image size', fontsize=10)
  axes[1].set_xlabel('image side (px)')
  axes[1].set_xscale('log', base=2)
  for ax in axes:
    ax.legend(fontsize=8)
  common.save_figure(fig, os.path.join(workdir, 'padding.png'))
  config = record.configs['zeros']
  numbers = {'results': results, 'border_gap': gaps, 'receptive_field': rf,
             'setup': {'steps': config.num_train_steps, 'seed': config.seed,
                       'data': config.data.name, 'margin_px': MARGIN}}
  record.write(numbers, render)
  return numbers


LABELS = ['0 (border)', '1', '2', '≥3']


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  results, gaps, rf, setup = (numbers['results'], numbers['border_gap'],
                              numbers['receptive_field'], numbers['setup'])
  sizes = [tuple(r['size']) for r in results['zeros']]

  def mean(mode, key, d):
    return float(np.nanmean([r[key][d] for r in results[mode]]))

  dev_rows = [[m, f'{r["size"][0]}×{r["size"][1]}', *r['deviation']]
              for m in MODES for r in results[m]]
  err_rows = [[m, mean(m, 'error_padded', 0), mean(m, 'error_context', 0),
               common.ci(gaps[m], signed=True, digits=4) if m in gaps else '—',
               mean(m, 'error_padded', 3), mean(m, 'error_context', 3)] for m in MODES]
  f1_rows = [[m] + [common.ci(r['f1']) for r in results[m]] for m in MODES]
  same = [m for m in MODES if m != 'valid']
  used_to_it = [m for m in same if gaps[m]['high'] < 0]
  hurt_by_it = [m for m in same if gaps[m]['low'] > 0]
  unclear = [m for m in same if m not in used_to_it + hurt_by_it]
  border = []
  if used_to_it:
    border.append(f'{", ".join(used_to_it)}: more accurate at the border with padding than '
                  'with real context (the interval excludes 0): the net got used to its padding')
  if hurt_by_it:
    border.append(f'{", ".join(hurt_by_it)}: more accurate at the border with real context '
                  '(the interval excludes 0): it did not get so used to the padding that real '
                  'neighbours hurt')
  if unclear:
    border.append(f'{", ".join(unclear)}: inconclusive (the interval contains 0)')
  return 'Padding: what a patch-trained net learns at borders', [
      '**Question.** A net trained on 64×64 patches with same padding always saw padding at the '
      'patch border. How far do its outputs computed from padding (an image run alone) deviate '
      'from outputs with real context, by distance to the border and by image size? And did it '
      '"get used to" the zeros — is it *better* at border cells with padding than with the real '
      'neighbours it never saw there?', '',
      f'**Setup.** `configs/default.py` patch_net trained {setup["steps"]} steps per padding '
      f'(seed {setup["seed"]}) on 64×64 patches of `{setup["data"]}`. Test: new synthetic '
      f'scenes; each image of size S (S = {", ".join(str(h) for h, _ in sizes)}; '
      f'{", ".join(str(r["images"]) for r in results["zeros"])} images) is the centre of a scene '
      f'with {setup["margin_px"]} px more real image on every side. "Padded" = the image run '
      'alone; "context" = the same cells of the whole scene. Distances in output cells (8 px) '
      'from the cell centre to the image border; probabilities are sigmoids of the heat map. '
      'Intervals: 95 % bootstrap over images.', '',
      '## Mean |padded − context| probability by distance to the border', '',
      common.table(['padding', 'image', *LABELS], dev_rows),
      '## Error against the target: padded vs real context (mean over sizes)', '',
      common.table(['padding', 'border cells, padded', 'border cells, context',
                    'padded − context, border [95% CI]', 'interior (≥3), padded',
                    'interior (≥3), context'], err_rows),
      '## Cell F1 of the image run alone, per size [95% CI]', '',
      common.table(['padding', *[f'{h}×{w}' for h, w in sizes]], f1_rows),
      '![padding](padding.png)', '',
      '## Verdict', '',
      'Padding changes the outputs at the border and almost nowhere else: mean deviation at the '
      'border cells ' + ', '.join(f'{m} {mean(m, "deviation", 0):.3f}' for m in same) +
      ' vs ' + ', '.join(f'{mean(m, "deviation", 3):.4f}' for m in same) + ' three or more cells '
      f'in (the receptive field is {rf} px: it reaches {(rf - 1) / 2 / 8:.2f} cells either side). '
      'Valid padding never pads: its outputs agree exactly and cover only the '
      f'interior ({results["valid"][0]["deviation"][1]:.1e} deviation). At the border, '
      + '; '.join(border) + '.']


if __name__ == '__main__':
  common.main(run)
