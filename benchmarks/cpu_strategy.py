r"""Which CPU strategy pays on this JAX: one CPU device or one device per core, oneDNN's
convolutions (`fcn_jax.onednn`) or XLA's, and each rewrite of `fcn_jax/lowering.py` on or off,
measured side by side on whole training steps and predict calls.

  python -m benchmarks.cpu_strategy               # every configuration, 3 rounds (~20 min, 2 cores)
  python -m benchmarks.cpu_strategy --rounds=1 --only=base,per_core

Each configuration runs in a fresh process (`JAX_NUM_CPU_DEVICES` set for it; a rewrite is turned
off there by putting XLA's own op in its place). The configurations alternate within each round,
in an order rotated from round to round (the first process of a round is not always the same),
and every figure is reported as a ratio to the `base` configuration of the same round (> 1: that
configuration is faster). `base` is what fcn_jax does: one CPU device, the lowering policy
'auto' (oneDNN's convolutions). The workloads are `benchmarks.speed`'s: training at batch 64 of
64x64x3 (Adam, placed as `fcn_jax.train` does) and `inference.predict` of one image. Rewrites the "CPU strategy" section
of benchmarks/README.md and writes benchmarks/cpu_strategy.json (`--rewrite`: only the section,
from that file).
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
JSON = os.path.join(HERE, 'cpu_strategy.json')
WORK = (('train', 'patch_net', 64), ('train', 'unet', 64), ('train', 'fcn8s', 64),
        ('infer', 'patch_net', 256), ('infer', 'patch_net', 1024), ('infer', 'patch_net', 4096),
        ('infer', 'unet', 1024), ('infer', 'fcn8s', 1024))
# name: (CPU devices, lowering policy, the rewrites turned off, the workload kinds it runs,
# what it tests)
CONFIGS = {
    'base': (1, 'auto', (), ('train', 'infer'),
             "one CPU device, oneDNN's convolutions (what fcn_jax does)"),
    'per_core': (2, 'auto', (), ('train',), 'one CPU device per core, the batch split over them'),
    'cpu': (1, 'cpu', (), ('train', 'infer'),
            "XLA's convolutions with every rewrite (fcn_jax without the oneDNN extension)"),
    'no_strided_tap_conv': (1, 'cpu', ('strided_tap_conv',), ('train', 'infer'),
                            "`cpu`, strided convs' gradients by XLA's autodiff"),
    'no_subpixel': (1, 'cpu', ('subpixel',), ('train', 'infer'),
                    '`cpu`, transposed convs as input-dilated XLA convs'),
    'none': (1, 'xla', (), ('train', 'infer'), 'no rewrite: plain XLA'),
}


def _turn_off(rewrites) -> None:
  """Puts XLA's own op where each named rewrite of fcn_jax.lowering is (this process only)."""
  from fcn_jax import lowering as lo  # pylint: disable=g-import-not-at-top
  patches = {
      'strided_tap_conv': ('conv', lambda x, k, s, p, d=(1, 1), g=1, policy='auto':
                           lo._xla_conv(x, k, s, p, d, g)),
      'subpixel': ('_subpixel_conv_transpose', lambda x, k, s, p, op, policy='cpu':
                   lo._xla_conv_transpose(x, k, s, p, op)),
  }
  for name in rewrites:
    setattr(lo, *patches[name])


def measure(config: str) -> dict:
  """In the child: every workload under one configuration; rates by workload."""
  import jax  # pylint: disable=g-import-not-at-top
  _, policy, rewrites, kinds, _ = CONFIGS[config]
  _turn_off(rewrites)
  out = {'config': config, 'devices': jax.local_device_count(), 'jax': jax.__version__}
  for kind, name, size in WORK:
    if kind not in kinds:
      continue
    spec = {'kind': kind, 'model': name, 'size': size, 'framework': 'jax', 'lowering': policy}
    if kind == 'train':
      spec.update(batch=64, steps=3 if name == 'fcn8s' else 5, repeats=3)
    else:
      spec.update(repeats=3 if size >= 4096 else 5)
    row = speed.measure(spec)
    out[f'{kind} {name} {size}'] = row.get('rate', row.get('error'))
  return out


def _child(config: str) -> dict:
  env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(CONFIGS[config][0]))
  env.pop('XLA_FLAGS', None)
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
  if FLAGS.rewrite:
    with open(JSON) as f:
      write_table(json.load(f))
    return
  names = FLAGS.only.split(',') if FLAGS.only else list(CONFIGS)
  if 'base' not in names:
    names.insert(0, 'base')
  rows = []
  for r in range(FLAGS.rounds):
    for config in names[r % len(names):] + names[:r % len(names)]:
      row = _child(config)
      row['round'] = r
      rows.append(row)
      print(json.dumps(row), flush=True)
  with open(JSON, 'w') as f:
    json.dump(rows, f, indent=1)
  write_table(rows)


def write_table(rows: list[dict]) -> None:
  """The "CPU strategy" section of benchmarks/README.md from the measured rows."""
  names = list(dict.fromkeys(r['config'] for r in rows))
  rounds = len({r['round'] for r in rows})
  keys = [f'{k} {n} {s}' for k, n, s in WORK]
  lines = [SECTION, '',
           f'`python -m benchmarks.cpu_strategy --rounds={rounds}` on {speed.cpu_name()}, Python '
           f'{platform.python_version()}, jax {rows[0]["jax"]}. Each configuration is a fresh '
           'process; the configurations alternate within a round, in an order rotated each round. '
           'Cells: the configuration\'s rate over the `base` configuration\'s of the same '
           'round, median over the rounds (min–max); > 1 means faster than `base`. The `base` '
           'row gives its rates (training: '
           'patches/s, batch 64 of 64²; inference: Mpixel/s of `inference.predict`, batch 1).',
           '', '| configuration | devices | ' + ' | '.join(keys) + ' |',
           '|---|---:|' + '---:|' * len(keys)]
  for config in names:
    mine = [r for r in rows if r['config'] == config]
    cells = []
    for key in keys:
      pairs = [(m[key], b[key]) for m in mine for b in rows
               if b['config'] == 'base' and b['round'] == m['round'] and key in m]
      pairs = [(a, b) for a, b in pairs if isinstance(a, float) and isinstance(b, float)]
      if not pairs:
        cells.append('n/a')
      elif config == 'base':
        cells.append(f'{statistics.median(a for a, _ in pairs):,.1f}')
      else:
        ratios = [a / b for a, b in pairs]
        cell = f'{statistics.median(ratios):.2f}×'
        if len(ratios) > 1:
          cell += f' ({min(ratios):.2f}–{max(ratios):.2f})'
        cells.append(cell)
    lines.append(f'| `{config}`: {CONFIGS[config][4]} | {mine[0]["devices"]} | ' +
                 ' | '.join(cells) + ' |')
  text = '\n'.join(lines) + '\n'
  print(text)
  report.write_section(text)


if __name__ == '__main__':
  flags.DEFINE_integer('rounds', 3, 'Rounds; every configuration runs once per round.')
  flags.DEFINE_string('only', None, 'Comma-separated configurations (`base` is always added).')
  flags.DEFINE_bool('rewrite', False, 'Only rewrite the README section from cpu_strategy.json.')
  flags.DEFINE_string('one', None, 'Internal: measure one configuration and print it.')
  app.run(main)
