"""Sweeps: grids complete, resume after a kill, contain failures, prune, share a database."""

import importlib.util
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest

from fcn_jax import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep_file(tmp_path, name: str, **fields) -> str:
  path = tmp_path / f'{name}.py'
  path.write_text(f'def get_sweep():\n  return {fields!r}\n')
  return str(path)


def _command(sweep_file, workdir, *extra):
  return [sys.executable, '-m', 'fcn_jax.sweep', f'--sweep={sweep_file}', f'--workdir={workdir}',
          *extra]


def _run(sweep_file, workdir, *extra):
  out = subprocess.run(_command(sweep_file, workdir, *extra), cwd=ROOT, capture_output=True,
                       text=True, check=False, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def _trials(name, workdir, storage=None):
  storage = storage or f'sqlite:///{workdir}/study.db'
  return optuna.load_study(study_name=name, storage=storage).get_trials()


def _table_rows(workdir):
  lines = (workdir / 'results.md').read_text().splitlines()
  return [l for l in lines if l.startswith('| ') and not l.startswith('| trial')]


def test_grid_sweep_with_two_workers(tmp_path):
  """A 2x2 grid of runlocal trainings: 4 rows with the right parameters, a runnable best config."""
  _run(os.path.join(ROOT, 'configs/sweeps/tiny_grid.py'), tmp_path, '--workers=2')
  trials = _trials('tiny_grid', tmp_path)
  assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
  params = sorted((t.params['optimizer.learning_rate'], t.params['model.padding_mode'])
                  for t in trials)
  assert params == [(1e-3, 'reflect'), (1e-3, 'zeros'), (1e-2, 'reflect'), (1e-2, 'zeros')]
  rows = _table_rows(tmp_path)
  assert len(rows) == 4 and all('| complete |' in r for r in rows)
  assert (tmp_path / 'params.png').is_file() and (tmp_path / 'history.png').is_file()
  numbers = json.loads((tmp_path / 'results.json').read_text())
  assert len(numbers['trials']) == 4 and numbers['best']['number'] in range(4)
  assert sweep.render(numbers) == (tmp_path / 'results.md').read_text()  # from the JSON alone
  spec = importlib.util.spec_from_file_location('best', tmp_path / 'best_config.py')
  best = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(best)
  config = best.get_config()
  assert config.num_train_steps == 3  # the runlocal base
  assert config.model.padding_mode in ('zeros', 'reflect')


def test_trials_are_chosen_on_validation_not_test(tmp_path):
  """The objective reads the validation records; the test record each trial writes is ignored."""
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 2, "split": "validation", "validation/8x8/f1": 0.25}\n'
                  '{"step": 3, "split": "validation", "validation/8x8/f1": 0.5, '
                  '"validation/16x16/f1": 0.7}\n'
                  '{"step": 3, "split": "test", "test/8x8/f1": 0.9, "test/16x16/f1": 0.9}\n')
  assert sweep.read_metric(str(tmp_path), 'mean:f1') == [(2, 0.25), (3, 0.6)]
  assert sweep.read_metric(str(tmp_path), 'mean:f1', 'test') == [(3, 0.9)]
  assert sweep.load_sweep(os.path.join(ROOT, 'configs/sweeps/lr_padding.py')).split == (
      'validation')


def test_resume_after_kill_finishes_only_the_rest(tmp_path):
  sweep_file = os.path.join(ROOT, 'configs/sweeps/tiny_grid.py')
  process = subprocess.Popen(_command(sweep_file, tmp_path, '--grace_period=4'), cwd=ROOT,
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline:
    time.sleep(1)
    try:
      trials = _trials('tiny_grid', tmp_path)
    except Exception:  # pylint: disable=broad-exception-caught  # not created yet
      continue
    states = [t.state for t in trials]
    # Kill once the running trial's training has logged: its worker has then recorded a
    # heartbeat, so optuna's own stale check fails it (a worker killed before its first
    # heartbeat: test_a_trial_orphaned_before_its_first_heartbeat_is_retried).
    logs = [tmp_path / f'trial_{t.number:03d}' / 'train.log' for t in trials
            if t.state == optuna.trial.TrialState.RUNNING]
    logged = [log for log in logs if log.exists() and log.stat().st_size > 0]
    if states.count(optuna.trial.TrialState.COMPLETE) >= 1 and logged:
      break
  os.killpg(process.pid, signal.SIGKILL)  # the sweep and its worker, mid-trial
  process.wait()
  before = {t.number: os.path.getmtime(tmp_path / f'trial_{t.number:03d}' / 'metrics.jsonl')
            for t in _trials('tiny_grid', tmp_path)
            if t.state == optuna.trial.TrialState.COMPLETE}
  assert 1 <= len(before) < 4
  _run(sweep_file, tmp_path, '--grace_period=4')
  trials = _trials('tiny_grid', tmp_path)
  complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
  assert len({tuple(sorted(t.params.items())) for t in complete}) == 4 == len(complete)
  for number, mtime in before.items():  # finished trials were not redone
    assert os.path.getmtime(tmp_path / f'trial_{number:03d}' / 'metrics.jsonl') == mtime
  # The killed trial failed by heartbeat and was retried in its own directory.
  assert sum(t.state == optuna.trial.TrialState.FAIL for t in trials) == 1
  assert len(list(tmp_path.glob('trial_*'))) == 4


def test_a_trial_orphaned_before_its_first_heartbeat_is_retried(tmp_path):
  sweep_file = os.path.join(ROOT, 'configs/sweeps/tiny_grid.py')
  spec = sweep.load_sweep(sweep_file)
  study = sweep.open_study(spec, f'sqlite:///{tmp_path}/study.db', grace_period=2)
  orphan = study.ask()  # RUNNING with no heartbeat: as if its worker died at once
  point = study.get_trials()[orphan.number].system_attrs['fixed_params']  # popped grid point
  time.sleep(3)
  _run(sweep_file, tmp_path, '--grace_period=2')  # waited for the orphan forever before
  trials = _trials('tiny_grid', tmp_path)
  assert trials[orphan.number].state == optuna.trial.TrialState.FAIL
  complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
  assert len({tuple(sorted(t.params.items())) for t in complete}) == 4 == len(complete)
  retry = [t for t in complete
           if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) ==
           orphan.number]
  assert len(retry) == 1 and retry[0].params == point


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
  sweep_file = _sweep_file(tmp_path, 'failing', base='configs/default.py:runlocal',
                           params={'optimizer.name': ['adam', 'bogus']}, metric='mean:f1')
  _run(sweep_file, tmp_path / 'run')
  states = {t.params['optimizer.name']: t for t in _trials('failing', tmp_path / 'run')}
  assert states['adam'].state == optuna.trial.TrialState.COMPLETE
  assert states['bogus'].state == optuna.trial.TrialState.FAIL
  assert "optimizer.name must be 'sgd', 'adam' or 'adamw', got 'bogus'" in (
      states['bogus'].user_attrs['error'])
  assert any('| fail |' in r and 'bogus' in r for r in _table_rows(tmp_path / 'run'))


def test_pruning_stops_a_clearly_worse_trial(tmp_path):
  sweep_file = _sweep_file(
      tmp_path, 'pruned', base='configs/default.py:runlocal',
      overrides={'num_train_steps': 40, 'log_every': 1, 'checkpoint_every': 40,
                 'optimizer.warmup_steps': 1},
      params={'optimizer.learning_rate': [0.01, 0.0]},  # learning rate 0 never improves
      metric='train_loss', direction='minimize',
      pruner={'name': 'median', 'startup_trials': 1, 'warmup_steps': 10})
  _run(sweep_file, tmp_path / 'run')
  trials = {t.params['optimizer.learning_rate']: t for t in _trials('pruned', tmp_path / 'run')}
  assert trials[0.01].state == optuna.trial.TrialState.COMPLETE
  assert trials[0.0].state == optuna.trial.TrialState.PRUNED
  assert trials[0.0].user_attrs['steps'] < 40


def test_bad_sweep_files_are_clear_errors(tmp_path):
  bad = _sweep_file(tmp_path, 'bad', base='configs/default.py', params={'a': [1]},
                    metric='mean:f1', samplr='grid')
  with pytest.raises(ValueError, match=r"unknown sweep field\(s\) \['samplr'\]"):
    sweep.load_sweep(bad)
  bad = _sweep_file(tmp_path, 'bad2', base='configs/default.py',
                    params={'a': {'low': 1, 'high': 2}}, metric='mean:f1')
  with pytest.raises(ValueError, match='a grid sweep needs a list of values'):
    sweep.load_sweep(bad)
  bad = _sweep_file(tmp_path, 'on_test', base='configs/default.py', params={'a': [1]},
                    metric='test/64x64/f1')
  with pytest.raises(ValueError, match="metric 'test/64x64/f1' is not of split 'validation'"):
    sweep.load_sweep(bad)
  bad = _sweep_file(tmp_path, 'no_validation', base='configs/nin_digits.py', params={'a': [1]},
                    metric='mean:accuracy')
  with pytest.raises(ValueError, match='has no data.validation_split to choose trials on'):
    sweep.load_sweep(bad)
  out = subprocess.run(_command(str(tmp_path / 'missing.py'), tmp_path), cwd=ROOT,
                       capture_output=True, text=True, check=False)
  assert out.returncode == 1 and out.stderr.startswith('error: no sweep file')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture
def postgres():
  """A throwaway PostgreSQL server on loopback, when PostgreSQL is installed."""
  initdb, pg_ctl = shutil.which('initdb'), shutil.which('pg_ctl')
  if not (initdb and pg_ctl):
    pytest.skip('PostgreSQL is not installed (no initdb/pg_ctl): the shared-database test '
                'runs on SQLite only')
  # PostgreSQL refuses to run as root: then run it as the `postgres` user, in a folder it can
  # reach (pytest's tmp_path is private to root).
  as_user = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
  folder = pathlib.Path(tempfile.mkdtemp(prefix='fcn_jax_pg_'))
  folder.chmod(0o755)
  if as_user:
    shutil.chown(folder, 'postgres')
  data = folder / 'data'
  port = _free_port()
  subprocess.run([*as_user, initdb, '-D', str(data), '-U', 'postgres', '--auth=trust'],
                 check=True, capture_output=True)
  subprocess.run([*as_user, pg_ctl, '-D', str(data), '-w', '-l', str(data / 'log'), '-o',
                  f'-p {port} -k {data} -c listen_addresses=127.0.0.1', 'start'], check=True,
                 capture_output=True)
  try:
    yield f'postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres'
  finally:
    subprocess.run([*as_user, pg_ctl, '-D', str(data), '-m', 'immediate', 'stop'],
                   capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, postgres):
  sweep_file = _sweep_file(tmp_path, 'shared', base='configs/default.py:runlocal',
                           params={'optimizer.learning_rate': [1e-3, 1e-2]}, metric='mean:f1')
  workdir = tmp_path / 'run'
  _run(sweep_file, workdir, '--workers=2', f'--storage={postgres}')
  trials = _trials('shared', workdir, postgres)
  assert sorted(t.params['optimizer.learning_rate'] for t in trials) == [1e-3, 1e-2]
  assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
