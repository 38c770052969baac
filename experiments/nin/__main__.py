r"""Network in Network vs the same trunk with a dense head: parameters and accuracy.

  python -m experiments.nin --workdir=/tmp/exp_nin [--quick]

Claim (Lin et al., 2014): replacing the fully connected classifier by a 1x1
conv to the classes + global average pooling removes most parameters without
losing accuracy (the paper: it also regularizes). Both nets here are the same
mlpconv trunk (`configs/nin_digits.py`: three mlpconv blocks, 8 convs);
`head='dense'` ends it with flatten + dense instead. Trained on 28x28 digits
with the same schedule and seeds, scored on the same test digits: the accuracy
difference is paired (digits and seeds resampled together) and judged against
MARGIN, declared before the run (`fcn_jax.stats.compare`).
"""

import os

import numpy as np

from configs import nin_digits
from experiments import common
from fcn_jax import geometry
from fcn_jax import stats

MARGIN = 0.01  # accuracy; declared before the run
HEADS = ('gap', 'dense')


def _config(head: str, quick: bool, seed: int):
  config = nin_digits.get_config()
  config.seed = seed
  if head == 'dense':
    config.model.head = 'dense'
    config.model.input_size = (28, 28)
    config.eval_sizes = ((28, 28),)
  if quick:
    common.quick_training(config, steps=200, batch_size=32)
    config.max_eval_images = 20
  return config


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else (0, 1)
  record = common.Record(workdir, quick)
  rows, counts, collapsed, images, labels = [], {h: [] for h in HEADS}, {}, None, None
  for seed in seeds:
    for head in HEADS:
      config = _config(head, quick, seed)
      model = record.train(config, f'{head}_seed{seed}')
      if images is None:
        images, labels = common.load_split(config.data, 'test')
        if quick:
          images, labels = images[:256], labels[:256]
      g = geometry.of(model)
      head_params = (geometry.count_params(model.dense) if head == 'dense' else
                     geometry.count_params([l for l in model.mlpconv.layers
                                            if hasattr(l, 'kernel')][-1]))
      predicted = common.predicted_labels(model, images)
      counts[head].append(common.correct_counts(predicted, labels))
      collapsed[head] = collapsed.get(head, False) or stats.collapsed(predicted, labels, 10)
      rows.append({'head': head, 'seed': seed, 'params': g.params, 'head_params': head_params,
                   'accuracy': float((predicted == labels).mean())})
  config = _config('gap', quick, 0)
  summary = {h: {'params': next(r['params'] for r in rows if r['head'] == h),
                 'head_params': next(r['head_params'] for r in rows if r['head'] == h),
                 'accuracy': common.interval_dict(stats.interval(np.stack(counts[h]),
                                                                 stats.accuracy)),
                 'collapsed': collapsed[h]} for h in HEADS}
  diff = stats.difference(np.stack(counts['gap']), np.stack(counts['dense']), stats.accuracy)
  numbers = {'rows': rows, 'summary': summary, 'difference': common.interval_dict(diff),
             'verdict': stats.compare(diff, MARGIN, any(collapsed.values())),
             'sentence': stats.sentence('NiN (GAP head)', 'dense head', diff, MARGIN,
                                        any(collapsed.values()), metric='accuracy'),
             'margin': MARGIN, 'seeds': list(seeds), 'test_digits': len(images),
             'setup': {'widths': [list(w) for w in config.model.widths],
                       'kernel_sizes': list(config.model.kernel_sizes),
                       'steps': config.num_train_steps, 'batch_size': config.batch_size,
                       'optimizer': config.optimizer.name,
                       'learning_rate': config.optimizer.learning_rate}}
  record.write(numbers, render)
  return numbers


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  setup, summary = numbers['setup'], numbers['summary']
  gap, dense = summary['gap'], summary['dense']
  return 'Network in Network vs a dense head', [
      '**Claim.** A 1×1 conv + global-average head replaces the fully connected classifier with '
      'a fraction of the parameters and no loss of accuracy.', '',
      f'**Setup.** `configs/nin_digits.py` trunk: mlpconv blocks '
      f'{tuple(map(tuple, setup["widths"]))}, kernels {tuple(setup["kernel_sizes"])}, 3×3/2 '
      'max-pool between blocks; heads: (NiN) 1×1 conv to 10 classes + global average, or '
      f'(ablation) flatten + dense to 10. {setup["steps"]} steps, batch {setup["batch_size"]}, '
      f'{setup["optimizer"]} {setup["learning_rate"]}; seeds '
      f'{", ".join(map(str, numbers["seeds"]))}; {numbers["test_digits"]} test digits. '
      'Accuracy pooled over seeds with its 95 % bootstrap interval (digits and seeds '
      f'resampled); margin declared before the run: ±{numbers["margin"]:g}.', '',
      common.table(['head', 'parameters', 'head parameters', 'test accuracy [95% CI]'],
                   [[('1×1 conv + GAP (NiN)' if h == 'gap' else 'flatten + dense'),
                     f'{summary[h]["params"]:,}', f'{summary[h]["head_params"]:,}',
                     'failed to train' if summary[h]['collapsed'] else
                     common.ci(summary[h]['accuracy'], digits=4)] for h in HEADS]),
      '## Verdict', '',
      f'NiN uses {gap["params"] / dense["params"]:.0%} of the dense-head net\'s parameters '
      f'(head {gap["head_params"]:,} vs {dense["head_params"]:,}). {numbers["sentence"]}']


if __name__ == '__main__':
  common.main(run)
