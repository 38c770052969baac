r"""Hyperparameter sweeps with Optuna: trials are ordinary training runs, N at a time.

  python -m fcn_jax.sweep --sweep=configs/sweeps/lr_padding.py --workdir=/tmp/sweep [--workers=2]
  python -m fcn_jax.sweep --sweep=... --workdir=... --storage=postgresql://user@host/db  # many hosts
  python -m fcn_jax.sweep --sweep=... --workdir=... --report  # rewrite results.md only

A sweep file (`configs/sweeps/<name>.py`) defines `get_sweep()` returning a
dict (see `SweepSpec`): the base config, fixed overrides, the search space over
config fields, the objective metric and direction, the sampler and the trial
budget, and optionally a pruner.

Each trial is a separate process, `python -m fcn_jax.train --config=<base>
--config.<field>=<value> ... --workdir=DIR/trial_<k>`, so a crash, a
non-finite loss or an out-of-memory kill stays inside its trial, which is
recorded as failed with its error. While a trial runs its worker reads the
evaluations in the trial's `metrics.jsonl` and reports them to Optuna, whose
pruner may stop it early. The study lives in an Optuna storage: SQLite
(`DIR/study.db`) by default; a PostgreSQL URL lets workers on many machines
share one study (run the same command on every host; start the first host
first, it enqueues a grid). Re-running the command resumes the study: finished
trials are not redone; a trial whose worker died (no heartbeat for
`--grace_period` seconds) is failed and retried with the same parameters in
the same trial directory, so its training resumes from its last checkpoint.

At the end (or with `--report`), `DIR/results.md` gets a sorted table of the
trials, `DIR/best_config.py` the best trial as a runnable config, and PNG plots
of the metric against each parameter and over the trials.
"""

import dataclasses
import datetime
import importlib
import importlib.util
import itertools
import json
import math
import os
import subprocess
import sys
import time
import warnings
from typing import Any, Sequence

import numpy as np
import optuna
from absl import app
from absl import flags

from fcn_jax import errors
from fcn_jax import figures
from fcn_jax import files
from fcn_jax import provenance


FLAGS = flags.FLAGS
# Heartbeats and retries of dead trials are marked experimental in Optuna; they are the point here.
warnings.filterwarnings('ignore', category=optuna.exceptions.ExperimentalWarning)
MAX_RETRY = 2  # times a dead trial is retried
SAMPLERS = ('grid', 'random', 'tpe')


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """What `get_sweep()` returns (as a dict with these keys).

  `params` maps a config field (dotted, e.g. 'optimizer.learning_rate') to a
  list of values (a grid axis / categorical choice) or to a dict
  `{'low': a, 'high': b, 'log': bool, 'int': bool}` (a range). `metric` is a
  key of the last evaluation record of `split` in `metrics.jsonl` (e.g.
  'validation/64x64/f1', or 'train_loss'), or 'mean:<name>' for the mean of
  `<split>/*/<name>` over the evaluation sizes. `split` is the validation split
  by default: trials are chosen on it, and the test split, which every trial
  also scores at its end, stays for reporting the chosen one.
  """
  name: str
  base: str  # config file, e.g. 'configs/default.py' or 'configs/default.py:runlocal'
  params: dict[str, Any]
  metric: str
  direction: str = 'maximize'
  sampler: str = 'grid'
  trials: int | None = None  # budget (grid: the grid's size)
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # fixed config changes
  pruner: dict[str, Any] | None = None  # {'name': 'median', 'startup_trials': 2, 'warmup_steps': 0}
  seed: int = 0  # sampler seed
  split: str = 'validation'  # the split whose evaluations `metric` reads

  def grid(self) -> list[dict[str, Any]]:
    keys = sorted(self.params)
    return [dict(zip(keys, values)) for values in itertools.product(*(self.params[k]
                                                                      for k in keys))]

  @property
  def budget(self) -> int:
    return len(self.grid()) if self.sampler == 'grid' else int(self.trials)


def load_sweep(path: str) -> SweepSpec:
  """Reads and checks a sweep file; a mistake is a `ValueError` saying what is valid."""
  if not os.path.isfile(path):
    raise errors.ConfigError(f'no sweep file {path!r} (sweeps live in configs/sweeps/<name>.py)')
  module_spec = importlib.util.spec_from_file_location('_sweep', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise errors.ConfigError(f'{path} must define get_sweep() returning a dict')
  fields = {f.name for f in dataclasses.fields(SweepSpec)} - {'name'}
  raw = dict(module.get_sweep())
  unknown = sorted(set(raw) - fields)
  if unknown:
    raise errors.ConfigError(f'{path}: unknown sweep field(s) {unknown}; valid: {sorted(fields)}')
  spec = SweepSpec(name=os.path.splitext(os.path.basename(path))[0], **raw)
  if spec.direction not in ('maximize', 'minimize'):
    raise errors.ConfigError(
        f"{path}: direction must be 'maximize' or 'minimize', got {spec.direction!r}")
  if spec.sampler not in SAMPLERS:
    raise errors.ConfigError(f'{path}: sampler must be one of {SAMPLERS}, got {spec.sampler!r}')
  for field, space in spec.params.items():
    if isinstance(space, dict):
      if spec.sampler == 'grid':
        raise errors.ConfigError(f'{path}: {field} is a range; a grid sweep needs a list of values')
      if not {'low', 'high'} <= set(space) <= {'low', 'high', 'log', 'int'}:
        raise errors.ConfigError(
            f"{path}: range {field} needs 'low' and 'high' (and optional 'log', "
            f"'int'), got {sorted(space)}")
    elif not isinstance(space, (list, tuple)) or not space:
      raise errors.ConfigError(
          f'{path}: {field} must be a non-empty list of values or a range dict')
  if spec.sampler != 'grid' and not spec.trials:
    raise errors.ConfigError(f'{path}: a {spec.sampler} sweep needs a trial budget (trials=N)')
  config_path = spec.base.split(':')[0]
  if not os.path.isfile(config_path):
    raise errors.ConfigError(f'{path}: base config {config_path!r} does not exist')
  if spec.metric.split('/')[0] in ('validation', 'test') and (
      spec.metric.split('/')[0] != spec.split):
    raise errors.ConfigError(f"{path}: metric {spec.metric!r} is not of split {spec.split!r}; "
                             "use 'mean:<name>' or a key of that split")
  if spec.split == 'validation':
    module, arg = _config_module(spec.base)
    base = importlib.import_module(module).get_config(arg)
    if not spec.overrides.get('data.validation_split', base.data.get('validation_split')):
      raise errors.ConfigError(
          f'{path}: {spec.base} has no data.validation_split to choose trials on; '
          "set one in overrides (e.g. a slice such as 'train[90%:]')")
  return spec


# --------------------------------------------------------------------------
# One trial.


def _suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
  values = {}
  for field, space in sorted(spec.params.items()):
    if isinstance(space, dict):
      if space.get('int'):
        values[field] = trial.suggest_int(field, space['low'], space['high'],
                                          log=space.get('log', False))
      else:
        values[field] = trial.suggest_float(field, space['low'], space['high'],
                                            log=space.get('log', False))
    else:
      values[field] = trial.suggest_categorical(field, list(space))
  return values


def _flag(field: str, value: Any) -> str:
  text = value if isinstance(value, str) else repr(value)
  return f'--config.{field}={text}'


def train_command(spec: SweepSpec, values: dict[str, Any], workdir: str) -> list[str]:
  """The training command of a trial: the base config with the overrides and the values."""
  return ([sys.executable, '-m', 'fcn_jax.train', f'--config={spec.base}',
           f'--workdir={workdir}'] +
          [_flag(k, v) for k, v in {**spec.overrides, **values}.items()])


def read_metric(workdir: str, metric: str, split: str = 'validation') -> list[tuple[int, float]]:
  """`(step, value)` of `metric` in every evaluation record of `split` (or, for
  'train_loss', every training record) of a run's `metrics.jsonl`."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  found = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:  # a line being written
        continue
      if metric.startswith('mean:'):
        values = [v for k, v in record.items() if k.startswith(split + '/') and
                  k.endswith('/' + metric[5:])]
        if values:
          found.append((record['step'], float(np.mean(values))))
      elif metric in record and (metric != 'train_loss' or 'steps_per_sec' in record):
        found.append((record['step'], float(record[metric])))
  return found


class TrialFailed(Exception):
  """The training process of a trial failed; the message is its error."""


STARTED = 'objective_started'  # user attribute: the number of the trial whose objective began


def run_trial(trial: optuna.Trial, spec: SweepSpec, workdir: str) -> float:
  """Runs one trial as a training process, reporting evaluations for pruning."""
  frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
  retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
  number = retried if retried is not None else trial.number
  trial_dir = os.path.join(workdir, f'trial_{number:03d}')  # a retry resumes the same run
  trial.set_user_attr(STARTED, trial.number)  # see fail_orphaned_trials
  values = _suggest(trial, spec)
  trial.set_user_attr('workdir', trial_dir)
  t0 = time.time()
  os.makedirs(trial_dir, exist_ok=True)
  with open(os.path.join(trial_dir, 'train.log'), 'ab') as log:
    process = subprocess.Popen(train_command(spec, values, trial_dir), stdout=log,
                               stderr=subprocess.STDOUT)
    reported = set()
    try:
      while process.poll() is None:
        time.sleep(0.5)
        for step, value in read_metric(trial_dir, spec.metric, spec.split):
          if step not in reported:
            reported.add(step)
            trial.report(value, step)
            if trial.should_prune():
              process.kill()
              process.wait()
              trial.set_user_attr('seconds', time.time() - t0)
              trial.set_user_attr('steps', step)
              raise optuna.TrialPruned(f'pruned at step {step} ({spec.metric} = {value:.4g})')
    finally:
      if process.poll() is None:
        process.kill()
        process.wait()
  trial.set_user_attr('seconds', time.time() - t0)
  found = read_metric(trial_dir, spec.metric, spec.split)
  if found:
    trial.set_user_attr('steps', found[-1][0])
  if process.returncode != 0:
    with open(os.path.join(trial_dir, 'train.log'), errors='replace') as f:
      lines = [l.strip() for l in f if l.strip()]
    errors = [l for l in lines if l.startswith('error:')] or lines[-1:]
    message = errors[-1] if errors else f'exit code {process.returncode}'
    trial.set_user_attr('error', message[:500])
    raise TrialFailed(message)
  if not found or not math.isfinite(found[-1][1]):
    message = f'no finite {spec.metric!r} in {trial_dir}/metrics.jsonl'
    trial.set_user_attr('error', message)
    raise TrialFailed(message)
  return found[-1][1]


# --------------------------------------------------------------------------
# The study.


def storage_for(url: str, grace_period: int = 30) -> optuna.storages.RDBStorage:
  """The study's storage; a running trial without a heartbeat for `grace_period` s is dead."""
  return optuna.storages.RDBStorage(
      url, heartbeat_interval=max(1, grace_period // 6), grace_period=grace_period,
      heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
          max_retry=MAX_RETRY),
      engine_kwargs=({'connect_args': {'timeout': 60}} if url.startswith('sqlite') else
                     {'pool_pre_ping': True}))


def open_study(spec: SweepSpec, storage: str | optuna.storages.RDBStorage,
               grace_period: int = 30) -> optuna.Study:
  """Creates or loads the sweep's study (a URL, or a storage from `storage_for`); a new grid
  study gets every grid point enqueued."""
  if isinstance(storage, str):
    storage = storage_for(storage, grace_period)
  if spec.sampler == 'grid':
    sampler = optuna.samplers.GridSampler({k: list(v) for k, v in spec.params.items()},
                                          seed=spec.seed)
  elif spec.sampler == 'random':
    sampler = optuna.samplers.RandomSampler(seed=spec.seed)
  else:
    sampler = optuna.samplers.TPESampler(seed=spec.seed)
  pruner = optuna.pruners.NopPruner()
  if spec.pruner:
    if spec.pruner.get('name', 'median') != 'median':
      raise errors.ConfigError(f"pruner name must be 'median', got {spec.pruner.get('name')!r}")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=spec.pruner.get('startup_trials', 2),
                                         n_warmup_steps=spec.pruner.get('warmup_steps', 0))
  study = optuna.create_study(study_name=spec.name, storage=storage,
                              sampler=sampler, pruner=pruner, direction=spec.direction,
                              load_if_exists=True)
  if spec.sampler == 'grid' and not study.trials:
    # Enqueued trials are popped atomically, so parallel workers never run a point twice.
    for values in spec.grid():
      study.enqueue_trial(values)
  return study


def _progress(study: optuna.Study) -> tuple[int, int, int]:
  """(trials that count against the budget, trials running now, trials waiting to run)."""
  trials = study.get_trials(deepcopy=False)
  retried = {optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials}
  done = sum(1 for t in trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                              optuna.trial.TrialState.PRUNED) or
             (t.state == optuna.trial.TrialState.FAIL and t.number not in retried))
  running = sum(1 for t in trials if t.state == optuna.trial.TrialState.RUNNING)
  waiting = sum(1 for t in trials if t.state == optuna.trial.TrialState.WAITING)
  return done, running, waiting


def fail_orphaned_trials(study: optuna.Study, storage: optuna.storages.RDBStorage,
                         grace_period: int) -> list[int]:
  """Fails, and retries, running trials whose worker died before recording a heartbeat.

  optuna's stale check (`fail_stale_trials`) looks only at trials with a heartbeat, so a
  worker killed between creating its trial and its first heartbeat would leave a trial that
  runs forever and that every other worker waits for. A trial whose objective
  (`run_trial`, called after optuna starts the heartbeat) began has its own number in the
  `STARTED` attribute (a retry copies its failed trial's attributes, so the number tells
  them apart); a running trial without it `grace_period` seconds after it started is an
  orphan. Returns their numbers.
  """
  study_id = storage.get_study_id_from_name(study.study_name)
  now = datetime.datetime.now()  # optuna's datetime_start: local time, naive
  retry = storage.get_heartbeat_stale_trial_callback()
  failed = []
  for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
    if (trial.user_attrs.get(STARTED) == trial.number or trial.datetime_start is None or
        (now - trial.datetime_start).total_seconds() <= grace_period):
      continue
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    try:
      if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
        failed.append(trial.number)
        if retry is not None:
          retry(study, storage.get_trial(trial_id))
    except optuna.exceptions.UpdateFinishedTrialError:
      pass  # another worker failed it first
  return failed


def work(spec: SweepSpec, storage: str, workdir: str, grace_period: int = 30) -> None:
  """One worker: runs trials until the budget is spent (waits out other workers' trials)."""
  rdb = storage_for(storage, grace_period)
  study = open_study(spec, rdb)
  while True:
    optuna.storages.fail_stale_trials(study)
    fail_orphaned_trials(study, rdb, grace_period)
    done, running, waiting = _progress(study)
    if done >= spec.budget:
      return
    if not waiting and (spec.sampler == 'grid' or done + running >= spec.budget):
      time.sleep(1)  # the rest are running elsewhere; retry them if their worker dies
      continue
    study.optimize(lambda trial: run_trial(trial, spec, workdir), n_trials=1,
                   catch=(TrialFailed,))


def run(spec: SweepSpec, storage: str, workdir: str, workers: int, grace_period: int = 30) -> None:
  """Starts `workers` worker processes on this machine and waits for them."""
  open_study(spec, storage, grace_period)  # create (and enqueue) once, before workers race
  processes = [subprocess.Popen([sys.executable, '-m', 'fcn_jax.sweep', f'--sweep={FLAGS.sweep}',
                                 f'--workdir={workdir}', f'--storage={storage}', '--worker',
                                 f'--grace_period={grace_period}'])
               for _ in range(workers)]
  codes = [p.wait() for p in processes]
  if any(codes):
    raise RuntimeError(f'sweep worker(s) exited with {codes}')


# --------------------------------------------------------------------------
# The report.


def _config_module(base: str) -> tuple[str, str | None]:
  path, _, arg = base.partition(':')
  return os.path.splitext(os.path.normpath(path))[0].replace(os.sep, '.'), arg or None


def write_report(spec: SweepSpec, storage: str, workdir: str) -> str:
  """`results.json` (every trial), `results.md` rendered from it alone (`render`),
  `best_config.py` and plots for the study, each written atomically."""
  study = optuna.load_study(study_name=spec.name, storage=storage_for(storage))
  trials = study.get_trials(deepcopy=False)
  complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
  sign = -1 if spec.direction == 'maximize' else 1
  order = sorted(trials, key=lambda t: (t.state != optuna.trial.TrialState.COMPLETE,
                                        sign * (t.value if t.value is not None else 0), t.number))
  numbers = {
      'name': spec.name, 'base': spec.base, 'overrides': spec.overrides,
      'sampler': spec.sampler, 'budget': spec.budget, 'direction': spec.direction,
      'metric': spec.metric, 'split': spec.split, 'pruner': spec.pruner or None,
      'params': sorted(spec.params),
      'command': 'python -m fcn_jax.sweep ' + ' '.join(a for a in sys.argv[1:] if a != '--worker'),
      'provenance': provenance.source(),
      'trials': [{'number': t.number, 'state': t.state.name.lower(), 'params': t.params,
                  'value': t.value, 'steps': t.user_attrs.get('steps'),
                  'seconds': t.user_attrs.get('seconds'), 'error': t.user_attrs.get('error', '')}
                 for t in order],
      'best': None}
  if complete:
    best = study.best_trial
    numbers['best'] = {'number': best.number, 'value': best.value, 'params': best.params}
    module, arg = _config_module(spec.base)
    values = {**spec.overrides, **best.params}
    text = (f'"""Best trial {best.number} of sweep {spec.name}: {spec.metric} = {best.value:.4g}.'
            f'\n\n  python -m fcn_jax.train --config={os.path.join(workdir, "best_config.py")} '
            f'--workdir=/tmp/best\n"""\n\nimport importlib\n\nVALUES = {values!r}\n\n\n'
            f'def get_config(arg=None):\n  del arg\n'
            f'  config = importlib.import_module({module!r}).get_config({arg!r})\n'
            f'  config.update_from_flattened_dict(VALUES)\n  return config\n')
    files.write_text(os.path.join(workdir, 'best_config.py'), text)
    _plots(spec, trials, workdir)
  files.write_json(os.path.join(workdir, 'results.json'), numbers, indent=1)
  return files.write_text(os.path.join(workdir, 'results.md'), render(numbers))


def render(numbers: dict) -> str:
  """`results.md` of a sweep from its `results.json` alone."""
  keys = numbers['params']
  rows = [[t['number'], t['state'], *[t['params'].get(k, '') for k in keys],
           f'{t["value"]:.4f}' if t['value'] is not None else '',
           t['steps'] if t['steps'] is not None else '',
           f'{t["seconds"]:.0f}' if t['seconds'] is not None else '',
           t['error'].replace('|', '/')[:120]] for t in numbers['trials']]
  p = numbers['provenance']
  lines = [f'# Sweep `{numbers["name"]}`', '',
           f'Produced by `{numbers["command"]}` at commit `{p["commit"][:12]}`'
           + (' **with uncommitted changes**' if p['dirty'] else '')
           + f', {p["date"]}, on {p["machine"]}.', '',
           f'Base config `{numbers["base"]}` with {json.dumps(numbers["overrides"])}; '
           f'{numbers["sampler"]} sampler, {numbers["budget"]} trials, {numbers["direction"]} '
           f'`{numbers["metric"]}` on the `{numbers["split"]}` split'
           + (f', median pruner {json.dumps(numbers["pruner"])}' if numbers['pruner'] else '')
           + '.', '',
           '| trial | state | ' + ' | '.join(keys) + ' | metric | steps | seconds | error |',
           '|' + '---|' * (len(keys) + 6)]
  lines += ['| ' + ' | '.join(str(v) for v in row) + ' |' for row in rows]
  best = numbers['best']
  if best:
    lines += ['', f'Best: trial {best["number"]}, {numbers["metric"]} = {best["value"]:.4f} with '
              f'{json.dumps(best["params"])}; runnable as `best_config.py`.']
    lines += ['', '![metric vs parameters](params.png)', '', '![history](history.png)']
  return '\n'.join(lines) + '\n'


def _plots(spec: SweepSpec, trials: Sequence[optuna.trial.FrozenTrial], workdir: str) -> None:
  done = [t for t in trials if t.value is not None]
  keys = sorted(spec.params)
  fig, axes = figures.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
  for ax, key in zip(axes[0], keys):
    xs = [t.params[key] for t in done]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    ax.scatter(xs if numeric else [str(x) for x in xs], [t.value for t in done])
    if numeric and (isinstance(spec.params[key], dict) and spec.params[key].get('log') or
                    (not isinstance(spec.params[key], dict) and min(xs) > 0 and
                     max(xs) / min(xs) >= 10)):
      ax.set_xscale('log')
    ax.set_xlabel(key)
    ax.set_ylabel(spec.metric)
  _save(fig, os.path.join(workdir, 'params.png'))
  fig, ax = figures.subplots(figsize=(5, 3.2))
  ax.plot([t.number for t in done], [t.value for t in done], 'o', label='trial')
  best = np.maximum.accumulate if spec.direction == 'maximize' else np.minimum.accumulate
  ax.step([t.number for t in done], best([t.value for t in done]), where='post',
          label='best so far')
  ax.set_xlabel('trial')
  ax.set_ylabel(spec.metric)
  ax.legend()
  _save(fig, os.path.join(workdir, 'history.png'))


def _save(fig, path: str) -> None:
  fig.tight_layout()
  figures.save(fig, path, dpi=80)


# --------------------------------------------------------------------------
# Command line.


def define_flags() -> None:
  flags.DEFINE_string('sweep', None, 'Sweep file (configs/sweeps/<name>.py).')
  flags.DEFINE_string('workdir', None, 'Directory for the trials, the study and the report.')
  flags.DEFINE_integer('workers', 1, 'Trials run at a time on this machine.')
  flags.DEFINE_string('storage', None, 'Optuna storage URL (default sqlite:///<workdir>/study.db; '
                      'postgresql://... to share the study between machines).')
  flags.DEFINE_bool('report', False, 'Only rewrite results.md, best_config.py and the plots.')
  flags.DEFINE_bool('worker', False, 'Internal: run as one worker process.')
  flags.DEFINE_integer('grace_period', 30, 'Seconds without a heartbeat after which a running '
                       'trial counts as dead and is retried.')
  flags.mark_flags_as_required(['sweep', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  workdir = os.path.abspath(FLAGS.workdir)
  try:
    spec = load_sweep(FLAGS.sweep)
    os.makedirs(workdir, exist_ok=True)
    storage = FLAGS.storage or f'sqlite:///{os.path.join(workdir, "study.db")}'
    if FLAGS.worker:
      work(spec, storage, workdir, FLAGS.grace_period)
      return 0
    if not FLAGS.report:
      run(spec, storage, workdir, FLAGS.workers, FLAGS.grace_period)
    print(f'results: {write_report(spec, storage, workdir)}')
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
