"""dense_classifier: the "standard" classifier, conv half + flatten + dense layers.

Only runs at the input size it was built for (the flatten fixes the number of
positions); `fcn_jax.surgery` turns it into an all-conv net that runs anywhere.
The flatten order is row-major over (H, W, C).
"""

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fcn_jax import geometry
from fcn_jax import layers
from fcn_jax.models.common import down_stack


class Model(nnx.Module):
  """Conv blocks, then flatten -> dense `hidden` -> dense `num_classes` logits `(N, K)`."""
  name = 'dense_classifier'

  def __init__(self, in_channels: int = 3, input_size: Sequence[int] = (64, 64),
               features: Sequence[int] = (8, 16, 32), hidden: int = 128, num_classes: int = 10,
               kernel_size: int = 3, downsample: str = 'stride', padding: str = 'same',
               activation: str = 'relu', *, rngs: nnx.Rngs):
    self.input_size = tuple(input_size)
    self.features = down_stack(in_channels, features, kernel_size=kernel_size,
                               downsample=downsample, padding=padding, activation=activation,
                               rngs=rngs)
    self.feature_size = geometry.of(self.features).output_size(self.input_size)
    flat = self.feature_size[0] * self.feature_size[1] * features[-1]
    self.fc1 = nnx.Linear(flat, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, num_classes, rngs=rngs)
    self.activation = layers.activation(activation)

  @property
  def geometry(self) -> geometry.Node:
    fc1 = geometry.Dense('fc1', self.feature_size, self.fc1.out_features,
                         geometry.count_params(self.fc1))
    fc2 = geometry.Pointwise('fc2', self.fc2.out_features, geometry.count_params(self.fc2))
    return geometry.chain(self.name, self.features.geometry, fc1, fc2)

  def __call__(self, x: jax.Array) -> jax.Array:
    geometry.check(self, x.shape)
    h = self.features(x)
    h = self.activation(self.fc1(jnp.reshape(h, (h.shape[0], -1))))
    return self.fc2(h)
