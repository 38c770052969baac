"""Test-time augmentation (fcn_jax.inference.tta): the mean of explicitly augmented runs, D4
averaging makes the output rotation-equivariant, and sizes that cannot be undone are refused."""

import jax
import numpy as np
import pytest
from flax import nnx

from fcn_jax import errors
from fcn_jax import inference
from fcn_jax import models


def _model(**config):
  model = models.get_model(dict(name='patch_net', **config), rngs=nnx.Rngs(0))
  model.eval()
  return model


def test_flips_are_the_mean_of_explicitly_flipped_runs_in_logits_and_probabilities():
  model = _model()
  image = np.random.default_rng(0).random((65, 81, 3), dtype=np.float32)  # 8k + 1
  p = lambda x: inference.predict(model, np.ascontiguousarray(x))  # pylint: disable=unnecessary-lambda-assignment
  runs = [p(image), p(image[:, ::-1])[:, ::-1], p(image[::-1])[::-1],
          p(image[::-1, ::-1])[::-1, ::-1]]
  np.testing.assert_allclose(inference.predict_tta(model, image, views='flips'),
                             np.mean(runs, axis=0), rtol=1e-5, atol=1e-6)
  probabilities = np.mean([jax.nn.sigmoid(r) for r in runs], axis=0)
  np.testing.assert_allclose(
      inference.predict_tta(model, image, views='flips', average='sigmoid'), probabilities,
      rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('scales', [(1.0,), (1.0, 0.5)])
def test_d4_averaging_makes_the_output_rotation_and_flip_equivariant(scales):
  """A plain net is not equivariant (its kernels are random); the D4 mean is, exactly: the
  mean over a group's views of a rotated image is the rotated mean."""
  model = _model()
  image = np.random.default_rng(1).random((65, 65, 3), dtype=np.float32)
  plain = inference.predict(model, image)
  rotated_plain = inference.predict(model, np.ascontiguousarray(np.rot90(image)))
  assert not np.allclose(np.rot90(plain), rotated_plain, atol=1e-4)
  tta = inference.predict_tta(model, image, scales=scales)
  for view in (lambda x: np.rot90(x), lambda x: x[:, ::-1], lambda x: np.rot90(x, 3)[::-1]):
    got = inference.predict_tta(model, np.ascontiguousarray(view(image)), scales=scales)
    np.testing.assert_allclose(got, view(tta), rtol=1e-4, atol=1e-5)


def test_tiled_views_equal_whole_views():
  model = _model()
  image = np.random.default_rng(2).random((97, 73, 3), dtype=np.float32)
  np.testing.assert_allclose(inference.predict_tta(model, image, tile=32, batch=4),
                             inference.predict_tta(model, image), rtol=1e-5, atol=1e-6)


def test_sizes_a_view_cannot_be_mapped_back_from_and_bad_settings_are_refused():
  model = _model()
  image = np.zeros((60, 65, 3), np.float32)  # output centres 0, 8, ..., 56 in 0 ... 59
  with pytest.raises(errors.InputError, match=r'not symmetric .*height 60: nearest \[57, 65\]'):
    inference.predict_tta(model, image)
  unet = models.get_model(dict(name='unet', depth=2, width=4, padding='same'), rngs=nnx.Rngs(0))
  assert inference.predict_tta(unet, np.zeros((6, 10, 1), np.float32)).shape == (6, 10, 2)
  assert inference.predict_tta(model, image, views='none').shape == (8, 9, 1)
  with pytest.raises(errors.InputError, match='views must be one of'):
    inference.predict_tta(model, image, views='d8')
  with pytest.raises(errors.InputError, match='average must be one of'):
    inference.predict_tta(model, image, views='none', average='mean')
  with pytest.raises(errors.InputError, match='scales must be positive'):
    inference.predict_tta(model, image, views='none', scales=(0.0,))
