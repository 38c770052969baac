r"""U-Net: overlap-tile, the border weight map, and cells as instances.

  python -m experiments.unet --workdir=/tmp/exp_unet [--quick]

Claims (Ronneberger et al., 2015): a valid-padding U-Net trained on crops segments whole
images of any size when each image is mirrored at its borders to give the missing context
(overlap-tile), and such a run can be tiled without changing an output; the weight map that
up-weights the narrow background gaps between touching cells teaches the net to separate
them, that is, to give each cell as an object of its own.

Trains `configs/unet_cells.py` with and without the weight map (SEEDS), and segments new
synthetic images of `fcn_cells`' generator (other random seeds than the dataset's) at several
sizes. On each image:

* pixels: cell IoU, and the accuracy on the separating gaps (background pixels whose
  separation weight exceeds GAP_WEIGHT);
* instances: a net's cells are the 4-connected components of its foreground
  (`fcn_jax.instances.label`, what `predict --instances=components` writes), matched one to
  one to the true cells at IoU >= 0.5: F1 (precision, recall), merges and splits per 100
  true cells, adapted Rand error (`fcn_jax.instances.match`);
* the baseline that learns nothing: Otsu's threshold and a distance-transform watershed
  (`fcn_jax.instances.otsu_watershed`), scored the same way;
* overlap-tile's padding: the image mirrored (the paper's choice) or padded with zeros, with
  the weight-map nets, scored on the border band: the pixels less than the net's margin (the
  padding overlap-tile adds) from an edge of the image, the only ones the two can differ on;
* tiling: the mirrored image through `predict_tiled` (tiles of about TILE px) against the
  whole-image run, the largest |difference| over every seed and size (must be <= 1e-4).

Every measure is pooled over images and seeds with a 95 % bootstrap interval
(`fcn_jax.stats`); differences are paired (same images, same seeds; the baseline is the same
for every seed) and judged against margins declared before the run: MARGIN for the pixel
measures and merges per cell, F1_MARGIN for instance F1.
"""

import os

import numpy as np
from skimage import segmentation as skimage_segmentation

from configs import unet_cells
from experiments import common
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import instances
from fcn_jax import stats
from fcn_jax.data import synthetic
from fcn_jax.tasks import segmentation

SEEDS = (0, 1, 2, 3, 4)
SIZES = ((128, 128), (256, 256), (300, 500), (512, 512))
PIXELS_PER_SIZE = 32 * 128 ** 2  # test pixels at each size (at least 2 images)
GAP_WEIGHT = 3.0  # separation term above which a background pixel counts as a gap
TILE = 96  # predict_tiled's tile in the tiling check
TILED_TOLERANCE = 1e-4  # largest |tiled - whole| accepted
# Declared before the run.
MARGIN = 0.02  # cell IoU, gap accuracy, border-band accuracy, merges per true cell
F1_MARGIN = 0.03  # instance F1

METHODS = ('weights', 'no_weights', 'otsu_watershed')
NAMES = {'weights': 'U-Net, weight map', 'no_weights': 'U-Net, no weight map',
         'otsu_watershed': 'Otsu + watershed'}
# (a, b, measure, margin): the paired differences a - b the verdict reads.
COMPARISONS = (('weights', 'no_weights', 'gap', MARGIN),
               ('weights', 'no_weights', 'iou', MARGIN),
               ('weights', 'no_weights', 'f1', F1_MARGIN),
               ('weights', 'no_weights', 'merges', MARGIN),
               ('weights', 'otsu_watershed', 'f1', F1_MARGIN),
               ('no_weights', 'otsu_watershed', 'f1', F1_MARGIN),
               ('weights', 'otsu_watershed', 'iou', MARGIN))


def _config(weights: bool, quick: bool, seed: int):
  config = unet_cells.get_config('runlocal' if quick else None)
  config.seed = seed
  if not weights:
    config.data.weight_map = None
  if quick:
    config.data.patch_size = 36  # a valid input of the depth-2 quick U-Net
    common.quick_training(config, steps=100, batch_size=4)
  return config


def padding(model, shape) -> list[tuple[int, int]]:
  """Overlap-tile's padding `(before, after)` of each image axis: the offset of output 0's
  field centre on each side (the net's margin), then up to a size the net accepts whose output
  covers the image."""
  g = geometry.of(model)
  pads = []
  for a, n in enumerate(shape[:2]):
    # Output 0 is centred on input `offset` (the field's centre, not half the receptive field:
    # after up-sampling the field is not symmetric about the output).
    offset = int(g.field(g.min_input_size)[a].centre)
    size = n + 2 * offset
    while not g.accepts(size, a) or g.output_size((size, size))[a] < n:
      size += 1
    pads.append((offset, size - n - offset))
  return pads


def overlap_tile(model, image: np.ndarray, mode: str = 'symmetric',
                 tile: int | None = None) -> np.ndarray:
  """Logits for every pixel of `image`: pad it (`mode`: 'symmetric' mirrors, 'constant' adds
  zeros) by `padding`, run the net whole (or tiled, `tile`), keep the outputs over the image."""
  padded = np.pad(image, (*padding(model, image.shape), (0, 0)), mode=mode)
  out = (inference.predict_tiled(model, padded, tile) if tile else
         inference.predict(model, padded))
  return out[:image.shape[0], :image.shape[1]]


def test_images(size, count: int, seed: int = 777):
  """`count` new cell images of `size`: (image (H, W, 1) in [0, 1], instance ids (H, W), gap
  pixels (H, W): background whose separation weight exceeds GAP_WEIGHT), each computed once."""
  for i in range(count):
    cells = synthetic.cells_example(np.random.default_rng((seed, *size, i)), *size)
    ids = cells['instances'][..., 0].astype(np.int32)
    gaps = (ids == 0) & (segmentation.unet_weight_map(ids, class_weights=(0.0, 0.0)) >
                         GAP_WEIGHT)
    yield cells['image'].astype(np.float32) / 255.0, ids, gaps


def counts(pred_ids: np.ndarray, ids: np.ndarray, gaps: np.ndarray) -> dict[str, list]:
  """One image's additive counts for `fcn_jax.stats`, from predicted and true instance ids."""
  pred, truth = pred_ids > 0, ids > 0
  m = instances.match(ids, pred_ids)
  return {'iou': [int((pred & truth).sum()), int((pred | truth).sum())],
          'gap': [int((~pred & gaps).sum()), int(gaps.sum())],
          'f1': [m.tp, m.fp, m.fn],
          'merges': [m.merges, m.true_objects], 'splits': [m.splits, m.true_objects],
          'rand': [m.rand_error, 1.0]}


def _ratio(sums: np.ndarray) -> np.ndarray:
  sums = np.asarray(sums, np.float64)
  return sums[..., 0] / np.maximum(sums[..., 1], 1)


METRICS = {'iou': _ratio, 'gap': _ratio, 'f1': stats.f1, 'merges': _ratio, 'splits': _ratio,
           'rand': _ratio, 'band': _ratio}


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else SEEDS
  sizes = ((64, 64), (100, 80)) if quick else SIZES
  tile = 40 if quick else TILE
  record = common.Record(workdir, quick)

  def count_of(size):
    return 2 if quick else max(2, PIXELS_PER_SIZE // (size[0] * size[1]))

  images = {size: list(test_images(size, count_of(size))) for size in sizes}
  # measured[method, size, key]: per seed, [images, k] counts.
  measured = {}
  examples = {}
  failed = {}
  tiled_error = 0.0
  for size in sizes:  # the baseline learns nothing: the same counts for every seed
    labelled = [instances.otsu_watershed(image) for image, _, _ in images[size]]
    per_image = [counts(pred_ids, ids, gaps)
                 for pred_ids, (_, ids, gaps) in zip(labelled, images[size])]
    for key in per_image[0]:
      measured['otsu_watershed', size, key] = [np.array([c[key] for c in per_image])] * len(seeds)
    examples['otsu_watershed', size] = labelled[0]
  for seed in seeds:
    for method in ('weights', 'no_weights'):
      model = record.train(_config(method == 'weights', quick, seed), f'{method}_seed{seed}')
      predicted_classes = set()
      for size in sizes:
        per_image, band = [], []
        for i, (image, ids, gaps) in enumerate(images[size]):
          logits = overlap_tile(model, image)
          pred = logits.argmax(-1) == 1
          predicted_classes.update(np.unique(pred).tolist())
          pred_ids = instances.label(pred)
          per_image.append(counts(pred_ids, ids, gaps))
          if seed == seeds[0] and i == 0:
            examples[method, size] = pred_ids
          if method == 'weights':
            zero = overlap_tile(model, image, mode='constant').argmax(-1) == 1
            (top, _), (left, _) = padding(model, image.shape)
            border = np.ones(pred.shape, bool)
            border[top:-top or None, left:-left or None] = False
            truth = ids > 0
            band.append([[int((pred == truth)[border].sum()), int(border.sum())],
                         [int((zero == truth)[border].sum()), int(border.sum())]])
            if i == 0:
              tiled = overlap_tile(model, image, tile=tile)
              tiled_error = max(tiled_error, float(np.abs(tiled - logits).max()))
        for key in per_image[0]:
          measured.setdefault((method, size, key), []).append(
              np.array([c[key] for c in per_image]))
        if band:
          band = np.array(band)  # [images, padding, 2]
          measured.setdefault(('mirror', size, 'band'), []).append(band[:, 0])
          measured.setdefault(('zero', size, 'band'), []).append(band[:, 1])
      failed[method, seed] = len(predicted_classes) <= 1  # one class everywhere: collapsed

  def stacked(method, size, key):
    return np.stack(measured[method, size, key])  # [seeds, images, k]

  def method_failed(method):
    return any(failed.get((method, s), False) for s in seeds)

  rows = []
  for size in sizes:
    row = {'size': list(size), 'images': len(images[size]),
           'cells': int(sum(ids.max() for _, ids, _ in images[size]))}
    for method in METHODS:
      for key in ('iou', 'gap', 'f1', 'merges', 'splits', 'rand'):
        row[f'{key}_{method}'] = common.interval_dict(
            stats.interval(stacked(method, size, key), METRICS[key]))
      sums = stacked(method, size, 'f1').sum((0, 1)).astype(float)
      row[f'precision_{method}'] = sums[0] / max(sums[0] + sums[1], 1)
      row[f'recall_{method}'] = sums[0] / max(sums[0] + sums[2], 1)
    for a, b, key, margin in COMPARISONS:
      diff = stats.difference(stacked(a, size, key), stacked(b, size, key), METRICS[key])
      row[f'{key}_{a}_vs_{b}'] = {
          **common.interval_dict(diff),
          'verdict': stats.compare(diff, margin, method_failed(a) or method_failed(b))}
    mirror, zero = stacked('mirror', size, 'band'), stacked('zero', size, 'band')
    row['band_pixels'] = int(mirror[0, :, 1].sum())
    row['band_mirror'] = common.interval_dict(stats.interval(mirror, _ratio))
    row['band_zero'] = common.interval_dict(stats.interval(zero, _ratio))
    diff = stats.difference(mirror, zero, _ratio)
    row['band_mirror_vs_zero'] = {**common.interval_dict(diff),
                                  'verdict': stats.compare(diff, MARGIN,
                                                           method_failed('weights'))}
    rows.append(row)

  fig, axes = common.figure(len(METHODS), len(sizes), figsize=(3.2 * len(sizes), 9.6),
                            squeeze=False)
  for ax_row, method in zip(axes, METHODS):
    for ax, size in zip(ax_row, sizes):
      image, ids, _ = images[size][0]
      grey = np.repeat(image, 3, axis=-1)
      ax.imshow(skimage_segmentation.mark_boundaries(grey, examples[method, size],
                                                     color=(1, 0.8, 0)))
      ax.contour(ids > 0, levels=[0.5], colors='c', linewidths=0.3)
      ax.set_title(f'{NAMES[method]}, {size[0]}×{size[1]}', fontsize=8)
      ax.axis('off')
  common.save_figure(fig, os.path.join(workdir, 'instances.png'))

  config = _config(True, quick, seeds[0])
  numbers = {'rows': rows, 'seeds': list(seeds), 'margin': MARGIN, 'f1_margin': F1_MARGIN,
             'gap_weight': GAP_WEIGHT, 'tile': tile, 'tiled_max_abs_diff': tiled_error,
             'tiled_tolerance': TILED_TOLERANCE,
             'failed': sorted(f'{m}_seed{s}' for (m, s), f in failed.items() if f),
             'setup': {'depth': config.model.depth, 'width': config.model.width,
                       'steps': config.num_train_steps, 'batch_size': config.batch_size,
                       'patch_size': config.data.patch_size, 'data': config.data.name}}
  record.write(numbers, render)
  if tiled_error > TILED_TOLERANCE:
    raise AssertionError(f'predict_tiled differs from the whole-image run by {tiled_error:.2e} '
                         f'(> {TILED_TOLERANCE:g}); results written to {workdir}')
  return numbers


def _size(row) -> str:
  return f'{row["size"][0]}×{row["size"][1]}'


def _per_100(v: dict) -> str:
  return f'{100 * v["estimate"]:.1f} [{100 * v["low"]:.1f}, {100 * v["high"]:.1f}]'


def _delta(v: dict, scale: float = 1.0) -> str:
  digits = 1 if scale == 100 else 3
  return (f'{scale * v["estimate"]:+.{digits}f} [{scale * v["low"]:+.{digits}f}, '
          f'{scale * v["high"]:+.{digits}f}] {v["verdict"]}')


def _summary(rows, key: str) -> str:
  """'higher at every size' or the verdict at each size."""
  words = [r[key]['verdict'] for r in rows]
  if len(set(words)) == 1:
    return f'{words[0]} at every size'
  return ', '.join(f'{w} at {_size(r)}' for w, r in zip(words, rows))


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  rows, setup = numbers['rows'], numbers['setup']
  margin, f1_margin = numbers['margin'], numbers['f1_margin']
  pixels = common.table(
      ['image', 'images', 'true cells', *[f'cell IoU, {NAMES[m]}' for m in METHODS],
       'gap acc., weight map', 'gap acc., no weight map', 'Δ gap acc. (weight map − none)',
       'Δ cell IoU (weight map − none)'],
      [[_size(r), r['images'], r['cells'], *[common.ci(r[f'iou_{m}']) for m in METHODS],
        common.ci(r['gap_weights']), common.ci(r['gap_no_weights']),
        _delta(r['gap_weights_vs_no_weights']), _delta(r['iou_weights_vs_no_weights'])]
       for r in rows])
  objects = common.table(
      ['image', 'method', 'instance F1', 'precision', 'recall', 'merges per 100 cells',
       'splits per 100 cells', 'adapted Rand error'],
      [[_size(r), NAMES[m], common.ci(r[f'f1_{m}']), f'{r[f"precision_{m}"]:.3f}',
        f'{r[f"recall_{m}"]:.3f}', _per_100(r[f'merges_{m}']), _per_100(r[f'splits_{m}']),
        common.ci(r[f'rand_{m}'])] for r in rows for m in METHODS])
  deltas = common.table(
      ['image', 'ΔF1 weight map − none', 'ΔF1 weight map − Otsu', 'ΔF1 no weight map − Otsu',
       'Δ merges per 100 cells, weight map − none'],
      [[_size(r), _delta(r['f1_weights_vs_no_weights']),
        _delta(r['f1_weights_vs_otsu_watershed']), _delta(r['f1_no_weights_vs_otsu_watershed']),
        _delta(r['merges_weights_vs_no_weights'], 100)] for r in rows])
  band = common.table(
      ['image', 'border-band pixels', 'accuracy, mirrored', 'accuracy, zero-padded',
       'Δ mirrored − zeros'],
      [[_size(r), f'{r["band_pixels"]:,}', common.ci(r['band_mirror']),
        common.ci(r['band_zero']), _delta(r['band_mirror_vs_zero'])] for r in rows])
  tiled_ok = numbers['tiled_max_abs_diff'] <= numbers['tiled_tolerance']
  failed = numbers['failed']
  verdict = [
      f'- **The weight map** (with − without, paired, 5 seeds): gap accuracy '
      f'{_summary(rows, "gap_weights_vs_no_weights")}; instance F1 '
      f'{_summary(rows, "f1_weights_vs_no_weights")} (margin ±{f1_margin:g}); merges per cell '
      f'{_summary(rows, "merges_weights_vs_no_weights")}; cell IoU '
      f'{_summary(rows, "iou_weights_vs_no_weights")} (margin ±{margin:g}).'.replace(
          '5 seeds', f'{len(numbers["seeds"])} seed(s)'),
      f'- **Against Otsu + watershed**: instance F1 of the weight-map net '
      f'{_summary(rows, "f1_weights_vs_otsu_watershed")}, of the net without it '
      f'{_summary(rows, "f1_no_weights_vs_otsu_watershed")}; cell IoU of the weight-map net '
      f'{_summary(rows, "iou_weights_vs_otsu_watershed")}.',
      f'- **Overlap-tile\'s mirror** against zero padding, on the border band: '
      f'{_summary(rows, "band_mirror_vs_zero")} (margin ±{margin:g}).',
      f'- **Tiling**: the mirrored images through `predict_tiled` (tiles of about '
      f'{numbers["tile"]} px) differ from the whole-image runs by at most '
      f'{numbers["tiled_max_abs_diff"]:.1e} '
      + ('(within the 1e-4 tolerance: the same outputs).' if tiled_ok else
         f'(**over the {numbers["tiled_tolerance"]:g} tolerance**).'),
      ('- **Failed to train** (one class everywhere, not ranked): ' + ', '.join(failed) + '.'
       if failed else '- Every run trained (each predicts both classes).'),
      '', '"higher" / "lower": the interval of the paired difference excludes 0; '
      '"equivalent": it lies inside the declared margin; otherwise "inconclusive".']
  return 'U-Net: overlap-tile, the border weight map, and cells as instances', [
      '**Claims.** A valid U-Net trained on crops segments whole images of any size with the '
      'overlap-tile strategy (mirrored borders), tiled or not; the border weight map teaches it '
      'to separate touching cells (Ronneberger et al., 2015).', '',
      f'**Setup.** `configs/unet_cells.py`: U-Net depth {setup["depth"]}, width '
      f'{setup["width"]}, valid convs, {setup["steps"]} steps of batch {setup["batch_size"]} '
      f'on {setup["patch_size"]}×{setup["patch_size"]} crops of `{setup["data"]}`, with the '
      f'weight map (w0 = 10, σ = 5) or without; seeds '
      f'{", ".join(map(str, numbers["seeds"]))}. Test: new synthetic cell images (the same for '
      'every net), each mirrored at its borders by the net\'s margin, run whole, the outputs '
      'over the image kept. A net\'s cells: the 4-connected components of its foreground '
      '(`predict --instances=components`); the baseline: Otsu\'s threshold then a '
      'distance-transform watershed, no learning. Cells are matched one to one at IoU ≥ 0.5. '
      f'Gap accuracy: share of the background pixels between touching cells (separation weight '
      f'> {numbers["gap_weight"]:g}) predicted background. Border band: pixels nearer an edge '
      'than the net\'s margin. Pooled over images and seeds [95 % bootstrap interval]; '
      f'differences paired, against margins declared before the run: ±{margin:g} (pixel '
      f'measures, merges per cell), ±{f1_margin:g} (instance F1).', '',
      '## Pixels', '', pixels, '## Cells as objects', '', objects, deltas,
      '![instances](instances.png)', '',
      'Yellow: the predicted cells\' outlines (first test image of each size, seed '
      f'{numbers["seeds"][0]}); cyan: the true cells\'.', '',
      '## Overlap-tile: mirrored or zero-padded borders (weight-map nets)', '', band,
      '## Verdict', '', *verdict]


if __name__ == '__main__':
  common.main(run)
