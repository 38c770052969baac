"""Early stopping on the validation metric: the rule, and a training run that stops."""

import json
import os

import pytest

from configs import default
from fcn_jax import early_stopping
from fcn_jax import errors
from fcn_jax import train


def test_the_rule_counts_evaluations_without_a_rise():
  rule = early_stopping.EarlyStopping(patience=2, metric='f1', min_delta=0.01)
  assert not rule.update(10, 0.50)
  assert not rule.update(20, 0.60)
  assert not rule.update(30, 0.605)  # a rise smaller than min_delta does not count
  assert rule.update(40, 0.59)  # two evaluations without a rise
  assert (rule.stopped_at, rule.best, rule.best_step) == (40, 0.60, 20)


def test_the_metric_is_averaged_over_sizes_and_must_exist():
  rule = early_stopping.EarlyStopping(patience=1, metric='f1')
  scalars = {'validation/64x64/f1': 0.4, 'validation/128x128/f1': 0.6,
             'validation/64x64/precision': 0.9, 'test/64x64/f1': 0.0}
  assert rule.value(scalars, 'validation') == pytest.approx(0.5)
  with pytest.raises(errors.ConfigError, match=r"'mean_iou' is not a metric .* \['f1', "
                                               r"'precision'\]"):
    early_stopping.EarlyStopping(patience=1, metric='mean_iou').value(scalars, 'validation')


def _config(tmp_path, **stopping):
  config = default.get_config('runlocal')
  config.data.data_dir = str(tmp_path / 'tfds')
  config.num_train_steps = 50
  config.checkpoint_every = 100
  config.eval_every = 2
  config.early_stopping.update(stopping)
  return config


def test_a_config_without_validation_evaluations_is_refused(tmp_path):
  config = _config(tmp_path, patience=2)
  config.eval_every = 0
  with pytest.raises(errors.ConfigError, match='set eval_every > 0'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'config.json')  # nothing written


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_training_stops_at_the_plateau_and_stays_stopped(tmp_path):
  # min_delta 1 > any possible rise of F1: the first evaluation (step 2) is the best, and
  # patience 2 stops the run at the second evaluation after it (step 6), not at step 50.
  config = _config(tmp_path, patience=2, min_delta=1.0)
  workdir = str(tmp_path / 'run')
  out = train.train_and_evaluate(config, workdir)
  assert out['step'] == 6 and out['early_stopped']
  [stopped] = [r for r in _records(workdir) if r.get('early_stopped')]
  assert stopped == {'step': 6, 'early_stopped': True, 'metric': 'f1',
                     'best': stopped['best'], 'best_step': 2}
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['6']  # saved where it stopped
  validations = [r['step'] for r in _records(workdir) if r.get('split') == 'validation']
  assert validations == [2, 4, 6]  # the last one is not repeated at the end
  again = train.train_and_evaluate(config, workdir)  # the same command: no more training
  assert again['step'] == 6 and again['early_stopped']


def test_a_resumed_run_remembers_its_evaluations(tmp_path):
  workdir = str(tmp_path / 'run')
  first = _config(tmp_path, patience=3, min_delta=1.0)
  first.num_train_steps = 4  # evaluations at steps 2 and 4 (the end), no stop
  assert not train.train_and_evaluate(first, workdir)['early_stopped']
  longer = _config(tmp_path, patience=3, min_delta=1.0)  # num_train_steps 50: resumable
  out = train.train_and_evaluate(longer, workdir)
  # Replayed: best at 2, no rise at 4; then 6 and 8 make three: stop at 8 (without the
  # replay it would stop at 12).
  assert out['step'] == 8 and out['early_stopped']
