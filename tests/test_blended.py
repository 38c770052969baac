"""Blended tiling (fcn_jax.inference.blended): windows land where they belong, exact tiling is
used where it applies, any fully convolutional model runs, and bad settings are one line."""

import numpy as np
import pytest
from flax import nnx

from fcn_jax import errors
from fcn_jax import inference
from fcn_jax import models
from fcn_jax.inference import blended


def _model(**config):
  model = models.get_model(config, rngs=nnx.Rngs(0))
  model.eval()
  return model


@pytest.mark.parametrize('weights', blended.WEIGHTS)
@pytest.mark.parametrize('overlap', [0.0, 0.5])
def test_windows_of_a_valid_net_reassemble_the_whole_output(weights, overlap):
  """A net without padding gives, on a window, exactly the whole run's outputs there: any
  weighted average of overlapping windows must then be the whole output (placement check)."""
  model = _model(name='patch_net', padding='valid')
  image = np.random.default_rng(0).random((101, 87, 3), dtype=np.float32)
  whole = inference.predict(model, image)
  out = inference.predict_blended(model, image, tile=40, overlap=overlap, weights=weights,
                                  batch=3, exact=False)
  assert out.shape == whole.shape
  np.testing.assert_allclose(out, whole, rtol=1e-5, atol=1e-6)


def test_exact_tiling_is_used_where_it_applies():
  model = _model(name='patch_net')
  image = np.random.default_rng(1).random((90, 70, 3), dtype=np.float32)
  whole = inference.predict(model, image)
  np.testing.assert_allclose(inference.predict_blended(model, image, tile=32), whole,
                             rtol=1e-5, atol=1e-6)
  approx = inference.predict_blended(model, image, tile=32, exact=False)  # same padding: borders
  assert approx.shape == whole.shape and not np.allclose(approx, whole, atol=1e-6)


def test_a_group_norm_unet_that_exact_tiling_refuses_runs_blended():
  model = _model(name='unet', depth=2, width=4, padding='same', norm='group')
  image = np.random.default_rng(2).random((70, 90, 1), dtype=np.float32)
  with pytest.raises(errors.TilingError):
    inference.predict_tiled(model, image, tile=32)
  whole = inference.predict(model, image)
  out = inference.predict_blended(model, image, tile=32, overlap=0.5)
  assert out.shape == whole.shape
  relative = np.abs(out - whole).max() / np.abs(whole).max()
  assert 0 < relative < 1  # an approximation (benchmarks.blending measures it)
  one_window = inference.predict_blended(model, image, tile=128)  # the window is the image
  np.testing.assert_allclose(one_window, whole, rtol=1e-5, atol=1e-5)


def test_bad_settings_are_one_line_errors():
  model = _model(name='patch_net')
  image = np.zeros((64, 64, 3), np.float32)
  with pytest.raises(errors.InputError, match=r'overlap must be in \[0, 1\)'):
    inference.predict_blended(model, image, overlap=1.0)
  with pytest.raises(errors.InputError, match='blend weights must be one of'):
    inference.predict_blended(model, image, weights='triangle')
  with pytest.raises(errors.InputError, match='raise the tile'):
    inference.predict_blended(_model(name='patch_net', padding='valid'), image, tile=8,
                              exact=False)
