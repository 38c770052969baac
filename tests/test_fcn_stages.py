"""FCN's staged training: 16s grows from a trained 32s, 8s from 16s (Long et al., 2015)."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs import fcn8s_shapes
from fcn_jax import errors
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import train
from fcn_jax.models import fcn

SLIM = dict(in_channels=3, num_classes=4, widths=(4, 4, 8, 8, 8), fc_width=8, dropout=0.0)


def _net(variant, seed):
  return fcn.Model(variant=variant, rngs=nnx.Rngs(seed), **SLIM)


def _params(module):
  return jax.tree.leaves(nnx.state(module, nnx.Param))


def _randomize_skips(model, seed):
  """What training does to the skip scores (they start at zero)."""
  rng = np.random.default_rng(seed)
  for score in model.parts()['score_pool']:
    score.kernel[...] = rng.normal(0, 0.3, score.kernel[...].shape).astype(np.float32)


@pytest.mark.parametrize('coarse_variant, fine_variant', [('fcn32s', 'fcn16s'),
                                                          ('fcn16s', 'fcn8s')])
def test_at_step_0_the_new_skip_adds_nothing(coarse_variant, fine_variant):
  coarse, fine = _net(coarse_variant, 0), _net(fine_variant, 1)
  _randomize_skips(coarse, 2)
  fine.grow_from(coarse)
  c, f = coarse.parts(), fine.parts()
  for a, b in zip(_params(fine.parts()['blocks'][0]), _params(c['blocks'][0])):
    np.testing.assert_array_equal(a, b)
  x = np.random.default_rng(3).random((1, 70, 90, 3), np.float32)
  # The input of the new fusion: the pooled features of the blocks above it (shared weights).
  features = x
  for block in f['blocks'][:fine.first_skip]:
    features = block(features)
  # The new fusion's output is the coarser net's scores at the next level, up-sampled by 2:
  # the zero-initialised skip scores add exactly nothing.
  deeper = c['blocks'][fine.first_skip](features)
  coarse_scores = c['fusions'][0](deeper) if c['fusions'] else c['classifier'](deeper)
  expected = f['up2'][0](coarse_scores)
  np.testing.assert_array_equal(np.asarray(f['fusions'][0](features)), np.asarray(expected))
  assert not np.asarray(f['score_pool'][0].kernel[...]).any()
  # The whole output is near the coarser net's, not equal: x2-then-x16 bilinear
  # up-sampling is not x32 bilinear (fcn.Model.grow_from).
  a, b = np.asarray(coarse(x)), np.asarray(fine(x))
  assert a.shape == b.shape and np.abs(a - b).max() < 0.5 * np.abs(a).max()


def test_growing_from_the_wrong_net_is_refused():
  with pytest.raises(errors.ConfigError, match='grows from a coarser FCN'):
    _net('fcn16s', 0).grow_from(_net('fcn8s', 1))
  wide = fcn.Model(variant='fcn32s', rngs=nnx.Rngs(0), **{**SLIM, 'fc_width': 16})
  fine = _net('fcn16s', 1)
  before = [np.asarray(p) for p in _params(fine)]
  with pytest.raises(errors.ConfigError, match='does not fit fcn16s'):
    fine.grow_from(wide)
  for a, b in zip(_params(fine), before):  # nothing copied
    np.testing.assert_array_equal(a, b)


def test_training_starts_from_the_coarser_run(tmp_path):
  coarse = fcn8s_shapes.get_config('variant=fcn32s,runlocal')
  coarse.data.data_dir = str(tmp_path / 'tfds')
  train.train_and_evaluate(coarse, str(tmp_path / 'fcn32s'))
  fine = fcn8s_shapes.get_config('variant=fcn16s,runlocal')
  fine.data.data_dir = coarse.data.data_dir
  fine.model.init_from = str(tmp_path / 'fcn32s')
  fine.optimizer.learning_rate = 0.0  # the weights it starts from are the ones it ends with
  fine.optimizer.grad_clip_norm = 0.0
  train.train_and_evaluate(fine, str(tmp_path / 'fcn16s'))
  trained_coarse, _ = inference.load_trained(str(tmp_path / 'fcn32s'))
  grown, config = inference.load_trained(str(tmp_path / 'fcn16s'))
  assert config.model.init_from == str(tmp_path / 'fcn32s')
  for a, b in zip(_params(grown.parts()['classifier']),
                  _params(trained_coarse.parts()['classifier'])):
    np.testing.assert_array_equal(a, b)
  fresh = models.get_model(config.model, rngs=nnx.Rngs(config.seed))
  assert any(not np.array_equal(a, b) for a, b in zip(_params(grown.parts()['blocks'][0]),
                                                      _params(fresh.parts()['blocks'][0])))
  bad = fcn8s_shapes.get_config('variant=fcn16s,runlocal')
  bad.model.init_from = str(tmp_path / 'nowhere')
  bad.data.data_dir = coarse.data.data_dir
  with pytest.raises(errors.UserError, match='holds no config.json'):
    train.train_and_evaluate(bad, str(tmp_path / 'bad'))
