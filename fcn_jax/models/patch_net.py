"""patch_net: the heat-map network, trained on patches and run on images of any size.

Strided convolutions (or pooling) trade space for channels; 1x1 convolutions
then act as a dense classifier applied to every position. With the defaults:
64x64x3 -> 32x32x8 -> 16x16x16 -> 8x8x32 -> 1x1 conv to 10 -> 1x1 conv to 1,
an 8x8 heat map; a 640x320x3 image gives an 80x40 one. `norm='batch'` puts batch norm after
each conv (`configs/default.py` leaves it off: `config.model.norm`): it normalises with running statistics at inference, a
per-channel affine map, so outputs stay independent of the input size and tiling stays exact.
"""

from typing import Sequence

import jax
from flax import nnx

from fcn_jax import geometry
from fcn_jax import layers
from fcn_jax.models.common import down_stack


class Model(nnx.Module):
  """Conv down-sampling blocks + a 1x1-conv per-pixel classifier -> heat-map logits."""
  name = 'patch_net'

  def __init__(self, in_channels: int = 3, features: Sequence[int] = (8, 16, 32),
               head: Sequence[int] = (10, 1), kernel_size: int = 3, downsample: str = 'stride',
               padding: str = 'same', padding_mode: str = 'zeros', activation: str = 'relu',
               norm: str | None = None, *, rngs: nnx.Rngs):
    self.features = down_stack(in_channels, features, kernel_size=kernel_size,
                               downsample=downsample, padding=padding,
                               padding_mode=padding_mode, activation=activation, norm=norm,
                               rngs=rngs)
    self.head = layers.pointwise_head((features[-1], *head), activation=layers.activation(
        activation), rngs=rngs)
    self.num_outputs = head[-1]

  @property
  def geometry(self) -> geometry.Node:
    return geometry.chain(self.name, self.features.geometry, self.head.geometry)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits `(N, H', W', K)`; see `probabilities`."""
    geometry.check(self, x.shape)
    return self.head(self.features(x))

  def probabilities(self, x: jax.Array) -> jax.Array:
    """Sigmoid of the logits for one output channel, softmax over channels otherwise."""
    logits = self(x)
    return jax.nn.sigmoid(logits) if self.num_outputs == 1 else jax.nn.softmax(logits)
