r"""Real handwriting: classifiers trained on 28x28 digits, run densely on canvases of any size.

  python -m experiments.digits_canvas --workdir=/tmp/exp_digits_canvas [--quick]

The project's real-image test of "trained on fixed patches, runs at any size". Three
classifiers are trained on 28x28 real digits (`fcn_digits/single`, scikit-learn's
handwriting) and run on whole canvases of scattered digits (`fcn_digits`' canvas generator:
16-32 px digits on noise, about one per 40x40 px whatever the size) of SIZES:

* `dense`: `configs/dense_to_fcn_digits.py` (VALID conv half + flatten + dense),
  convolutionalized (`fcn_jax.surgery`): one output per 28x28 window at its stride;
* `gap`: `configs/gap_digits.py` run without its global average pooling (its 1x1-conv
  score map, 'same' padding);
* `nin`: `configs/nin_digits.py` likewise (its mlpconv score map).

Each output of a net of stride J owns a cell: the J x J pixels nearest its field's centre.
Per cell:

* detection: a cell's score is the log-odds of its top class, log(p / (1 - p)) of the
  highest softmax probability p, computed from the logits (p itself rounds to 1 in float32
  for a confident net, and ties would leave no threshold to choose). A cell is called a
  digit when its score is at least a threshold and is the largest in its 3x3 neighbourhood
  (local maxima: one call per digit); a true cell holds a digit's centre. The threshold of
  each net is chosen on validation canvases (training digits, other random seeds; all sizes
  together): the score, among those of the validation peaks, that gives the best pooled F1
  (`best_threshold`, exact: no grid whose edge could bind), and the test canvases (test
  digits) are scored once: cell F1 per size;
* digit class: the accuracy of the class of the cell holding each digit's centre.

Only digits and cells whose centre lies at least 14 px inside the canvas count (every net has
outputs there, the VALID one included). Per size, PIXELS of test canvases; pooled over
canvases and SEEDS with 95 % bootstrap intervals; each size against the largest by an
unpaired difference (different canvases), judged against MARGIN (declared before the run).
A net at chance (class accuracy within 0.02 of 0.1) failed to train and is not compared.
"""

import numpy as np
from flax import nnx
from scipy import special

from configs import dense_to_fcn_digits
from configs import gap_digits
from configs import nin_digits
from experiments import common
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import stats
from fcn_jax import surgery
from fcn_jax.data import synthetic

NETS = ('dense', 'gap', 'nin')
NAMES = {'dense': 'dense classifier, convolutionalized', 'gap': 'GAP classifier, score map',
         'nin': 'NiN, score map'}
SIZES = (64, 128, 256, 512)
PIXELS = 2 ** 19  # test (and validation) canvas pixels per size
SEEDS = (0, 1, 2, 3, 4)
INSET = 14  # px: digits and cells nearer the edge are not scored
MARGIN = 0.03  # F1 and class accuracy against the largest size; declared before the run


class ScoreMap(nnx.Module):
  """A GAP classifier's per-position class scores, before its global average pooling."""

  def __init__(self, classifier: nnx.Module, node: geometry.Node):
    self.classifier = classifier
    self.node = node

  @property
  def geometry(self) -> geometry.Node:
    return self.node

  def __call__(self, x):
    return self.classifier.score_map(x)


def _configs(quick: bool, seed: int) -> dict:
  configs = {'dense': dense_to_fcn_digits.get_config(), 'gap': gap_digits.get_config(),
             'nin': nin_digits.get_config()}
  for config in configs.values():
    config.seed = seed
    if quick:
      common.quick_training(config, steps=200, batch_size=32)
      config.max_eval_images = 20
  return configs


def dense_net(name: str, model: nnx.Module) -> nnx.Module:
  """The classifier run densely: `(N, H, W, 1) -> (N, H', W', 10)`, with its geometry."""
  if name == 'dense':
    return surgery.convolutionalize(model)
  node = (model.mlpconv.geometry if name == 'nin' else
          geometry.chain('score_map', model.features.geometry, model.score.geometry))
  return ScoreMap(model, node)


def canvases(split: str, size: int, count: int, seed: int) -> list[dict]:
  """`count` new `size`x`size` canvases of the `split` digits (other seeds than the dataset's)."""
  digits, labels = synthetic.load_digits()
  index = synthetic.digit_split(labels, split)
  return [synthetic.digit_canvas(np.random.default_rng((seed, size, k)), size, size,
                                 digits[index], labels[index]) for k in range(count)]


def local_peaks(score: np.ndarray) -> np.ndarray:
  """Where a 2-D score map is at least each of its 8 neighbours (outside the map counts as
  -inf: a log-odds score can be any real number)."""
  padded = np.pad(score, 1, constant_values=-np.inf)
  neighbours = np.stack([padded[1 + dy:1 + dy + score.shape[0], 1 + dx:1 + dx + score.shape[1]]
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
  return score >= neighbours.max(0)


def cell_scores(net: nnx.Module, canvas: dict) -> dict:
  """One canvas through a net: per scored cell its detection score ('score': the top
  class's log-odds), whether it is a local maximum, whether a digit's centre lies in it, and
  per digit whether its cell's top class is its label."""
  image = canvas['image'].astype(np.float32) / 255.0
  logits = np.asarray(inference.predict(net, image), np.float64)
  top = logits.argmax(-1)
  others = np.where(np.arange(logits.shape[-1]) == top[..., None], -np.inf, logits)
  score = -special.logsumexp(others - logits.max(-1, keepdims=True), axis=-1)  # log-odds
  peak = local_peaks(score)
  fields = geometry.of(net).field(image.shape[:2])
  centres = [float(f.centre) + float(f.jump) * np.arange(n)
             for f, n in zip(fields, score.shape)]
  jump = float(fields[0].jump)
  scored = [(c >= INSET) & (c < n - INSET) for c, n in zip(centres, image.shape[:2])]
  digits = []  # (row, col) of the cell holding each scored digit's centre, and its label
  for (cy, cx), label in zip(canvas['objects']['centre'], canvas['objects']['label']):
    if not (INSET <= cy < image.shape[0] - INSET and INSET <= cx < image.shape[1] - INSET):
      continue
    i = int(np.floor((cy - centres[0][0]) / jump + 0.5))
    j = int(np.floor((cx - centres[1][0]) / jump + 0.5))
    if 0 <= i < score.shape[0] and 0 <= j < score.shape[1]:
      digits.append((i, j, int(label)))
  truth = np.zeros(score.shape, bool)
  for i, j, _ in digits:
    truth[i, j] = True
  mask = scored[0][:, None] & scored[1][None, :]
  return {'score': score[mask], 'peak': peak[mask], 'truth': truth[mask],
          'class_correct': [int(top[i, j] == label) for i, j, label in digits]}


def counts(scored: dict, threshold: float) -> np.ndarray:
  """(tp, fp, fn) of one canvas's cells at `threshold`."""
  called = scored['peak'] & (scored['score'] >= threshold)
  return np.array([(called & scored['truth']).sum(), (called & ~scored['truth']).sum(),
                   (~called & scored['truth']).sum()])


def best_threshold(scored: list[dict]) -> float:
  """The threshold with the best pooled cell F1 over canvases `scored` (`cell_scores`):
  among the scores of their peaks, every distinct value is tried (a threshold between two
  values calls what the lower one calls), and infinity (call nothing) if nothing helps."""
  score = np.concatenate([c['score'][c['peak']] for c in scored])
  true = np.concatenate([c['truth'][c['peak']] for c in scored])
  digits = sum(int(c['truth'].sum()) for c in scored)
  order = np.argsort(-score, kind='stable')
  score, true = score[order], true[order]
  tp, fp = np.cumsum(true), np.cumsum(~true)
  last = np.r_[score[1:] != score[:-1], True]  # calling score[i] calls all its ties
  f1 = np.where(last, 2 * tp / np.maximum(2 * tp + fp + (digits - tp), 1), -1.0)
  if not len(f1) or f1.max() <= 0:
    return float('inf')
  return float(score[int(np.argmax(f1))])


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else SEEDS
  sizes = (64, 128) if quick else SIZES
  pixels = 2 ** 15 if quick else PIXELS
  record = common.Record(workdir, quick)
  count = {s: max(1, pixels // s ** 2) for s in sizes}
  test = {s: canvases('test', s, count[s], seed=31) for s in sizes}
  validation = {s: canvases('train', s, count[s], seed=37) for s in sizes}
  detection, classes, thresholds, failed = {}, {}, {}, {}
  for seed in seeds:
    for name, config in _configs(quick, seed).items():
      net = dense_net(name, record.train(config, f'{name}_seed{seed}'))
      chosen = [[cell_scores(net, c) for c in validation[s]] for s in sizes]
      threshold = best_threshold([c for per_size in chosen for c in per_size])
      thresholds.setdefault(name, []).append(threshold)
      correct_all = []
      for s in sizes:
        scored = [cell_scores(net, c) for c in test[s]]
        detection.setdefault((name, s), []).append(np.stack([counts(c, threshold)
                                                             for c in scored]))
        per_canvas = [[sum(c['class_correct']), len(c['class_correct'])] for c in scored]
        classes.setdefault((name, s), []).append(np.array(per_canvas))
        correct_all += [x for c in scored for x in c['class_correct']]
      failed[name] = failed.get(name, False) or abs(np.mean(correct_all) - 0.1) <= 0.02

  rows = []
  largest = sizes[-1]
  for name in NETS:
    for s in sizes:
      found, labelled = np.stack(detection[name, s]), np.stack(classes[name, s])
      row = {'net': name, 'size': s, 'canvases': count[s],
             'digits': int(labelled[0, :, 1].sum()),
             'f1': common.interval_dict(stats.interval(found, stats.f1)),
             'class_accuracy': common.interval_dict(stats.interval(labelled, stats.accuracy))}
      if s != largest:
        for key, metric, ref in (('f1', stats.f1, detection), ('class_accuracy',
                                                               stats.accuracy, classes)):
          mine = found if key == 'f1' else labelled
          diff = stats.difference(mine, np.stack(ref[name, largest]), metric, paired=False)
          row[f'{key}_vs_largest'] = {**common.interval_dict(diff),
                                      'verdict': stats.compare(diff, MARGIN, failed[name])}
      rows.append(row)

  fig, axes = common.figure(1, 2, figsize=(9, 3.2))
  for ax, key, label in zip(axes, ('f1', 'class_accuracy'),
                            ('cell F1 (detection)', 'class accuracy at the digit\'s cell')):
    for name, marker in zip(NETS, ('o-', 's--', '^-.')):
      mine = [r for r in rows if r['net'] == name]
      ax.errorbar([r['size'] for r in mine], [r[key]['estimate'] for r in mine],
                  yerr=[[r[key]['estimate'] - r[key]['low'] for r in mine],
                        [r[key]['high'] - r[key]['estimate'] for r in mine]],
                  fmt=marker, capsize=3, label=NAMES[name])
    ax.set_xscale('log', base=2)
    ax.set_xlabel('canvas side (px)')
    ax.set_ylabel(label)
    ax.set_ylim(0, 1)
  axes[0].legend(fontsize=7)
  common.save_figure(fig, f'{workdir}/by_size.png')

  numbers = {'rows': rows, 'thresholds': thresholds, 'failed': failed, 'seeds': list(seeds),
             'sizes': list(sizes), 'pixels': pixels, 'margin': MARGIN, 'inset': INSET,
             'steps': {n: c.num_train_steps for n, c in _configs(quick, 0).items()}}
  record.write(numbers, render)
  return numbers


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  rows, largest = numbers['rows'], numbers['sizes'][-1]

  def versus(row, key):
    v = row.get(f'{key}_vs_largest')
    return '—' if v is None else f'{common.ci(v, True)} {v["verdict"]}'
  table = common.table(
      ['net', 'canvas', 'canvases', 'digits', 'cell F1 [95% CI]', f'ΔF1 vs {largest}²',
       'class accuracy [95% CI]', f'Δ class acc. vs {largest}²'],
      [[NAMES[r['net']], f'{r["size"]}²', r['canvases'], r['digits'],
        'failed to train' if numbers['failed'][r['net']] else common.ci(r['f1']),
        versus(r, 'f1'), common.ci(r['class_accuracy']), versus(r, 'class_accuracy')]
       for r in rows])
  verdicts = []
  for name in NETS:
    if numbers['failed'][name]:
      verdicts.append(f'{NAMES[name]}: failed to train (class accuracy at chance).')
      continue
    mine = [r for r in rows if r['net'] == name and r['size'] != largest]
    words = {k: {r[f'{k}_vs_largest']['verdict'] for r in mine} for k in ('f1', 'class_accuracy')}

    def said(k):
      return (f'{words[k].pop()} at every smaller size' if len(words[k]) == 1 else
              ', '.join(f'{r[f"{k}_vs_largest"]["verdict"]} at {r["size"]}²' for r in mine))
    verdicts.append(f'{NAMES[name]}: against {largest}² canvases, cell F1 is {said("f1")}; '
                    f'class accuracy is {said("class_accuracy")}.')
  levels = '; '.join(
      f'{NAMES[r["net"]]}: cell F1 {common.ci(r["f1"])}, class accuracy '
      f'{common.ci(r["class_accuracy"])}' for r in rows if r['size'] == largest)
  verdicts.append(f'Levels on the {largest}² canvases: {levels}.')
  thresholds = '; '.join(f'{NAMES[n]} {", ".join(f"{t:.1f}" for t in ts)}'
                         for n, ts in numbers['thresholds'].items())
  return 'Real handwriting: digit classifiers run densely on canvases of any size', [
      '**Claim.** A classifier trained on 28×28 digits, run as a fully convolutional net, finds '
      'and reads digits on canvases of any size, as well on a large canvas as on a small one.',
      '',
      '**Setup.** Three classifiers trained on 28×28 real digits (`fcn_digits/single`; steps '
      + ', '.join(f'{n} {s}' for n, s in numbers['steps'].items()) + f'; seeds '
      f'{", ".join(map(str, numbers["seeds"]))}): the dense classifier convolutionalized, the '
      'GAP classifier\'s and NiN\'s score maps before global pooling. New canvases of scikit-'
      'learn\'s handwriting (16–32 px digits on noise, one per ~40×40 px at every size; test '
      f'digits for test canvases, training digits for validation), {numbers["pixels"]:,} '
      'pixels per size. Each output owns the cell of pixels nearest its field\'s centre; a cell '
      'is called a digit when its score, the log-odds log(p / (1 − p)) of its top softmax '
      'probability p, reaches the net\'s threshold and is a local maximum of its 3×3 '
      'neighbourhood; it is a digit when a digit\'s centre lies in it. Thresholds: the '
      'validation peak score with the best pooled F1, per seed (log-odds): '
      f'{thresholds}. Class accuracy: the '
      f'class of the cell holding each digit\'s centre. Only digits and cells {numbers["inset"]} '
      'px or more inside the canvas count. Pooled over canvases and seeds [95 % bootstrap '
      'interval]; Δ against the largest canvases, unpaired, judged against a margin of '
      f'±{numbers["margin"]:g} declared before the run.', '',
      table, '![F1 and class accuracy against canvas size](by_size.png)', '',
      '## Verdict', '', ' '.join(verdicts),
      '("equivalent": the interval of the difference lies inside the margin; "higher" / '
      '"lower": it excludes 0; otherwise "inconclusive".)']


if __name__ == '__main__':
  common.main(run)
