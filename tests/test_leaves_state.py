"""Library functions leave the caller's model and the process as they found them, and the CLIs
tell a user's mistake (one line) from a bug (a traceback)."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs import unet_cells
from fcn_jax import errors
from fcn_jax import evaluate
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import predict
from fcn_jax import train
from tests import test_train


def _modes(model):
  return sorted((type(m).__name__, getattr(m, 'use_running_average', None),
                 getattr(m, 'deterministic', None))
                for _, m in nnx.iter_graph(model) if isinstance(m, (nnx.BatchNorm, nnx.Dropout)))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def test_evaluate_and_export_leave_the_model_in_the_mode_it_was_in(data_dir):
  config = unet_cells.get_config('runlocal')
  config.data.data_dir = data_dir
  config.model.norm = 'batch'
  model = models.get_model(config.model, rngs=nnx.Rngs(0))
  model.eval()
  assert _modes(model) == [('BatchNorm', True, None)] * 6
  evaluate.evaluate(model, config.data, split='test', max_images=1)
  assert _modes(model) == [('BatchNorm', True, None)] * 6
  model.train()
  inference.export(model, config.model.in_channels)
  assert _modes(model) == [('BatchNorm', False, None)] * 6
  assert _modes(models.inference_view(model)) == [('BatchNorm', True, None)] * 6


def test_inference_view_matches_eval_mode_and_shares_the_weights():
  model = models.get_model(dict(name='unet', depth=1, width=4, norm='batch'), rngs=nnx.Rngs(0))
  images = np.random.default_rng(0).random((1, 12, 12, 1), dtype=np.float32)
  view = models.inference_view(model)
  model.eval()
  np.testing.assert_array_equal(np.asarray(view(images)), np.asarray(model(images)))
  model.train()
  for _, param in nnx.iter_graph(model):
    if isinstance(param, nnx.Param):
      param[...] = param[...] * 0  # the view sees the caller's arrays, not a copy
  assert not np.abs(np.asarray(view(images))).max()


def test_predict_on_a_training_mode_model_runs_inference_mode_and_changes_nothing():
  model = models.get_model(dict(name='unet', depth=1, width=4, norm='batch'), rngs=nnx.Rngs(0))
  image = np.random.default_rng(0).random((12, 12, 1), dtype=np.float32) * 5
  stats = [np.asarray(v[...]) for _, v in nnx.iter_graph(model)
           if isinstance(v, nnx.BatchStat)]
  model.train()
  out = inference.predict(model, image)
  assert _modes(model) == [('BatchNorm', False, None)] * 2  # still training mode
  after = [np.asarray(v[...]) for _, v in nnx.iter_graph(model) if isinstance(v, nnx.BatchStat)]
  assert all((a == b).all() for a, b in zip(stats, after))  # running statistics untouched
  model.eval()
  np.testing.assert_array_equal(out, np.asarray(model(image[None]))[0])
  model.train()
  assert not np.allclose(np.asarray(model(image[None]))[0], out)  # the modes differ here


def test_training_restores_the_callers_debug_nans_setting(tmp_path):
  config = test_train.runlocal('default', str(tmp_path / 'tfds'), debug_nans=True,
                               num_train_steps=2)
  assert not jax.config.jax_debug_nans
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not jax.config.jax_debug_nans


def test_every_user_error_is_a_value_error():
  for cls in (errors.ConfigError, errors.InputError, errors.GeometryError, errors.TilingError,
              errors.DatasetUnavailableError, errors.NoReadableCheckpointError):
    assert issubclass(cls, errors.UserError) and issubclass(cls, ValueError)


def test_the_cli_prints_a_user_error_on_one_line_and_lets_a_bug_through(monkeypatch, capsys,
                                                                         tmp_path):
  def user_mistake(workdir, step):
    raise errors.InputError(f'{workdir!r} holds no config.json')

  monkeypatch.setattr(inference, 'load_trained', user_mistake)
  assert predict.export(str(tmp_path), None, str(tmp_path / 'm')) == 1
  assert capsys.readouterr().err.strip().splitlines() == [
      f"error: '{tmp_path}' holds no config.json"]

  def bug(workdir, step):
    raise ValueError('an internal shape mismatch')  # not a UserError: a bug

  monkeypatch.setattr(inference, 'load_trained', bug)
  with pytest.raises(ValueError, match='internal shape mismatch'):
    predict.export(str(tmp_path), None, str(tmp_path / 'm'))
