"""Regenerates the committed experiment results, all at one commit.

  python -m experiments.regenerate --workdir=DIR [--only=nin,unet] [--into=CHECKOUT/experiments]

runs each experiment of EXPERIMENTS (or of `--only`) in turn, each in a fresh process
(`python -m experiments.<name> --workdir=DIR/<name>`, its log in `DIR/<name>.log`), and
copies its `results.json`, `results.md`, plots and kept parts (`parts/*.json`, see
`experiments.common.Record.part`) into `<into>/<name>/`, where they are committed.

All at one commit: the code must be committed (a dirty tree is refused, as results record
their commit), and `DIR/regenerate.json` remembers the commit the regeneration started at,
so that running the command again after an interruption continues it (each experiment
resumes its finished and checkpointed runs) and refuses a checkout that has moved on.

Run it from a `git worktree` of the chosen commit, so that work on the main checkout cannot
change the code under it, with `--into` the main checkout's `experiments/`. Then:
- each experiment's outputs are copied there as soon as it finishes, and each part as soon as
  it is measured (checked every minute), ready to commit;
- a later sitting on a fresh machine (a new DIR) starts from the parts committed there that
  this commit measured, so an experiment longer than a sitting (fcn_skips, learning_curve:
  a part per seed or per run) is finished piece by piece, all at one commit.
Without `--into` the results go to this checkout's `experiments/`, once all have finished (a
result copied earlier would change tracked files, so the experiments after it, and a resumed
regeneration, would record a dirty tree).

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


POLL_SECONDS = 60


def run_experiment(name: str, workdir: str, log: str, poll: Callable[[], None]) -> int:
  """`python -m experiments.<name> --workdir=<workdir>` in a fresh process; its exit status.
  `poll()` is called every POLL_SECONDS while it runs."""
  with open(log, 'a') as f:
    process = subprocess.Popen(
        [sys.executable, '-m', f'experiments.{name}', f'--workdir={workdir}'],
        cwd=provenance.ROOT, stdout=f, stderr=subprocess.STDOUT)
    while True:
      try:
        return process.wait(timeout=POLL_SECONDS)
      except subprocess.TimeoutExpired:
        poll()


def _parts(folder: str) -> dict[str, str]:
  """{file name: commit} of the kept parts in `folder/parts`."""
  found = {}
  if os.path.isdir(os.path.join(folder, 'parts')):
    for file in sorted(os.listdir(os.path.join(folder, 'parts'))):
      if file.endswith('.json'):
        with open(os.path.join(folder, 'parts', file)) as f:
          found[file] = json.load(f)['commit']
  return found


def _copy_parts(source: str, target: str, commit: str | None = None) -> None:
  """Copies the parts of `source/parts` (those measured at `commit`, if given) into
  `target/parts`, replacing same-named ones."""
  wanted = [f for f, c in _parts(source).items() if commit in (None, c)]
  if wanted:
    os.makedirs(os.path.join(target, 'parts'), exist_ok=True)
  for file in wanted:
    shutil.copyfile(os.path.join(source, 'parts', file), os.path.join(target, 'parts', file))


def _copy_outputs(out: str, target: str) -> None:
  """An experiment's outputs and parts into `target`; parts of other commits are removed."""
  os.makedirs(target, exist_ok=True)
  for file in sorted(os.listdir(out)):
    if file in OUTPUTS or file.endswith('.png'):
      shutil.copyfile(os.path.join(out, file), os.path.join(target, file))
  for file in set(_parts(target)) - set(_parts(out)):
    os.remove(os.path.join(target, 'parts', file))
  _copy_parts(out, target)


def regenerate(names: Sequence[str], workdir: str, source: dict, results: str = RESULTS,
               run: Callable[[str, str, str, Callable[[], None]], int] = run_experiment
               ) -> list[str]:
  """Runs `names` into `workdir/<name>` and copies their outputs into `results/<name>/`;
  the names copied. `source` is `provenance.source()` of the code that runs them. Parts kept
  in `results/<name>/parts` that this commit measured are copied into `workdir` first.

  `results` inside this checkout: copied once all have run. Elsewhere: each experiment's
  outputs when it finishes, its parts while it runs.

  Raises UserError for a dirty tree or a workdir regenerating another commit, and
  RuntimeError naming the log when an experiment fails (the ones that finished before it are
  copied only if `results` lies outside this checkout; all stay in `workdir`, and running
  again resumes them).
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
  inside = os.path.realpath(results).startswith(os.path.realpath(provenance.ROOT) + os.sep)
  copied = []
  for name in names:
    out, target = os.path.join(workdir, name), os.path.join(results, name)
    _copy_parts(target, out, source['commit'])
    log = os.path.join(workdir, f'{name}.log')
    status = run(name, out, log, (lambda: None) if inside else
                 (lambda: _copy_parts(out, target)))
    if not inside:
      _copy_parts(out, target)  # a part measured before a failure is kept
    if status != 0:
      raise RuntimeError(f'experiment {name} failed: see {log}')
    if not inside:
      _copy_outputs(out, target)
      copied.append(name)
  # Into this checkout only now, when all have run: a result copied earlier would change its
  # tracked files, so the experiments after it (and a resumed regeneration) would record a
  # dirty tree.
  for name in names if inside else ():
    _copy_outputs(os.path.join(workdir, name), os.path.join(results, name))
    copied.append(name)
  return copied


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  names = flags.FLAGS.only or list(EXPERIMENTS)
  try:
    done = regenerate(names, flags.FLAGS.workdir, provenance.source(), flags.FLAGS.into)
  except errors.UserError as e:
    sys.exit(f'error: {e}')
  print(f'regenerated {", ".join(done)} into {flags.FLAGS.into}: review and commit them')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Where the experiments run (resumable).')
  flags.DEFINE_list('only', [], f'A subset of {",".join(EXPERIMENTS)}, in this order.')
  flags.DEFINE_string('into', RESULTS, 'The experiments/ folder that receives the results and '
                      'parts (and gives the parts this commit measured): another checkout\'s '
                      'main one, when running from a worktree.')
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
