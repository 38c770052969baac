r"""Network in Network vs the same trunk with a dense head, with less and less training data.

  python -m experiments.nin --workdir=/tmp/exp_nin [--quick]

Claims (Lin et al., "Network In Network", ICLR 2014): replacing the fully connected
classifier by a 1x1 conv to the classes + global average pooling (GAP) removes most
parameters, and it regularises: with no parameters to fit in the head, the net overfits less.
Both nets here are the same mlpconv trunk (`configs/nin_digits.py`: three mlpconv blocks, 8
convs); `head='dense'` ends it with flatten + dense instead. Each is trained on the first 10 %,
25 % and 100 % of the 1,438 training digits (`fcn_digits/single`, `train[:10%]`, ...) with the
same schedule (one budget of steps for every variant) and SEEDS, and scored on all 359 test
digits and on the training digits it saw. Per regime: test accuracy of each head, pooled over
seeds with a 95 % bootstrap interval; the GAP − dense difference, paired on the same test
digits and seeds, judged against MARGIN (declared before the run): if GAP regularises, it is
higher where data is scarce; and the train − test gap of each head (train and test digits
bootstrapped independently). A run that predicts one class, or scores within 0.02 of chance,
failed to train and is not compared.
"""

import numpy as np

from configs import nin_digits
from experiments import common
from fcn_jax import geometry
from fcn_jax import stats

FRACTIONS = (10, 25, 100)  # % of the training digits
SEEDS = (0, 1, 2, 3, 4)
MARGIN = 0.01  # test accuracy; declared before the run
HEADS = ('gap', 'dense')
NAMES = {'gap': '1×1 conv + GAP (NiN)', 'dense': 'flatten + dense'}


def _split(fraction: int) -> str:
  return 'train' if fraction == 100 else f'train[:{fraction}%]'


def _config(head: str, fraction: int, quick: bool, seed: int):
  config = nin_digits.get_config()
  config.seed = seed
  config.data.train_split = _split(fraction)
  if head == 'dense':
    config.model.head = 'dense'
    config.model.input_size = (28, 28)
    config.eval_sizes = ((28, 28),)
  if quick:
    common.quick_training(config, steps=200, batch_size=32)
    config.max_eval_images = 20
  return config


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else SEEDS
  fractions = (25,) if quick else FRACTIONS
  record = common.Record(workdir, quick)
  rows, test_counts, train_counts, collapsed, params = [], {}, {}, {}, {}
  test = None
  for fraction in fractions:
    for seed in seeds:
      for head in HEADS:
        config = _config(head, fraction, quick, seed)
        model = record.train(config, f'{head}_{fraction}pct_seed{seed}')
        if test is None:
          test = common.load_split(config.data, 'test')
          if quick:
            test = (test[0][:256], test[1][:256])
        seen = common.load_split(config.data, config.data.train_split)
        g = geometry.of(model)
        params[head] = {
            'total': g.params,
            'head': (geometry.count_params(model.dense) if head == 'dense' else
                     geometry.count_params([l for l in model.mlpconv.layers
                                            if hasattr(l, 'kernel')][-1]))}
        predicted = common.predicted_labels(model, test[0])
        test_counts.setdefault((fraction, head), []).append(
            common.correct_counts(predicted, test[1]))
        train_counts.setdefault((fraction, head), []).append(
            common.correct_counts(common.predicted_labels(model, seen[0]), seen[1]))
        failed = stats.collapsed(predicted, test[1], 10)
        collapsed[fraction, head] = collapsed.get((fraction, head), False) or failed
        rows.append({'fraction': fraction, 'head': head, 'seed': seed,
                     'train_digits': len(seen[1]),
                     'test_accuracy': float((predicted == test[1]).mean()),
                     'collapsed': failed})

  regimes = []
  for fraction in fractions:
    regime = {'fraction': fraction,
              'train_digits': next(r['train_digits'] for r in rows if r['fraction'] == fraction)}
    for head in HEADS:
      tested = np.stack(test_counts[fraction, head])
      trained = np.stack(train_counts[fraction, head])
      regime[head] = {
          'collapsed': collapsed[fraction, head],
          'test': common.interval_dict(stats.interval(tested, stats.accuracy)),
          'train': common.interval_dict(stats.interval(trained, stats.accuracy)),
          'gap': common.interval_dict(stats.difference(trained, tested, stats.accuracy,
                                                       paired=False))}
    failed = collapsed[fraction, 'gap'] or collapsed[fraction, 'dense']
    diff = stats.difference(np.stack(test_counts[fraction, 'gap']),
                            np.stack(test_counts[fraction, 'dense']), stats.accuracy)
    regime['difference'] = common.interval_dict(diff)
    regime['verdict'] = stats.compare(diff, MARGIN, failed)
    regime['sentence'] = stats.sentence('NiN (GAP head)', 'dense head', diff, MARGIN, failed,
                                        metric='test accuracy')
    regimes.append(regime)

  fig, ax = common.figure(figsize=(5, 3.2))
  for head, marker in (('gap', 'o-'), ('dense', 's--')):
    shown = [r for r in regimes if not r[head]['collapsed']]
    ax.errorbar([r['train_digits'] for r in shown], [r[head]['test']['estimate'] for r in shown],
                yerr=[[r[head]['test']['estimate'] - r[head]['test']['low'] for r in shown],
                      [r[head]['test']['high'] - r[head]['test']['estimate'] for r in shown]],
                fmt=marker, capsize=3, label=f'{NAMES[head]} (95% CI)')
  ax.set_xscale('log')
  ax.set_xlabel('training digits')
  ax.set_ylabel('test accuracy')
  ax.legend(fontsize=7)
  common.save_figure(fig, f'{workdir}/accuracy_vs_data.png')

  config = _config('gap', 100, quick, 0)
  numbers = {'rows': rows, 'regimes': regimes, 'params': params, 'margin': MARGIN,
             'seeds': list(seeds), 'test_digits': len(test[1]),
             'setup': {'widths': [list(w) for w in config.model.widths],
                       'kernel_sizes': list(config.model.kernel_sizes),
                       'steps': config.num_train_steps, 'batch_size': config.batch_size,
                       'optimizer': config.optimizer.name,
                       'learning_rate': config.optimizer.learning_rate}}
  record.write(numbers, render)
  return numbers


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  setup, params, regimes = numbers['setup'], numbers['params'], numbers['regimes']

  def accuracy(r, head, key):
    return 'failed to train' if r[head]['collapsed'] else common.ci(r[head][key])
  table = common.table(
      ['training digits', *[f'test acc., {NAMES[h]}' for h in HEADS],
       'Δ test acc. GAP − dense [95% CI]',
       *[f'train − test, {NAMES[h]}' for h in HEADS]],
      [[f'{r["train_digits"]:,} ({r["fraction"]} %)',
        *[accuracy(r, h, 'test') for h in HEADS],
        f'{common.ci(r["difference"], True)} {r["verdict"]}',
        *['—' if r[h]['collapsed'] else common.ci(r[h]['gap'], True) for h in HEADS]]
       for r in regimes])
  words = {r['fraction']: r['verdict'] for r in regimes}
  scarce = regimes[0]
  if scarce['verdict'] == 'higher':
    claim = (f'With the fewest digits ({scarce["train_digits"]:,}), the GAP head scores higher '
             'on the test digits: the regularisation the paper claims shows here.')
  elif scarce['verdict'] == 'failed to train':
    claim = 'A run with the fewest digits failed to train: the regularisation claim is not judged.'
  else:
    claim = (f'With the fewest digits ({scarce["train_digits"]:,}), the GAP head is '
             f'{scarce["verdict"]} against the dense head: the regularisation the paper claims '
             'is not shown here.')
  return 'Network in Network vs a dense head, with less and less training data', [
      '**Claims.** A 1×1 conv + global-average head replaces the fully connected classifier with '
      'a fraction of the parameters, and regularises: with little data it overfits less than a '
      'dense head (Lin et al., 2014).', '',
      f'**Setup.** `configs/nin_digits.py` trunk: mlpconv blocks '
      f'{tuple(map(tuple, setup["widths"]))}, kernels {tuple(setup["kernel_sizes"])}, 3×3/2 '
      'max-pool between blocks; heads: (NiN) 1×1 conv to 10 classes + global average, or '
      f'(ablation) flatten + dense to 10. Trained on the first 10 %, 25 % or 100 % of the '
      f'training digits, {setup["steps"]} steps of batch {setup["batch_size"]} for every '
      f'regime, {setup["optimizer"]} {setup["learning_rate"]}; seeds '
      f'{", ".join(map(str, numbers["seeds"]))}; {numbers["test_digits"]} test digits. '
      'Accuracy pooled over seeds with its 95 % bootstrap interval (digits and seeds '
      'resampled); GAP − dense paired on the same test digits; train − test: the accuracy on '
      'the training digits seen minus the test accuracy (independent resamples). Margin '
      f'declared before the run: ±{numbers["margin"]:g} test accuracy.', '',
      common.table(['head', 'parameters', 'head parameters'],
                   [[NAMES[h], f'{params[h]["total"]:,}', f'{params[h]["head"]:,}']
                    for h in HEADS]),
      table, '![test accuracy against training digits](accuracy_vs_data.png)', '',
      '## Verdict', '',
      f'NiN uses {params["gap"]["total"] / params["dense"]["total"]:.0%} of the dense-head '
      f'net\'s parameters (head {params["gap"]["head"]:,} vs {params["dense"]["head"]:,}). '
      + ' '.join(f'{r["fraction"]} % of the digits: {r["sentence"]}' for r in regimes) + ' '
      + claim + ' (GAP − dense by regime: ' +
      ', '.join(f'{k} %: {v}' for k, v in words.items()) + '.)']


if __name__ == '__main__':
  common.main(run)
