r"""GAP vs dense head vs the convolutionalized dense net: which classifier survives a change
of input size?

  python -m experiments.gap_vs_dense --workdir=/tmp/exp_gap_vs_dense [--quick]

Claim: a classifier whose head is flatten + dense is tied to its training size
(it cannot even run on another one) and spends most of its parameters there;
a 1x1-conv + global-average-pooling head has few parameters and runs at any
size — whether its accuracy holds there is an empirical question. The FCN way to run the
dense net at any size is net surgery (`fcn_jax.surgery.convolutionalize`): its dense layers
become convolutions, it gives a score map of windows, and an image's class is that of the
highest score anywhere in the map (max over positions), the comparator here. The nets
share the conv half (stride-2 3x3 convs 16/32/64, 'same' padding), are
trained on 28x28 digits (`fcn_digits/single`) with the same schedule and
seeds (the convolutionalized net is the trained dense net, not trained again), and are
tested on the test digits at 28x28 and resized to 28x16
(squeezed), 56x56 (2x) and 84x84 (3x), and at their own scale on 56x56 and 84x84
canvases (a bigger input, not a bigger digit). Accuracies are pooled over SEEDS with
95 % bootstrap intervals (digits and seeds resampled); each net's change from 28x28, and
GAP against the convolutionalized net at each size, are paired differences on the same
digits, judged against MARGIN (declared before the run). The predicted-class histogram of
every net and size is reported: a net that, in any seed, predicts one class for every digit
at a size or scores within 0.02 of chance there (`fcn_jax.stats.collapsed`) failed there, and
is reported as such, not as an accuracy.
"""

import os

import numpy as np

from configs import dense_to_fcn_digits
from configs import gap_digits
from experiments import common
from fcn_jax import geometry
from fcn_jax import stats
from fcn_jax import surgery

SIZES = ((28, 28), (28, 16), (56, 56), (84, 84))  # the test digits resized to these
CANVASES = (56, 84)  # the test digits at their own scale, centred on a larger black canvas
SEEDS = (0, 1, 2, 3, 4)
MARGIN = 0.02  # accuracy; declared before the run
MODELS = ('dense', 'fcn', 'gap')  # fcn: the trained dense net, convolutionalized
NAMES = {'dense': 'dense head', 'fcn': 'dense → FCN (max over the score map)',
         'gap': 'GAP head'}


def _configs(quick: bool, seed: int):
  gap = gap_digits.get_config()
  dense = dense_to_fcn_digits.get_config()
  dense.model.features = tuple(gap.model.features)  # the same conv half
  dense.model.padding = 'same'
  for config in (gap, dense):
    config.seed = seed
    if quick:
      common.quick_training(config, steps=200, batch_size=32)
      config.max_eval_images = 20
  return {'gap': gap, 'dense': dense}


def _key(size) -> str:
  return size if isinstance(size, str) else f'{size[0]}x{size[1]}'


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else SEEDS
  record = common.Record(workdir, quick)
  rows, params, errors, counts, histograms = [], {}, {}, {}, {}
  images = labels = None
  for seed in seeds:
    for name, config in _configs(quick, seed).items():
      trained = record.train(config, f'{name}_seed{seed}')
      if images is None:
        images, labels = common.load_split(config.data, 'test')
        if quick:
          images, labels = images[:256], labels[:256]
      nets = {name: trained}
      if name == 'dense':
        nets['fcn'] = surgery.convolutionalize(trained)
      inputs = {_key(size): common.resized(images, size) if size != (28, 28) else images
                for size in SIZES}
      for n in CANVASES:
        lo = (n - 28) // 2
        inputs[f'canvas{n}'] = np.pad(images, ((0, 0), (lo, n - 28 - lo), (lo, n - 28 - lo),
                                               (0, 0)))
      for net_name, model in nets.items():
        g = geometry.of(model)
        if net_name == 'fcn':  # the dense head's weights, reshaped into convolutions
          params[net_name] = {'total': g.params, 'head': params['dense']['head']}
        else:
          head = (model.fc1, model.fc2) if net_name == 'dense' else (model.score,)
          params[net_name] = {'total': g.params,
                              'head': sum(geometry.count_params(layer) for layer in head)}
        for key, x in inputs.items():
          try:
            predicted = common.predicted_labels(model, x)
          except ValueError as e:  # the dense head refuses other sizes
            errors.setdefault(net_name, str(e).splitlines()[0])
            rows.append({'model': net_name, 'seed': seed, 'size': key, 'accuracy': None,
                         'collapsed': None})
            continue
          counts.setdefault((net_name, key), []).append(
              common.correct_counts(predicted, labels))
          histogram = np.bincount(predicted, minlength=10)
          histograms[net_name, key] = histograms.get((net_name, key), 0) + histogram
          rows.append({'model': net_name, 'seed': seed, 'size': key,
                       'accuracy': float((predicted == labels).mean()),
                       'histogram': histogram.tolist(),
                       'collapsed': stats.collapsed(predicted, labels, 10)})

  columns = [_key(s) for s in SIZES] + [f'canvas{n}' for n in CANVASES]

  def failed_at(name, key):
    return any(r['collapsed'] for r in rows if r['model'] == name and r['size'] == key)
  cells = {}
  for name in MODELS:
    for key in columns:
      if (name, key) not in counts:
        cells[f'{name}/{key}'] = {'ran': False}
        continue
      cell = {'ran': True, 'collapsed': failed_at(name, key),
              'histogram': histograms[name, key].tolist(),
              'accuracy': common.interval_dict(stats.interval(np.stack(counts[name, key]),
                                                              stats.accuracy))}
      if key != '28x28':
        diff = stats.difference(np.stack(counts[name, key]), np.stack(counts[name, '28x28']),
                                stats.accuracy)
        cell['vs_28'] = common.interval_dict(diff)
        cell['verdict'] = stats.compare(diff, MARGIN, cell['collapsed'] or
                                        failed_at(name, '28x28'))
      cells[f'{name}/{key}'] = cell
  gap_vs_fcn = {}
  for key in columns:  # the GAP head against the FCN way to run the dense net, size by size
    if ('gap', key) in counts and ('fcn', key) in counts:
      diff = stats.difference(np.stack(counts['gap', key]), np.stack(counts['fcn', key]),
                              stats.accuracy)
      failed = failed_at('gap', key) or failed_at('fcn', key)
      gap_vs_fcn[key] = {**common.interval_dict(diff), 'verdict': (
          'not compared (a net failed here)' if failed else
          stats.compare(diff, MARGIN))}
  config = _configs(quick, 0)['gap']
  numbers = {'rows': rows, 'params': params, 'errors': errors, 'cells': cells,
             'gap_vs_fcn': gap_vs_fcn,
             'columns': columns, 'seeds': list(seeds), 'test_digits': len(images),
             'margin': MARGIN,
             'setup': {'features': list(config.model.features), 'steps': config.num_train_steps,
                       'batch_size': config.batch_size}}

  fig, ax = common.figure(figsize=(5, 3.2))
  for name, marker in (('gap', 'o-'), ('fcn', '^-.'), ('dense', 's--')):
    shown = [(k, cells[f'{name}/{k}']) for k in columns if cells[f'{name}/{k}']['ran']
             and not cells[f'{name}/{k}']['collapsed']]
    ax.errorbar([k for k, _ in shown], [c['accuracy']['estimate'] for _, c in shown],
                yerr=[[c['accuracy']['estimate'] - c['accuracy']['low'] for _, c in shown],
                      [c['accuracy']['high'] - c['accuracy']['estimate'] for _, c in shown]],
                fmt=marker, capsize=3, label=f'{NAMES[name]} (95% CI; failed left out)')
  ax.set_ylabel('test accuracy')
  ax.set_ylim(0, 1)
  ax.tick_params(axis='x', labelsize=7)
  ax.legend(fontsize=7)
  common.save_figure(fig, os.path.join(workdir, 'accuracy_vs_size.png'))
  record.write(numbers, render)
  return numbers


def _label(key: str) -> str:
  return f'{key[6:]}×{key[6:]} canvas' if key.startswith('canvas') else key.replace('x', '×')


def _cell(cell: dict) -> str:
  if not cell['ran']:
    return 'cannot run'
  if cell['collapsed']:
    return 'failed (one class, or chance accuracy, in a seed)'
  text = common.ci(cell['accuracy'])
  if 'vs_28' in cell:
    text += f'; Δ {common.ci(cell["vs_28"], signed=True)} {cell["verdict"]}'
  return text


def _judged(cells: dict, name: str, columns) -> str:
  """A net's verdicts against its own 28×28 accuracy, and where it failed."""
  mine = {k: cells[f'{name}/{k}'] for k in columns}
  if not mine['28x28']['ran'] or mine['28x28']['collapsed']:
    return f'The {NAMES[name]} failed at 28×28, so no change of size is judged.'
  judged = {k: c['verdict'] for k, c in mine.items() if 'verdict' in c and not c['collapsed']}
  failed = [k for k, c in mine.items() if c['ran'] and c['collapsed']]
  cannot = [k for k, c in mine.items() if not c['ran']]
  text = f'Against its own 28×28 accuracy, the {NAMES[name]} is ' + ('; '.join(
      f'{_label(k)}: {w}' for k, w in judged.items()) or 'judged nowhere else') + '.'
  if failed:
    text += (' At ' + ', '.join(map(_label, failed)) + ', in at least one seed, it predicts '
             'one class for every digit or scores within 0.02 of chance (0.1): it runs, but it '
             'has failed there.')
  if cannot:
    text += ' It cannot run at ' + ', '.join(map(_label, cannot)) + '.'
  return text


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  cells, params, setup, margin = (numbers['cells'], numbers['params'], numbers['setup'],
                                  numbers['margin'])
  columns = numbers['columns']
  headers = [f'{k.replace("x", "×")} (resized)' if not k.startswith('canvas') else
             f'{k[6:]}×{k[6:]} (28×28 on a canvas)' for k in columns]
  headers[0] = '28×28'
  table_rows = [[NAMES[name], f'{params[name]["total"]:,}', f'{params[name]["head"]:,}',
                 *[_cell(cells[f'{name}/{k}']) for k in columns]] for name in MODELS]
  gap_vs_fcn = numbers['gap_vs_fcn']
  table_rows.append(['GAP − FCN (paired)', '', '', *[
      f'{common.ci(gap_vs_fcn[k], signed=True)} {gap_vs_fcn[k]["verdict"]}'
      if k in gap_vs_fcn else '—' for k in columns]])
  histogram_rows = [[NAMES[name], _label(k), *cells[f'{name}/{k}']['histogram']]
                    for name in MODELS for k in columns if cells[f'{name}/{k}']['ran']]
  versus = [f'{_label(k)}: {v["verdict"]}' for k, v in gap_vs_fcn.items()]
  return 'GAP vs dense head at other input sizes, and the dense net convolutionalized', [
      '**Claim.** A flatten + dense head ties a classifier to its training size and holds most '
      'of its parameters; a 1×1 conv + global-average head is tiny and runs at any size; net '
      'surgery runs the dense net at any size as an FCN (its class: the highest score anywhere '
      'in its score map).', '',
      f'**Setup.** Shared conv half (stride-2 3×3 convs {tuple(setup["features"])}, same '
      f'padding, ReLU); trained {setup["steps"]} steps on 28×28 `fcn_digits/single` (batch '
      f'{setup["batch_size"]}, seeds {", ".join(map(str, numbers["seeds"]))}); the FCN is '
      'each trained dense net convolutionalized (`fcn_jax.surgery`), not trained again. Tested '
      f'on {numbers["test_digits"]} test digits, resized bilinearly to each size, or centred on '
      'a larger black canvas at their own scale. Accuracy pooled over seeds [95 % bootstrap '
      'interval over digits and seeds]; Δ = the paired difference to the net\'s own 28×28 '
      'accuracy; the last row, GAP − FCN at each size, paired; verdicts against a margin of '
      f'±{margin:g} declared before the run ("lower" / "higher": the interval excludes 0; '
      '"equivalent": it lies inside the margin; else "inconclusive").', '',
      common.table(['model', 'parameters', 'head parameters', *headers], table_rows),
      f'The dense head at other sizes: `{numbers["errors"].get("dense", "(ran)")}`', '',
      '![accuracy vs size](accuracy_vs_size.png)', '',
      '**Predicted classes** (test digits, all seeds together; the true classes are about '
      'equally frequent): a net that puts (nearly) every digit in one class has failed, '
      'whatever its accuracy.', '',
      common.table(['model', 'input', *map(str, range(10))], histogram_rows),
      '## Verdict', '',
      f'The dense head holds {params["dense"]["head"] / params["dense"]["total"]:.0%} of its '
      f'net\'s parameters ({params["dense"]["head"]:,} vs {params["gap"]["head"]:,} for the '
      '1×1 + GAP head) and cannot run at any other size; convolutionalized, the same weights '
      'run wherever the input holds its window. ' + _judged(cells, 'fcn', columns) + ' ' +
      _judged(cells, 'gap', columns) + ' GAP against the FCN: ' +
      ('; '.join(versus) or 'compared nowhere') + '. Running at any size is not the same as '
      'being scale-invariant.']


if __name__ == '__main__':
  common.main(run)
