"""nin: Network in Network (Lin et al., 2014).

mlpconv blocks (a kxk conv followed by 1x1 convs: a small MLP slid over the
image), pooling between blocks, and a head that is just a 1x1 conv to the
classes and global average pooling, in place of the parameter-rich dense
layers of a standard classifier.
"""

from typing import Sequence

import jax
from flax import nnx

from fcn_jax import geometry
from fcn_jax import layers


class Model(nnx.Module):
  """mlpconv blocks -> (last block ends in a 1x1 conv to K) -> global average -> `(N, K)`."""
  name = 'nin'

  def __init__(self, in_channels: int = 1, num_classes: int = 10,
               kernel_sizes: Sequence[int] = (5, 5, 3),
               widths: Sequence[Sequence[int]] = ((32, 32, 32), (64, 64, 64), (64, 64)),
               dropout: float = 0.0, activation: str = 'relu', *, rngs: nnx.Rngs):
    if len(kernel_sizes) != len(widths):
      raise ValueError(f'kernel_sizes {kernel_sizes} and widths {widths} need the same length')
    act, stack, c = layers.activation(activation), [], in_channels
    for b, (k, block) in enumerate(zip(kernel_sizes, widths)):
      last = b == len(widths) - 1
      block = (*block, num_classes) if last else block
      for i, width in enumerate(block):
        stack.append(layers.Conv(c, width, k if i == 0 else 1, padding='same', rngs=rngs))
        if not (last and i == len(block) - 1):
          stack.append(act)
        c = width
      if not last:
        stack.append(layers.MaxPool(3, 2, padding=1))
        if dropout:
          stack.append(nnx.Dropout(dropout, rngs=rngs))
    self.mlpconv = layers.Sequential(*stack, name='mlpconv')
    self.pool = layers.GlobalAvgPool()
    self.num_classes = num_classes

  @property
  def geometry(self) -> geometry.Node:
    return geometry.chain(self.name, self.mlpconv.geometry, self.pool.geometry)

  def __call__(self, x: jax.Array) -> jax.Array:
    geometry.check(self, x.shape)
    return self.pool(self.mlpconv(x))

  def shape_notes(self, size: Sequence[int]) -> list[str]:
    """Head parameters vs a flatten+dense head on the same features (the "parameter-rich" point)."""
    last_conv = [l for l in self.mlpconv.layers if isinstance(l, layers.Conv)][-1]
    c_in, k = last_conv.in_channels, self.num_classes
    h, w = geometry.of(self.mlpconv).output_size(size)
    conv_head = c_in * k + k
    dense_head = h * w * c_in * k + k
    return [f'head: 1x1 conv {c_in}->{k} + global average pooling = {conv_head:,} parameters; '
            f'a flatten+dense head on the {h}x{w}x{c_in} features at {size[0]}x{size[1]} would '
            f'have {dense_head:,} ({dense_head / conv_head:.0f}x), and only work at that size']
