r"""fcn_jax at an earlier commit against the working tree, side by side: did a change slow it?

  python -m benchmarks.commits --base=7787334            # about 10 minutes on 2 cores
  python -m benchmarks.commits --base=HEAD~3 --rounds=5

The base commit is checked out into a temporary git worktree; each figure of
`benchmarks.speed` (the same training and inference functions) runs in a fresh process
of that tree and of this one, alternating, `--rounds` pairs, so every ratio is of two
runs taken minutes apart on the same machine (these shared machines drift by ±15 %
between pairs, more between sittings). Writes the "fcn_jax against an earlier commit"
section of benchmarks/README.md and benchmarks/commits.json. Both trees run in this
Python (the base must import with the installed packages).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from benchmarks import peers
from benchmarks import report
from benchmarks import speed

FLAGS = flags.FLAGS
SECTION = '## fcn_jax against an earlier commit'
JSON = os.path.join(speed.HERE, 'commits.json')
# The speed table's figures that run in seconds: training of patch_net and U-Net, inference up
# to 1024² for patch_net and at 256² for U-Net and FCN-8s.
FIGURES = tuple(f for f in speed.figures()
                if (f['kind'] == 'train' and f['model'] in ('patch_net', 'unet')) or
                (f['kind'] == 'infer' and f['size'] <= (1024 if f['model'] == 'patch_net'
                                                         else 256)))


def _git(*args: str) -> str:
  return subprocess.run(['git', *args], cwd=peers.ROOT, check=True, capture_output=True,
                        text=True).stdout.strip()


def _rate(spec: dict, tree: str) -> float | None:
  out = subprocess.run([sys.executable, '-m', 'benchmarks.speed',
                        f'--one={json.dumps({**spec, "framework": "jax"})}'],
                       capture_output=True, text=True, check=False, cwd=tree,
                       env=dict(os.environ, PYTHONPATH=tree))
  lines = [l for l in out.stdout.splitlines() if l.startswith('{')]
  return json.loads(lines[-1]).get('rate') if lines else None


def measure(base: str, rounds: int) -> dict:
  """{'base', 'head', 'rows': [{figure, base: [rates], head: [rates]}]}."""
  commit = _git('rev-parse', '--short', base)
  head = _git('rev-parse', '--short', 'HEAD') + ('+changes' if _git('status', '--porcelain',
                                                                     '--untracked-files=no')
                                                  else '')
  rows = []
  with tempfile.TemporaryDirectory() as folder:
    tree = os.path.join(folder, 'base')
    _git('worktree', 'add', '--detach', tree, commit)
    try:
      for spec in FIGURES:
        row = {**spec, 'base': [], 'head': []}
        for _ in range(rounds):
          row['base'].append(_rate(spec, tree))
          row['head'].append(_rate(spec, peers.ROOT))
        print(json.dumps(row), flush=True)
        rows.append(row)
    finally:
      _git('worktree', 'remove', '--force', tree)
  return {'base': commit, 'head': head, 'rounds': rounds, 'cpu': speed.cpu_name(),
          'rows': rows}


def write_table(result: dict) -> None:
  lines = [SECTION, '',
           f'`python -m benchmarks.commits --base={result["base"]} --rounds={result["rounds"]}` '
           f'on {result["cpu"]}: fcn_jax at {result["base"]} (base) and at {result["head"]} '
           f'(head), {result["rounds"]} pairs of fresh processes per figure, alternating. '
           'Rates are medians; the ratio head / base is per pair, median (min–max).', '',
           '| figure | model | base | head | head / base |', '|---|---|---:|---:|---:|']
  for row in result['rows']:
    what = ('training, patches/s (batch 64, 64²)' if row['kind'] == 'train'
            else f'inference {row["size"]}², Mpixel/s')
    pairs = [h / b for b, h in zip(row['base'], row['head']) if b and h]
    base = [r for r in row['base'] if r]
    head = [r for r in row['head'] if r]
    ratio = (f'{statistics.median(pairs):.2f}× ({min(pairs):.2f}–{max(pairs):.2f})' if pairs
             else 'failed')
    lines.append(f'| {what} | {row["model"]} | '
                 f'{statistics.median(base) if base else float("nan"):,.1f} | '
                 f'{statistics.median(head) if head else float("nan"):,.1f} | {ratio} |')
  report.write_section('\n'.join(lines) + '\n')


def main(argv):
  del argv
  if FLAGS.rewrite:
    with open(JSON) as f:
      write_table(json.load(f))
    return
  result = measure(FLAGS.base, FLAGS.rounds)
  with open(JSON, 'w') as f:
    json.dump(result, f, indent=1)
  write_table(result)


if __name__ == '__main__':
  flags.DEFINE_string('base', '7787334', 'The earlier commit (any git revision).')
  flags.DEFINE_integer('rounds', 3, 'Pairs of runs per figure.')
  flags.DEFINE_bool('rewrite', False, 'Only rewrite the README section from commits.json.')
  app.run(main)
