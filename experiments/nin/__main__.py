r"""Network in Network vs the same trunk with a dense head: parameters and accuracy.

  python -m experiments.nin --workdir=/tmp/exp_nin [--quick]

Claim (Lin et al., 2014): replacing the fully connected classifier by a 1x1
conv to the classes + global average pooling removes most parameters without
losing accuracy (the paper: it also regularizes). Both nets here are the same
mlpconv trunk (`configs/nin_digits.py`: three mlpconv blocks, 8 convs);
`head='dense'` ends it with flatten + dense instead. Trained on 28x28 digits
with the same schedule and seeds.
"""

import os

import numpy as np

from configs import nin_digits
from experiments import common
from fcn_jax import geometry


def _config(head: str, quick: bool, seed: int):
  config = nin_digits.get_config()
  config.seed = seed
  if head == 'dense':
    config.model.head = 'dense'
    config.model.input_size = (28, 28)
    config.eval_sizes = ((28, 28),)
  if quick:
    common.quick_training(config, steps=30)
    config.max_eval_images = 20
  return config


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else (0, 1)
  rows, images, labels = [], None, None
  for seed in seeds:
    for head in ('gap', 'dense'):
      config = _config(head, quick, seed)
      model = common.train_run(config, os.path.join(workdir, f'{head}_seed{seed}'))
      if images is None:
        images, labels = common.load_split(config.data, 'test')
        if quick:
          images, labels = images[:256], labels[:256]
      g = geometry.of(model)
      head_params = (geometry.count_params(model.dense) if head == 'dense' else
                     geometry.count_params([l for l in model.mlpconv.layers
                                            if hasattr(l, 'kernel')][-1]))
      rows.append({'head': head, 'seed': seed, 'params': g.params, 'head_params': head_params,
                   'accuracy': common.accuracy(model, images, labels)})

  def stat(head, key):
    return [r[key] for r in rows if r['head'] == head]

  config = _config('gap', quick, 0)
  acc = {h: float(np.mean(stat(h, 'accuracy'))) for h in ('gap', 'dense')}
  half = {h: float(np.ptp(stat(h, 'accuracy')) / 2) for h in ('gap', 'dense')}
  params = {h: stat(h, 'params')[0] for h in ('gap', 'dense')}
  heads = {h: stat(h, 'head_params')[0] for h in ('gap', 'dense')}
  diff = acc['gap'] - acc['dense']
  noise = max(half.values())
  sections = [
      '**Claim.** A 1×1 conv + global-average head replaces the fully connected classifier with '
      'a fraction of the parameters and no loss of accuracy.', '',
      f'**Setup.** `configs/nin_digits.py` trunk: mlpconv blocks {tuple(map(tuple, config.model.widths))}, '
      f'kernels {tuple(config.model.kernel_sizes)}, 3×3/2 max-pool between blocks; heads: '
      '(NiN) 1×1 conv to 10 classes + global average, or (ablation) flatten + dense to 10. '
      f'{config.num_train_steps} steps, batch {config.batch_size}, {config.optimizer.name} '
      f'{config.optimizer.learning_rate}; seeds {seeds}; {len(images)} test digits.', '',
      common.table(['head', 'parameters', 'head parameters', 'test accuracy (mean ± half range)'],
                   [[('1×1 conv + GAP (NiN)' if h == 'gap' else 'flatten + dense'),
                     f'{params[h]:,}', f'{heads[h]:,}', f'{acc[h]:.4f} ± {half[h]:.4f}']
                    for h in ('gap', 'dense')]),
      '## Verdict', '',
      f'NiN uses {params["gap"] / params["dense"]:.0%} of the dense-head net\'s parameters '
      f'(head {heads["gap"]:,} vs {heads["dense"]:,}). Accuracy difference (NiN − dense) '
      f'{diff:+.4f} with a seed spread of ±{noise:.4f}: ' + (
          'within noise — the claim holds here.' if abs(diff) <= max(2 * noise, 0.005) else
          'NiN is better here.' if diff > 0 else
          'the dense head is better here, so the "no loss" part does not hold on this task.'),
  ]
  numbers = {'rows': rows}
  common.write_results(workdir, 'Network in Network vs a dense head', sections, numbers)
  return numbers


if __name__ == '__main__':
  common.main(run)
