"""tfds.testing.mock_data for the catalog datasets, made usable by the pipeline."""

import contextlib

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from fcn_jax.data import catalog


@contextlib.contextmanager
def mock_catalog(monkeypatch, num_examples: int = 6):
  """Random catalog examples, with two fixes to tfds's fake generator.

  The mock draws boxes with min > max, which BBoxFeature then refuses, and gives
  an image and its mask different random sizes: sort the boxes, make the sizes
  agree. The machine is also treated as online.
  """
  monkeypatch.setattr(catalog, '_reachable', lambda builder: True)
  generator = mocking.RandomFakeGenerator
  draw = generator._generate_random_obj  # pylint: disable=protected-access

  def draw_consistent(self, feature, tensor_info, rng):
    self._constant_dynamic_shape = True  # pylint: disable=protected-access
    value = draw(self, feature, tensor_info, rng)
    if isinstance(feature, tfds.features.BBoxFeature):
      low, high = (np.minimum(value[..., :2], value[..., 2:]),
                   np.maximum(value[..., :2], value[..., 2:]))
      value = np.concatenate([low, high], axis=-1)
    return value

  monkeypatch.setattr(generator, '_generate_random_obj', draw_consistent)
  with tfds.testing.mock_data(num_examples=num_examples):
    yield
