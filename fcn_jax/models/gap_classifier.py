"""gap_classifier: an all-conv classifier with a global-average-pooling head.

A 1x1 conv gives per-position class scores; global average pooling turns them
into one score per class for any input size (28x28 and 28x16 alike).
"""

from typing import Sequence

import jax
from flax import nnx

from fcn_jax import geometry
from fcn_jax import layers
from fcn_jax.models.common import down_stack


class Model(nnx.Module):
  """Conv blocks -> 1x1 conv to `num_classes` -> global average -> logits `(N, K)`."""
  name = 'gap_classifier'

  def __init__(self, in_channels: int = 1, num_classes: int = 10,
               features: Sequence[int] = (16, 32, 64), kernel_size: int = 3,
               downsample: str = 'stride', activation: str = 'relu', *, rngs: nnx.Rngs):
    self.features = down_stack(in_channels, features, kernel_size=kernel_size,
                               downsample=downsample, activation=activation, rngs=rngs)
    self.score = layers.pointwise(features[-1], num_classes, rngs=rngs)
    self.pool = layers.GlobalAvgPool()

  @property
  def geometry(self) -> geometry.Node:
    return geometry.chain(self.name, self.features.geometry,
                          self.score.geometry.with_name('score'), self.pool.geometry)

  def score_map(self, x: jax.Array) -> jax.Array:
    """Per-position class scores `(N, H', W', K)` before pooling."""
    return self.score(self.features(x))

  def __call__(self, x: jax.Array) -> jax.Array:
    geometry.check(self, x.shape)
    return self.pool(self.score_map(x))
