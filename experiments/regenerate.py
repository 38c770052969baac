"""Regenerates the committed experiment results, all at one commit.

  python -m experiments.regenerate --workdir=DIR [--only=nin,unet]

runs each experiment of EXPERIMENTS (or of `--only`) in turn, each in a fresh process
(`python -m experiments.<name> --workdir=DIR/<name>`, its log in `DIR/<name>.log`), and once
all have finished copies their `results.json`, `results.md` and plots into
`experiments/<name>/` of this checkout, where they are committed.

All at one commit: the code must be committed (a dirty tree is refused, as results record
their commit), and `DIR/regenerate.json` remembers the commit the regeneration started at,
so that running the command again after an interruption, or in the next sitting, continues
it (each experiment resumes its finished and checkpointed runs) and refuses a checkout that
has moved on. Run it from a `git worktree` of the chosen commit, so that work on the main
checkout cannot change the code under it, and copy the results across when it is done.

EXPERIMENTS is in order of cost, cheapest first; the full set takes the better part of a day
on a 2-core CPU (see README, "Experiments").
"""

import json
import os
import shutil
import subprocess
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags

from fcn_jax import errors
from fcn_jax import provenance

EXPERIMENTS = ('overfeat', 'gap_vs_dense', 'padding', 'digits_canvas', 'nin', 'unet', 'scaling',
               'fcn_skips', 'learning_curve')
OUTPUTS = ('results.json', 'results.md')  # and every .png beside them
RESULTS = os.path.join(provenance.ROOT, 'experiments')


def run_experiment(name: str, workdir: str, log: str) -> int:
  """`python -m experiments.<name> --workdir=<workdir>` in a fresh process; its exit status."""
  with open(log, 'a') as f:
    return subprocess.run([sys.executable, '-m', f'experiments.{name}', f'--workdir={workdir}'],
                          cwd=provenance.ROOT, stdout=f, stderr=subprocess.STDOUT).returncode


def regenerate(names: Sequence[str], workdir: str, source: dict, results: str = RESULTS,
               run: Callable[[str, str, str], int] = run_experiment) -> list[str]:
  """Runs `names` into `workdir/<name>` and copies their outputs into `results/<name>/`;
  the names copied. `source` is `provenance.source()` of the code that runs them.

  Raises UserError for a dirty tree or a workdir regenerating another commit, and
  RuntimeError naming the log when an experiment fails (nothing is copied then: the finished
  ones stay in `workdir`, and running again resumes them).
  """
  unknown = sorted(set(names) - set(EXPERIMENTS))
  if unknown:
    raise errors.UserError(f'unknown experiments {unknown}; choose from {list(EXPERIMENTS)}')
  if source['dirty'] or source['commit'] == 'unknown':
    raise errors.UserError('results must name a clean commit: commit (or stash) the changes '
                            'first, or run from a git worktree of the commit')
  os.makedirs(workdir, exist_ok=True)
  state_path = os.path.join(workdir, 'regenerate.json')
  if os.path.exists(state_path):
    with open(state_path) as f:
      started = json.load(f)['commit']
    if started != source['commit']:
      raise errors.UserError(
          f'{workdir} regenerates commit {started[:12]}, this checkout is at '
          f'{source["commit"][:12]}: check out {started[:12]} (a git worktree) or use a new '
          '--workdir')
  else:
    with open(state_path, 'w') as f:
      json.dump({'commit': source['commit'], 'date': source['date']}, f)
  for name in names:
    log = os.path.join(workdir, f'{name}.log')
    if run(name, os.path.join(workdir, name), log) != 0:
      raise RuntimeError(f'experiment {name} failed: see {log}')
  # Only now, when all have run: a result copied earlier would change tracked files of this
  # checkout, so the experiments after it (and a resumed regeneration) would record a dirty tree.
  copied = []
  for name in names:
    out, target = os.path.join(workdir, name), os.path.join(results, name)
    for file in sorted(os.listdir(out)):
      if file in OUTPUTS or file.endswith('.png'):
        shutil.copyfile(os.path.join(out, file), os.path.join(target, file))
    copied.append(name)
  return copied


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  names = flags.FLAGS.only or list(EXPERIMENTS)
  try:
    done = regenerate(names, flags.FLAGS.workdir, provenance.source())
  except errors.UserError as e:
    sys.exit(f'error: {e}')
  print(f'regenerated {", ".join(done)} into {RESULTS}: review and commit them')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Where the experiments run (resumable).')
  flags.DEFINE_list('only', [], f'A subset of {",".join(EXPERIMENTS)}, in this order.')
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
