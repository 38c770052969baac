r"""Which CPU strategy pays on this JAX: one device per core or one device, and each rewrite of
`fcn_jax/lowering.py` on or off, measured side by side on whole training steps and predict calls.

  python -m benchmarks.cpu_strategy               # every configuration, 2 rounds (~25 min, 2 cores)
  python -m benchmarks.cpu_strategy --rounds=1 --only=all,one_device

Each configuration runs in a fresh process (`FCN_JAX_CPU_DEVICES` set for it; a rewrite is turned
off there by putting XLA's own op in its place), the configurations alternate within each round,
and every figure is reported as a ratio to the `all` configuration of the same round (> 1: that
configuration is faster). The workloads are `benchmarks.speed`'s: training at batch 64 of 64x64x3
(Adam, placed as `fcn_jax.train` does) and `inference.predict` of one image. Rewrites the "CPU
strategy" section of benchmarks/README.md and writes benchmarks/cpu_strategy.json.
"""

import json
import os
import platform
import statistics
import subprocess
import sys

from absl import app
from absl import flags

from benchmarks import report
from benchmarks import speed

FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.abspath(__file__))
SECTION = '## CPU strategy'
WORK = (('train', 'patch_net', 64), ('train', 'unet', 64), ('train', 'fcn8s', 64),
        ('infer', 'patch_net', 256), ('infer', 'patch_net', 1024), ('infer', 'patch_net', 4096),
        ('infer', 'unet', 1024), ('infer', 'fcn8s', 1024))
# name: (devices, the rewrites turned off, what it tests)
CONFIGS = {
    'all': (None, (), 'every rewrite, one device per core (the baseline)'),
    'one_device': (1, (), 'every rewrite, one CPU device'),
    'no_pointwise': (None, ('pointwise',), '1x1 convs as XLA convs, not matmuls'),
    'no_four_channels': (None, ('four_channels',), 'RGB not padded to 4 channels'),
    'no_tap_conv': (None, ('tap_conv',), "strided convs' gradients by XLA's autodiff"),
    'no_subpixel': (None, ('subpixel',), 'transposed convs as input-dilated XLA convs'),
    'no_tiling_pool': (None, ('tiling_pool',), 'max pools as reduce_window'),
    'none': (None, ('pointwise', 'four_channels', 'tap_conv', 'subpixel', 'tiling_pool'),
             'no rewrite, one device per core'),
    'none_one_device': (1, ('pointwise', 'four_channels', 'tap_conv', 'subpixel',
                            'tiling_pool'), 'no rewrite, one CPU device: plain XLA'),
}


def _turn_off(rewrites) -> None:
  """Puts XLA's own op where each named rewrite of fcn_jax.lowering is (this process only)."""
  from fcn_jax import lowering as lo  # pylint: disable=g-import-not-at-top
  patches = {
      'pointwise': ('_pointwise', lambda x, k: lo._xla_conv(x, k, (1, 1), ((0, 0), (0, 0)))),
      'four_channels': ('_four_channels', lambda x, k: (x, k)),
      'tap_conv': ('_tap_conv', lambda x, k, s, p: lo._xla_conv(x, k, s, p)),
      'subpixel': ('_subpixel_conv_transpose', lo._xla_conv_transpose),
      'tiling_pool': ('_tiling_max_pool', lambda x, w, p: lo._xla_max_pool(x, w, w, p)),
  }
  for name in rewrites:
    setattr(lo, *patches[name])


def measure(config: str) -> dict:
  """In the child: every workload under one configuration; rates by workload."""
  import jax  # pylint: disable=g-import-not-at-top
  _turn_off(CONFIGS[config][1])
  out = {'config': config, 'devices': jax.local_device_count(), 'jax': jax.__version__}
  for kind, name, size in WORK:
    spec = {'kind': kind, 'model': name, 'size': size, 'framework': 'jax'}
    if kind == 'train':
      spec.update(batch=64, steps=3 if name == 'fcn8s' else 5, repeats=3)
    else:
      spec.update(repeats=3 if size >= 4096 else 5)
    row = speed.measure(spec)
    out[f'{kind} {name} {size}'] = row.get('rate', row.get('error'))
  return out


def _child(config: str) -> dict:
  devices = CONFIGS[config][0]
  env = dict(os.environ)
  if devices:
    env['FCN_JAX_CPU_DEVICES'] = str(devices)
  out = subprocess.run([sys.executable, '-m', 'benchmarks.cpu_strategy', f'--one={config}'],
                       capture_output=True, text=True, check=False, env=env,
                       cwd=os.path.dirname(HERE))
  lines = [l for l in out.stdout.splitlines() if l.startswith('{')]
  if not lines:
    raise RuntimeError(f'{config}: {out.stderr.strip()[-1500:]}')
  return json.loads(lines[-1])


def main(argv):
  del argv
  if FLAGS.one:
    print(json.dumps(measure(FLAGS.one)))
    return
  names = FLAGS.only.split(',') if FLAGS.only else list(CONFIGS)
  if 'all' not in names:
    names.insert(0, 'all')
  rows = []
  for r in range(FLAGS.rounds):
    for config in names:
      row = _child(config)
      row['round'] = r
      rows.append(row)
      print(json.dumps(row), flush=True)
  keys = [f'{k} {n} {s}' for k, n, s in WORK]
  import jax  # pylint: disable=g-import-not-at-top
  lines = [SECTION, '',
           f'`python -m benchmarks.cpu_strategy --rounds={FLAGS.rounds}` on {speed.cpu_name()}, Python '
           f'{platform.python_version()}, jax {jax.__version__}. Each configuration is a fresh '
           'process; the configurations alternate within a round. Cells: the configuration\'s '
           'rate over the `all` configuration\'s of the same round, median over the rounds '
           '(min–max); > 1 means faster than `all`. The `all` row gives its rates (training: '
           'patches/s, batch 64 of 64²; inference: Mpixel/s of `inference.predict`, batch 1).',
           '', '| configuration | devices | ' + ' | '.join(keys) + ' |',
           '|---|---:|' + '---:|' * len(keys)]
  for config in names:
    mine = [r for r in rows if r['config'] == config]
    cells = []
    for key in keys:
      pairs = [(m[key], b[key]) for m in mine for b in rows
               if b['config'] == 'all' and b['round'] == m['round']]
      pairs = [(a, b) for a, b in pairs if isinstance(a, float) and isinstance(b, float)]
      if not pairs:
        cells.append('n/a')
      elif config == 'all':
        cells.append(f'{statistics.median(a for a, _ in pairs):,.1f}')
      else:
        ratios = [a / b for a, b in pairs]
        cell = f'{statistics.median(ratios):.2f}×'
        if len(ratios) > 1:
          cell += f' ({min(ratios):.2f}–{max(ratios):.2f})'
        cells.append(cell)
    lines.append(f'| `{config}`: {CONFIGS[config][2]} | {mine[0]["devices"]} | ' +
                 ' | '.join(cells) + ' |')
  text = '\n'.join(lines) + '\n'
  print(text)
  with open(os.path.join(HERE, 'cpu_strategy.json'), 'w') as f:
    json.dump(rows, f, indent=1)
  report.write_section(text)


if __name__ == '__main__':
  flags.DEFINE_integer('rounds', 2, 'Rounds; every configuration runs once per round.')
  flags.DEFINE_string('only', None, 'Comma-separated configurations (`all` is always added).')
  flags.DEFINE_string('one', None, 'Internal: measure one configuration and print it.')
  app.run(main)
