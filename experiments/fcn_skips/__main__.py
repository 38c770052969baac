r"""FCN-32s → 16s → 8s, trained in stages as Long et al. train them: do finer skips help?

  python -m experiments.fcn_skips --workdir=/tmp/exp_fcn_skips [--quick]

Claim (Long et al., "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
Table 2): fusing the pool4 predictions (FCN-16s) and then the pool3 ones (FCN-8s) refines
the output. Their setting: VGG-16 fine-tuned from ImageNet on SBD's training images, scored on
a subset of PASCAL VOC 2011 validation: mean IU 59.4 (32s), 62.4 (16s), 62.7 (8s). The
reference implementation (fcn.berkeleyvision.org, trained on SBD, scored on seg11valid, the
VOC 2011 validation images not in SBD's training set) reports 63.6 / 65.0 / 65.5.

Here, as the paper trains them: FCN-32s from scratch, then FCN-16s initialised from the
trained 32s (its new pool4 score layer zero, so it starts where 32s ended: `fcn.Model.
grow_from`), then FCN-8s from the trained 16s. Each stage trains at a constant learning rate
until its validation mean IU has not risen by more than MIN_DELTA in PATIENCE evaluations
(every EVAL_EVERY steps; `fcn_jax.early_stopping`), at most MAX_STEPS; the grown stages at
GROWN_LEARNING_RATE (see there: chosen on validation curves).
`configs/fcn8s_shapes.py` with a slim VGG-16 (4 classes: background, circle, square,
triangle), on 64x64 crops of `fcn_shapes`; SEEDS. Only the validation split is read while
training; the test split is scored once per stage at the end: the paper's four metrics (one
confusion matrix over all test images), mean IU pooled over images and seeds and the mean of
per-image mean IU, each with a 95 % bootstrap interval, and each stage against the previous
by a paired difference judged against MARGIN (declared before the run). A stage that predicts
one class everywhere, or whose mean accuracy is within 0.02 of 1/K (K classes present),
failed to train and is not ranked.
"""

import json
import os

import numpy as np

from configs import fcn8s_shapes
from experiments import common
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import stats
from fcn_jax import tasks
from fcn_jax.data import catalog
from fcn_jax.data import pipeline

VARIANTS = ('fcn32s', 'fcn16s', 'fcn8s')  # the stages, each grown from the one before
METRICS = ('pixel_accuracy', 'mean_accuracy', 'mean_iou', 'fw_iou')
SEEDS = (0, 1, 2)
LEARNING_RATE = 1e-3  # the first stage's (Adam, constant after warm-up)
# The grown stages' rate. The paper lowers it for them (they start from a trained net); here a
# tenth (1e-4, the run at 740a86a) left FCN-16s rising slowly at the 1,600-step cap (validation
# mean IU 0.32 -> 0.37), while 1e-3 took it from 0.34 to 0.66 in 1,600 steps (seed 0, grown
# from the same 32s; a probe on the validation split, not on test).
GROWN_LEARNING_RATE = 1e-3
EVAL_EVERY = 200  # steps between validation evaluations
PATIENCE = 3  # evaluations without a rise of validation mean IU before a stage stops
MIN_DELTA = 0.002  # the smallest rise of validation mean IU that counts
# A stage stops here if the rule has not stopped it before. At 1,600 (the run at 740a86a) every
# stage hit the cap still rising. Probes on the validation split (seed 0, not committed): FCN-32s
# continued past the rule's stop at 2,200 steps stays at 0.33 (0.329-0.334 at 2,400-3,200);
# FCN-16s grown from it at GROWN_LEARNING_RATE reaches 0.76-0.79 at 2,800-4,000 and the rule stops
# it at 4,200 (best 0.789 at 3,600). So 6,000 leaves room for the rule to stop every stage: about
# 3 h for 3 seeds on a quiet 2-core CPU.
MAX_STEPS = 6000
# The stopping rule reads a fixed random quarter of the validation split (86 images of all five
# sizes): with conv1's 100-px padding a 64x64 image costs a 264x264 forward pass, so the whole
# split would cost 4x the evaluations. Training's own closing evaluation reads it too; the test
# split is scored once per stage, by `score`.
VALIDATION = 'validation[:25%]'
MARGIN = 0.02  # mean IU; declared before the run
PAPER = {'paper': (59.4, 62.4, 62.7), 'reference implementation': (63.6, 65.0, 65.5)}


def _config(variant: str, quick: bool, seed: int, init_from: str | None):
  config = fcn8s_shapes.get_config(f'variant={variant}' + (',runlocal' if quick else ''))
  config.seed = seed
  config.model.init_from = init_from
  config.optimizer.schedule = 'constant'
  config.optimizer.learning_rate = GROWN_LEARNING_RATE if init_from else LEARNING_RATE
  config.early_stopping.metric = 'mean_iou'
  config.early_stopping.min_delta = MIN_DELTA
  if quick:
    config.data.name = 'fcn_shapes/tiny'
    common.quick_training(config, steps=80, batch_size=4)
    config.optimizer.learning_rate *= 3
    config.model.dropout = 0.0  # dropout on fc6/fc7 of width 8 leaves the tiny net nothing
    config.eval_every, config.early_stopping.patience = 20, 2
  else:
    config.model.widths = (8, 16, 32, 32, 32)
    config.model.fc_width = 64
    config.data.patch_size = 64
    config.batch_size = 8
    config.num_train_steps = MAX_STEPS
    config.eval_every, config.early_stopping.patience = EVAL_EVERY, PATIENCE
    config.checkpoint_every = EVAL_EVERY
    config.data.validation_split = config.data.eval_split = VALIDATION
  return config


def score(model, data, split: str) -> tuple[dict, np.ndarray, dict]:
  """The four metrics over all images of `split` (one confusion matrix), the per-image
  confusion matrices flattened `[images, K*K]`, and one example."""
  g = geometry.of(model)
  k = catalog.num_classes(data)
  counts = tasks.Segmentation().metrics(k)
  per_image, example = [], None
  for ex in pipeline.eval_examples(data, g, split):
    logits = inference.predict(model, ex['image'][0])
    before = counts.confusion.copy()
    counts.add(logits, ex['target'])
    per_image.append((counts.confusion - before).ravel())
    if example is None:
      example = {'image': ex['image'][0], 'target': ex['target'], 'pred': logits.argmax(-1)}
  return counts.result()[0], np.stack(per_image), example


def _per_image_miou(confusions: np.ndarray) -> np.ndarray:
  """`[..., images, K*K]` confusion matrices -> `[..., images, 2]`: (mean IU of the image, 1),
  the counts whose pooled ratio is the mean over images of per-image mean IU."""
  miou = stats.mean_iou(confusions.astype(np.float64))
  return np.stack([miou, np.ones_like(miou)], axis=-1)


def _ratio(sums: np.ndarray) -> np.ndarray:
  return sums[..., 0] / np.maximum(sums[..., 1], 1)


def _validation_curve(workdir: str, split: str) -> tuple[list[tuple[int, float]], bool]:
  """(step, validation mean IU averaged over sizes) of every evaluation of a run, and whether
  early stopping ended it (both from its metrics.jsonl)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  curve = {}
  for r in records:
    if r.get('split') == split:
      values = [v for k, v in r.items() if k.endswith('/mean_iou')]
      curve[r['step']] = float(np.mean(values))
  return sorted(curve.items()), any(r.get('early_stopped') for r in records)


def _measure_seed(record: common.Record, workdir: str, quick: bool, seed: int,
                  example: bool) -> dict:
  """One seed's three stages, trained in turn and each scored on test: its rows, per-image
  confusion matrices, validation curves and (if `example`) the first test image with each
  stage's prediction (the figure's). A part of the experiment (`common.Record.part`)."""
  rows, confusions, curves, examples = [], {}, {}, {}
  previous = None
  for variant in VARIANTS:
    config = _config(variant, quick, seed, previous)
    name = f'{variant}_seed{seed}'
    model = record.train(config, name)
    previous = os.path.join(workdir, name)
    curves[name], stopped = _validation_curve(previous, config.data.validation_split)
    metrics, per_image, first = score(model, config.data, 'test')
    confusion = per_image.sum(0).reshape(int(len(per_image[0]) ** 0.5), -1)
    present = int((confusion.sum(1) > 0).sum())  # classes in the ground truth
    one_class = int((confusion.sum(0) > 0).sum()) <= 1  # one predicted class everywhere
    rows.append({'variant': variant, 'seed': seed, 'params': geometry.of(model).params,
                 'steps': record.training[name]['steps'], 'early_stopped': stopped,
                 'learning_rate': config.optimizer.learning_rate,
                 'collapsed': one_class or abs(metrics['mean_accuracy'] - 1 / present) <= 0.02,
                 **metrics})
    confusions[variant] = per_image
    if example:  # test images are 8-bit: kept exactly as uint8
      examples[variant] = {'image': np.round(first['image'] * 255).astype(np.uint8),
                           'target': first['target'], 'pred': first['pred']}
  return {'rows': rows, 'confusions': confusions, 'curves': curves, 'examples': examples}


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else SEEDS
  record = common.Record(workdir, quick)
  rows, confusions, curves = [], {v: [] for v in VARIANTS}, {}
  for seed in seeds:  # a part per seed (about an hour each): a sitting can end between them
    part = record.part(f'seed{seed}', lambda: _measure_seed(record, workdir, quick, seed,
                                                            example=seed == seeds[0]))
    rows += part['rows']
    curves.update(part['curves'])
    for variant in VARIANTS:
      confusions[variant].append(np.asarray(part['confusions'][variant], np.int64))
    if seed == seeds[0]:
      examples = {v: {'image': np.asarray(e['image'], np.uint8) / 255.0,
                      'target': np.asarray(e['target']), 'pred': np.asarray(e['pred'])}
                  for v, e in part['examples'].items()}

  summary = {}
  for variant in VARIANTS:
    mine = [r for r in rows if r['variant'] == variant]
    stacked = np.stack(confusions[variant])  # [seeds, images, K*K]
    summary[variant] = {
        'params': mine[0]['params'], 'collapsed': any(r['collapsed'] for r in mine),
        'steps': [r['steps'] for r in mine], 'early_stopped': [r['early_stopped'] for r in mine],
        'mean_iou_ci': common.interval_dict(stats.interval(stacked, stats.mean_iou)),
        'per_image_miou_ci': common.interval_dict(stats.interval(_per_image_miou(stacked),
                                                                 _ratio)),
        **{m: float(np.mean([r[m] for r in mine])) for m in METRICS}}
  steps = []
  for coarse, fine in zip(VARIANTS, VARIANTS[1:]):
    a, b = np.stack(confusions[fine]), np.stack(confusions[coarse])
    diff = stats.difference(a, b, stats.mean_iou)
    per_image = stats.difference(_per_image_miou(a), _per_image_miou(b), _ratio)
    failed = summary[coarse]['collapsed'] or summary[fine]['collapsed']
    steps.append({'fine': fine, 'coarse': coarse, 'delta': common.interval_dict(diff),
                  'per_image_delta': common.interval_dict(per_image),
                  'verdict': stats.compare(diff, MARGIN, failed),
                  'per_image_verdict': stats.compare(per_image, MARGIN, failed),
                  'sentence': stats.sentence(fine, coarse, diff, MARGIN, failed, 'mean IU')})

  fig, axes = common.figure(1, 3 + len(VARIANTS), figsize=(3 * (3 + len(VARIANTS)), 3.2))
  first = examples[VARIANTS[0]]
  axes[0].imshow(first['image'])
  axes[0].set_title('input', fontsize=9)
  axes[1].imshow(np.where(first['target'] == tasks.IGNORE, -1, first['target']), cmap='tab10',
                 vmin=-1, vmax=9, interpolation='nearest')
  axes[1].set_title('target', fontsize=9)
  for ax, variant in zip(axes[2:], VARIANTS):
    ax.imshow(examples[variant]['pred'], cmap='tab10', vmin=-1, vmax=9, interpolation='nearest')
    ax.set_title(f'{variant} (test mean IU {summary[variant]["mean_iou_ci"]["estimate"]:.3f})',
                 fontsize=9)
  for ax in axes[:-1]:
    ax.axis('off')
  ax, start = axes[-1], 0  # validation curves of the first seed, stage after stage
  for variant in VARIANTS:
    curve = curves[f'{variant}_seed{seeds[0]}']
    ax.plot([start + s for s, _ in curve], [v for _, v in curve], 'o-', ms=3, label=variant)
    start += curve[-1][0] if curve else 0
  ax.set_xlabel(f'training steps, stage after stage (seed {seeds[0]})', fontsize=8)
  ax.set_ylabel('validation mean IU', fontsize=8)
  ax.legend(fontsize=7)
  common.save_figure(fig, os.path.join(workdir, 'examples.png'))

  config = _config('fcn8s', quick, 0, None)
  numbers = {'rows': rows, 'summary': summary, 'steps': steps, 'seeds': list(seeds),
             'margin': MARGIN, 'paper': PAPER,
             'curves': {k: [list(p) for p in v] for k, v in curves.items()},
             'setup': {'widths': list(config.model.widths), 'fc_width': config.model.fc_width,
                       'first_padding': config.model.first_padding,
                       'max_steps': config.num_train_steps, 'batch_size': config.batch_size,
                       'patch_size': config.data.patch_size, 'data': config.data.name,
                       'optimizer': config.optimizer.name,
                       'learning_rate': config.optimizer.learning_rate,
                       'eval_every': config.eval_every,
                       'patience': config.early_stopping.patience,
                       'min_delta': config.early_stopping.min_delta,
                       'validation_split': config.data.validation_split}}
  record.write(numbers, render)
  return numbers


def _grown_rate(numbers: dict) -> str:
  # Every row records the rate its stage trained at.
  first = numbers['setup']['learning_rate']
  grown = next(r['learning_rate'] for r in numbers['rows'] if r['variant'] != VARIANTS[0])
  if np.isclose(grown, first / 10):
    return 'the grown stages at a tenth of it'
  return 'the grown stages too' if np.isclose(grown, first) else f'the grown stages at {grown:g}'


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  setup, summary, paper = numbers['setup'], numbers['summary'], numbers['paper']
  failed = [v for v in VARIANTS if summary[v]['collapsed']]
  reading = []
  if failed:
    reading.append(', '.join(failed) + (' has' if len(failed) == 1 else ' have') +
                   ' one predicted class everywhere, or a mean accuracy within 0.02 of 1/K (K '
                   'classes present): it failed to train and is not ranked.')
  at_cap = sum(not stopped for v in VARIANTS for stopped in summary[v]['early_stopped'])
  runs = sum(len(summary[v]['early_stopped']) for v in VARIANTS)
  if at_cap:
    reading.append(f'{at_cap} of {runs} stages stopped at the {setup["max_steps"]:,}-step cap '
                   'with validation mean IU still rising by the stopping rule, not at a '
                   'plateau: ' + ('every comparison below is' if at_cap == runs else
                                  'the comparisons below are partly') +
                   ' between nets still learning.')
  reading += [s['sentence'] for s in numbers['steps']]
  words = [s['verdict'] for s in numbers['steps']]
  if words == ['higher', 'higher']:
    reading.append('Each finer skip measurably raises mean IU: the paper\'s ordering holds here.')
  elif 'failed to train' in words:
    reading.append('The paper\'s ordering cannot be judged: a stage failed to train.')
  else:
    reading.append('The paper\'s ordering (each finer skip raises mean IU) is not shown by this '
                   'run: ' + '; '.join(f'{s["fine"]} vs {s["coarse"]}: {s["verdict"]}'
                                       for s in numbers['steps']) + '.')

  def stages(variant):
    s = summary[variant]
    return ' / '.join(f'{n}{"" if stopped else "*"}'
                      for n, stopped in zip(s['steps'], s['early_stopped']))
  table = common.table(
      ['stage', 'parameters', 'steps per seed', 'test mean IU [95% CI]',
       'per-image mean IU [95% CI]', *METRICS, 'Long et al. / reference mean IU'],
      [[v, f'{summary[v]["params"]:,}', stages(v),
        'failed to train' if summary[v]['collapsed'] else common.ci(summary[v]['mean_iou_ci']),
        common.ci(summary[v]['per_image_miou_ci']), *[summary[v][m] for m in METRICS],
        f'{paper["paper"][i]} / {paper["reference implementation"][i]}']
       for i, v in enumerate(VARIANTS)])
  deltas = common.table(
      ['stage', 'Δ mean IU vs the previous stage [95% CI]', 'Δ per-image mean IU [95% CI]'],
      [[f'{s["fine"]} − {s["coarse"]}', f'{common.ci(s["delta"], True)} {s["verdict"]}',
        f'{common.ci(s["per_image_delta"], True)} {s["per_image_verdict"]}']
       for s in numbers['steps']])
  return 'FCN-32s → 16s → 8s, trained in stages', [
      '**Claim.** Fusing finer skip predictions refines an FCN: mean IU FCN-32s < 16s < 8s. '
      'Long et al. (CVPR 2015, Table 2: VGG-16 fine-tuned on SBD, scored on a subset of PASCAL '
      'VOC 2011 val): 59.4 / 62.4 / 62.7. The reference implementation '
      '(fcn.berkeleyvision.org: trained on SBD, scored on seg11valid): 63.6 / 65.0 / 65.5. '
      'Both are VOC figures on 21 classes with ImageNet-pretrained VGG-16, listed for the '
      'ordering, not as numbers to reach on these synthetic shapes.', '',
      f'**Setup.** `configs/fcn8s_shapes.py:variant=…`: VGG-16 layout with widths '
      f'{tuple(setup["widths"])}, fc6/fc7 width {setup["fc_width"]}, conv1 padding '
      f'{setup["first_padding"]}, ceil-mode pools, bilinear-initialised transposed convs; '
      f'batch {setup["batch_size"]} of {setup["patch_size"]}×{setup["patch_size"]} crops of '
      f'`{setup["data"]}`, {setup["optimizer"]} at a constant {setup["learning_rate"]:g} '
      f'({_grown_rate(numbers)}). Staged as the paper: 32s from scratch, 16s from '
      'the trained 32s, 8s from the trained 16s, each new skip score layer zero-initialised. '
      'Each stage stops when validation mean IU (on '
      f'`{setup.get("validation_split", "validation")}`) has not risen by more than '
      f'{setup["min_delta"]:g} in {setup["patience"]} evaluations (every '
      f'{setup["eval_every"]} steps), at most {setup["max_steps"]} steps (* in the table: '
      f'stopped at the cap, not by the rule). Seeds {", ".join(map(str, numbers["seeds"]))}. '
      'Test images (64×64 to 1024×1024) scored once per stage: the paper\'s four metrics from '
      'one confusion matrix per run (means over seeds); mean IU pooled over images and seeds '
      'and the mean of per-image mean IU, each [95 % bootstrap interval]. Margin declared '
      f'before the run: ±{numbers["margin"]:g} mean IU.', '',
      table, deltas,
      '![examples and validation curves](examples.png)', '',
      '## Verdict', '', ' '.join(reading)]


if __name__ == '__main__':
  common.main(run)
