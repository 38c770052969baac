r"""Learning curve of the main job: validation F1 against training steps, 3 seeds.

  python -m experiments.learning_curve --workdir=/tmp/exp_learning_curve [--quick]

Question: how many steps does `configs/default.py` need to reach its plateau? For each
horizon N in HORIZONS and each seed, the default config is trained for N steps with its own
schedule (warm-up, then cosine decay to 0 at step N: the run a user gets with
`--config.num_train_steps=N`), and scored on the whole validation split (1 Mpixel at each
test size). Nothing else is changed, so each run also scores the test split at its end, as every
training run does; this experiment reads only the validation scores. Because the runs are the
default config, a finished default run with the same seed (the main job's workdir, or the scaling
experiment's `seed<k>`) copied to `DIR/steps4000_seed<k>` is reused instead of retrained. Per horizon: pooled cell F1 over all validation
images and seeds with its 95 % bootstrap interval (images and seeds resampled), and the paired
difference to the longest horizon (same seeds, same images).

Declared before the run: a horizon is on the plateau when the interval of its ΔF1 against
the longest horizon lies inside ±MARGIN (`fcn_jax.stats.compare` says 'equivalent').
"""

import os

import numpy as np

from configs import default
from experiments import common
from fcn_jax import stats

HORIZONS = (1000, 2000, 4000, 8000, 16000, 32000)  # the longest is the reference
SEEDS = (0, 1, 2)
MARGIN = 0.02  # F1; declared before the run


def _counts(evaluation: list) -> np.ndarray:
  """Per-image (tp, fp, fn) of every validation image, all sizes, in a fixed order."""
  return np.concatenate([r.counts for r in evaluation])


def _measure(record: common.Record, quick: bool, seed: int, steps: int) -> dict:
  """One run of the default config for `steps` steps: every validation image's (tp, fp, fn).
  A part of the experiment (`common.Record.part`)."""
  config = default.get_config()
  config.seed = seed
  if quick:
    config.data.name = 'fcn_shapes/tiny'
    common.quick_training(config, steps=steps)
  else:
    config.num_train_steps = steps
    config.checkpoint_every = steps  # a resumable change: a copied default run is reused
  name = f'steps{steps}_seed{seed}'
  record.train(config, name)
  return {'counts': _counts(record.evaluations[name]['validation'])}


def run(workdir: str, quick: bool) -> dict:
  horizons, seeds = ((50, 300), (0, 1)) if quick else (HORIZONS, SEEDS)
  record = common.Record(workdir, quick)
  # A part per run (the longest about 50 min on 2 cores): a sitting can end between them.
  counts = {steps: np.stack([
      np.asarray(record.part(f'steps{steps}_seed{seed}',
                             lambda: _measure(record, quick, seed, steps))['counts'], np.int64)
      for seed in seeds]) for steps in horizons}  # [seeds, images, 3]

  longest = counts[horizons[-1]]
  rows = []
  for steps in horizons:
    pooled = stats.interval(counts[steps])
    diff = stats.difference(counts[steps], longest)
    # A run that calls no cell positive (tp + fp = 0) has not learned the task.
    failed = bool((counts[steps][..., :2].sum((1, 2)) == 0).any() |
                  (longest[..., :2].sum((1, 2)) == 0).any())
    runs = [record.training[f'steps{steps}_seed{s}'] for s in seeds]
    rows.append({
        'steps': steps, 'f1': pooled.estimate, 'low': pooled.low, 'high': pooled.high,
        'seed_f1': [float(stats.f1(c.sum(0))) for c in counts[steps]],
        'delta': diff.estimate, 'delta_low': diff.low, 'delta_high': diff.high,
        'verdict': stats.compare(diff, MARGIN, failed),
        'train_loss': float(np.mean([r['last_loss'] for r in runs])),
        'train_seconds': float(np.mean([r['train_seconds'] for r in runs]))})
  numbers = {'rows': rows, 'seeds': list(seeds), 'margin': MARGIN,
             'validation_images': int(longest.shape[1]),
             'positive_cells': int(longest[0][:, [0, 2]].sum()),
             'default_steps': default.get_config().num_train_steps,
             'data': 'fcn_shapes/tiny' if quick else default.get_config().data.name}

  fig, ax = common.figure(figsize=(5.5, 3.4))
  x = [r['steps'] for r in rows]
  ax.errorbar(x, [r['f1'] for r in rows], yerr=[[r['f1'] - r['low'] for r in rows],
                                              [r['high'] - r['f1'] for r in rows]],
              fmt='o-', capsize=3, label='pooled over seeds (95% CI)')
  for i, seed in enumerate(seeds):
    ax.plot(x, [r['seed_f1'][i] for r in rows], '.', alpha=0.6, label=f'seed {seed}')
  ax.axvline(numbers['default_steps'], ls=':', c='grey', label='configs/default.py')
  ax.set_xscale('log')
  ax.set_xlabel('training steps (each a separate run with its own schedule)')
  ax.set_ylabel('validation cell F1')
  ax.legend(fontsize=7)
  common.save_figure(fig, os.path.join(workdir, 'learning_curve.png'))
  record.write(numbers, render)
  return numbers


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  rows, margin = numbers['rows'], numbers['margin']
  longest = rows[-1]['steps']
  plateau = next((r['steps'] for r in rows if r['verdict'] == 'equivalent'), None)
  default_row = next((r for r in rows if r['steps'] == numbers['default_steps']), None)
  last = rows[-2] if len(rows) > 1 else None
  if (plateau is None or plateau == longest) and last and last['verdict'] == 'lower':
    verdict = (f'F1 still rises between {last["steps"]} and {longest} steps (ΔF1 '
               f'{last["delta"]:+.3f} [{last["delta_low"]:+.3f}, {last["delta_high"]:+.3f}], the '
               f'interval excludes 0): the curve has not flattened by {longest} steps, and how '
               'far beyond it the plateau lies is not measured here.')
  elif plateau is None or plateau == longest:
    verdict = (f'No horizon shorter than {longest} steps is within ±{margin:g} of it: the curve '
               f'has not been shown to flatten by {longest} steps (the intervals are too wide '
               'to say).')
  else:
    verdict = (f'From {plateau} steps on, validation F1 is within ±{margin:g} of the '
               f'{longest}-step runs (the whole interval of the paired difference lies inside '
               'the margin): the plateau, as declared.')
  if default_row is not None and default_row['steps'] == longest:
    default_text = (
        f'The default config trains {longest} steps, the longest horizon (about '
        f'{default_row["train_seconds"] / 60:.1f} min of training here): validation F1 '
        f'{default_row["f1"]:.3f} [{default_row["low"]:.3f}, {default_row["high"]:.3f}].')
  elif default_row is None:
    default_text = (f'The default config trains {numbers["default_steps"]} steps, which is not '
                    'one of the horizons measured.')
  else:
    default_text = (
        f'The default config trains {default_row["steps"]} steps (about '
        f'{default_row["train_seconds"] / 60:.1f} min of training here): validation F1 '
        f'{default_row["f1"]:.3f} [{default_row["low"]:.3f}, {default_row["high"]:.3f}], '
        f'{default_row["delta"]:+.3f} [{default_row["delta_low"]:+.3f}, '
        f'{default_row["delta_high"]:+.3f}] from the {longest}-step runs: '
        f'{default_row["verdict"]}.')
  table = common.table(
      ['steps', 'validation F1 [95% CI]', 'per seed', f'ΔF1 vs {longest} [95% CI]',
       f'within ±{margin:g}?', 'final train loss', 'train min'],
      [[r['steps'], f'{r["f1"]:.3f} [{r["low"]:.3f}, {r["high"]:.3f}]',
        ' / '.join(f'{v:.3f}' for v in r['seed_f1']),
        f'{r["delta"]:+.3f} [{r["delta_low"]:+.3f}, {r["delta_high"]:+.3f}]'
        if r['steps'] != longest else '—', r['verdict'] if r['steps'] != longest else 'reference',
        r['train_loss'], f'{r["train_seconds"] / 60:.1f}'] for r in rows])
  return 'Learning curve of the main job', [
      '**Question.** How many steps does `configs/default.py` need to reach its plateau?', '',
      f'**Setup.** Each horizon is a separate run of `configs/default.py` with '
      f'`num_train_steps` set to it (warm-up, cosine decay to 0 at that step), seeds '
      f'{", ".join(map(str, numbers["seeds"]))}, on `{numbers["data"]}`. Scored on the whole '
      f'validation split ({numbers["validation_images"]} images, '
      f'{numbers["positive_cells"]:,} positive cells per seed; the test scores are not read): '
      'pooled cell F1 with its 95 % bootstrap interval over images and seeds, and the paired '
      f'difference to the {longest}-step runs. Declared before the run: a horizon is on the '
      f'plateau when that interval lies inside ±{margin:g}.', '',
      table, '![learning curve](learning_curve.png)', '', '## Verdict', '', verdict, '',
      default_text]


if __name__ == '__main__':
  common.main(run)
