r"""U-Net with the overlap-tile strategy, with and without the border weight map.

  python -m experiments.unet --workdir=/tmp/exp_unet [--quick]

Claim (Ronneberger et al., 2015): a valid-padding U-Net trained on crops
segments whole images of any size seamlessly when the image is mirrored at its
borders to give the missing context (overlap-tile), and the weight map that
up-weights the narrow background gaps between touching cells teaches it to
separate them. Trains `configs/unet_cells.py` (depth 4, 124x124 crops of
`fcn_cells`) with and without the weight map, then segments new synthetic
images of several sizes: cell IoU, and the accuracy on the separating gaps
(background pixels whose separation weight exceeds `GAP_WEIGHT`), each pooled over
images and seeds with a 95 % bootstrap interval; with vs without the weight map is a
paired difference on the same images and seeds, judged against MARGIN (declared before
the run).
"""

import os

import numpy as np

from configs import unet_cells
from experiments import common
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import stats
from fcn_jax.data import synthetic
from fcn_jax.tasks import segmentation

GAP_WEIGHT = 3.0  # separation term above which a background pixel counts as a gap
MARGIN = 0.02  # IoU and gap accuracy; declared before the run


def _config(weights: bool, quick: bool, seed: int):
  config = unet_cells.get_config('runlocal' if quick else None)
  config.seed = seed
  if not weights:
    config.data.weight_map = None
  if quick:
    config.data.patch_size = 36  # a valid input of the depth-2 quick U-Net
    common.quick_training(config, steps=100, batch_size=4)
  return config


def overlap_tile(model, image: np.ndarray) -> np.ndarray:
  """Logits for every pixel of `image`: mirror the border to give a valid U-Net the context it
  needs (and round up to a valid size), run it, and keep the outputs over the image."""
  g = geometry.of(model)
  pads = []
  for a, n in enumerate(image.shape[:2]):
    # Output 0 is centred on input `offset` (the field's centre, not half the receptive field:
    # after up-sampling the field is not symmetric about the output).
    offset = int(g.field(g.min_input_size)[a].centre)
    size = n + 2 * offset
    while not g.accepts(size, a) or g.output_size((size, size))[a] < n:
      size += 1
    pads.append((offset, size - n - offset))
  padded = np.pad(image, (*pads, (0, 0)), mode='symmetric')
  out = inference.predict(model, padded)
  return out[:image.shape[0], :image.shape[1]]


def measure(model, size, count: int, seed: int = 777) -> dict:
  """Per image: (cell intersection, union) and (gap pixels right, gap pixels), and an example."""
  iou, gap, example = [], [], None
  for i in range(count):
    cells = synthetic.cells_example(np.random.default_rng((seed, *size, i)), *size)
    image = cells['image'].astype(np.float32) / 255.0  # (H, W, 1)
    instances = cells['instances'][..., 0]
    truth = instances > 0
    logits = overlap_tile(model, image)
    pred = logits.argmax(-1) == 1
    iou.append([int((pred & truth).sum()), int((pred | truth).sum())])
    separation = segmentation.unet_weight_map(instances, class_weights=(0.0, 0.0))
    gaps = ~truth & (separation > GAP_WEIGHT)
    gap.append([int((~pred & gaps).sum()), int(gaps.sum())])
    if example is None:
      example = {'image': image, 'logits': logits, 'truth': truth}
  return {'iou': np.array(iou), 'gap': np.array(gap), 'example': example}


def _ratio(sums: np.ndarray) -> np.ndarray:
  return sums[..., 0] / np.maximum(sums[..., 1], 1)


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else (0, 1)
  sizes = ((64, 64), (100, 80)) if quick else ((128, 128), (256, 256), (300, 500), (512, 512))
  record = common.Record(workdir, quick)
  measured, examples = {}, {}
  for seed in seeds:
    for weights in (True, False):
      config = _config(weights, quick, seed)
      model = record.train(config, f'{"weights" if weights else "no_weights"}_seed{seed}')
      for size in sizes:
        count = 2 if quick else max(2, 16 * 128 ** 2 // (size[0] * size[1]))
        m = measure(model, size, count)
        measured.setdefault((weights, size), []).append(m)
        examples.setdefault((weights, size), m['example'])

  rows = []
  for size in sizes:
    row = {'size': size, 'images': len(measured[True, size][0]['iou'])}
    for key in ('iou', 'gap'):
      stacked = {w: np.stack([m[key] for m in measured[w, size]]) for w in (True, False)}
      for w in (True, False):
        row[f'{key}_{"weights" if w else "no_weights"}'] = common.interval_dict(
            stats.interval(stacked[w], _ratio))
      diff = stats.difference(stacked[True], stacked[False], _ratio)
      row[f'{key}_delta'] = common.interval_dict(diff)
      row[f'{key}_verdict'] = stats.compare(diff, MARGIN)
    rows.append(row)

  fig, axes = common.figure(2, len(sizes), figsize=(3.2 * len(sizes), 6.6), squeeze=False)
  for ax_row, weights in zip(axes, (True, False)):
    for ax, size in zip(ax_row, sizes):
      ex = examples[weights, size]
      ax.imshow(segmentation.Segmentation().overlay(ex['image'], ex['logits']))
      ax.contour(ex['truth'], levels=[0.5], colors='w', linewidths=0.4)
      ax.set_title(f'{"with" if weights else "without"} weights, {size[0]}×{size[1]}',
                   fontsize=8)
      ax.axis('off')
  common.save_figure(fig, os.path.join(workdir, 'overlays.png'))
  config = _config(True, quick, 0)
  numbers = {'rows': rows, 'seeds': list(seeds), 'margin': MARGIN, 'gap_weight': GAP_WEIGHT,
             'setup': {'depth': config.model.depth, 'width': config.model.width,
                       'steps': config.num_train_steps, 'batch_size': config.batch_size,
                       'patch_size': config.data.patch_size, 'data': config.data.name}}
  record.write(numbers, render)
  return numbers


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  rows, setup, margin = numbers['rows'], numbers['setup'], numbers['margin']
  table_rows = [[f'{r["size"][0]}×{r["size"][1]}', r['images'],
                 common.ci(r['iou_weights']), common.ci(r['iou_no_weights']),
                 f'{common.ci(r["iou_delta"], True)} {r["iou_verdict"]}',
                 common.ci(r['gap_weights']), common.ci(r['gap_no_weights']),
                 f'{common.ci(r["gap_delta"], True)} {r["gap_verdict"]}'] for r in rows]
  ious = [r['iou_weights']['estimate'] for r in rows]

  def summary(key, what):
    words = {r[f'{key}_verdict'] for r in rows}
    if len(words) == 1:
      return f'{what}: {words.pop()} at every size'
    return f'{what}: ' + ', '.join(f'{r[f"{key}_verdict"]} at {r["size"][0]}×{r["size"][1]}'
                                    for r in rows)
  return 'U-Net: overlap-tile and the border weight map', [
      '**Claim.** A valid U-Net trained on crops segments whole images of any size with the '
      'overlap-tile strategy (mirrored borders), and the border weight map helps it separate '
      'touching cells.', '',
      f'**Setup.** `configs/unet_cells.py`: U-Net depth {setup["depth"]}, width '
      f'{setup["width"]}, valid convs, {setup["steps"]} steps of batch {setup["batch_size"]} on '
      f'{setup["patch_size"]}×{setup["patch_size"]} crops of `{setup["data"]}`; weight map '
      f'w0 = 10, σ = 5 (or none); seeds {", ".join(map(str, numbers["seeds"]))}. Test: new '
      'synthetic cell images; each is mirrored at its borders by the U-Net\'s margin (and up '
      'to a valid size), run whole, and the outputs over the image kept. Gap accuracy: share of '
      f'the background pixels between touching cells (separation weight > '
      f'{numbers["gap_weight"]}) that are predicted background. Pooled over images and seeds '
      '[95 % bootstrap interval]; Δ = with − without weights, paired, against a margin of '
      f'±{margin:g} declared before the run.', '',
      common.table(['image', 'images', 'cell IoU, weights', 'cell IoU, no weights', 'Δ IoU',
                    'gap acc., weights', 'gap acc., no weights', 'Δ gap acc.'], table_rows),
      '![overlays](overlays.png)', '',
      '## Verdict', '',
      f'Overlap-tile gives a full-size segmentation at every size, with cell IoU '
      f'{min(ious):.3f}–{max(ious):.3f} (with weights). With vs without the weight map — '
      + summary('gap', 'gap accuracy') + '; ' + summary('iou', 'cell IoU') +
      ' ("higher" / "lower": the interval of the paired difference excludes 0; "equivalent": '
      'it lies inside the margin; else "inconclusive").']


if __name__ == '__main__':
  common.main(run)
