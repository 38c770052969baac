"""nin: Network in Network (Lin et al., 2014).

mlpconv blocks (a kxk conv followed by 1x1 convs: a small MLP slid over the
image), pooling between blocks, and a head that is just a 1x1 conv to the
classes and global average pooling, in place of the parameter-rich dense
layers of a standard classifier.

`head='dense'` is the ablation of the paper's point: the same mlpconv trunk
(without the final 1x1 conv to the classes) followed by flatten + dense, which
has many more parameters and runs only at `input_size`.
"""

from typing import Sequence

import jax
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import layers


class Model(nnx.Module):
  """mlpconv blocks -> (last block ends in a 1x1 conv to K) -> global average -> `(N, K)`."""
  name = 'nin'

  def __init__(self, in_channels: int = 1, num_classes: int = 10,
               kernel_sizes: Sequence[int] = (5, 5, 3),
               widths: Sequence[Sequence[int]] = ((32, 32, 32), (64, 64, 64), (64, 64)),
               dropout: float = 0.0, activation: str = 'relu', head: str = 'gap',
               input_size: Sequence[int] | None = None, *, rngs: nnx.Rngs):
    if len(kernel_sizes) != len(widths):
      raise errors.ConfigError(
          f'kernel_sizes {kernel_sizes} and widths {widths} need the same length')
    if head not in ('gap', 'dense'):
      raise errors.ConfigError(f"head must be 'gap' or 'dense', got {head!r}")
    if head == 'dense' and input_size is None:
      raise errors.ConfigError(
          "head='dense' needs input_size (the flatten fixes the number of positions)")
    act, stack, c = layers.activation(activation), [], in_channels
    for b, (k, block) in enumerate(zip(kernel_sizes, widths)):
      last = b == len(widths) - 1
      block = (*block, num_classes) if last and head == 'gap' else block
      for i, width in enumerate(block):
        stack.append(layers.Conv(c, width, k if i == 0 else 1, padding='same', rngs=rngs))
        if not (last and i == len(block) - 1 and head == 'gap'):
          stack.append(act)
        c = width
      if not last:
        stack.append(layers.MaxPool(3, 2, padding=1))
        if dropout:
          stack.append(nnx.Dropout(dropout, rngs=rngs))
    self.mlpconv = layers.Sequential(*stack, name='mlpconv')
    self.head, self.num_classes = head, num_classes
    if head == 'gap':
      self.pool = layers.GlobalAvgPool()
    else:  # the ablation: the same trunk with a flatten + dense classifier
      self.input_size = tuple(input_size)
      h, w = geometry.of(self.mlpconv).output_size(self.input_size)
      self.dense = nnx.Linear(h * w * c, num_classes, rngs=rngs)

  @property
  def geometry(self) -> geometry.Node:
    if self.head == 'gap':
      return geometry.chain(self.name, self.mlpconv.geometry, self.pool.geometry)
    dense = geometry.Dense('dense', geometry.of(self.mlpconv).output_size(self.input_size),
                           self.num_classes, geometry.count_params(self.dense))
    return geometry.chain(self.name, self.mlpconv.geometry, dense)

  def score_map(self, x: jax.Array) -> jax.Array:
    """Per-position class scores `(N, H', W', K)` before global average pooling (the net
    run densely; head='gap' only)."""
    if self.head != 'gap':
      raise errors.ConfigError("score_map needs head='gap' (a dense head has no score map)")
    return self.mlpconv(x)

  def __call__(self, x: jax.Array) -> jax.Array:
    geometry.check(self, x.shape)
    if self.head == 'gap':
      return self.pool(self.mlpconv(x))
    h = self.mlpconv(x)
    return self.dense(h.reshape(h.shape[0], -1))

  def shape_notes(self, size: Sequence[int]) -> list[str]:
    """Head parameters vs a flatten+dense head on the same features (the "parameter-rich" point)."""
    if self.head == 'dense':
      return []
    last_conv = [l for l in self.mlpconv.layers if isinstance(l, layers.Conv)][-1]
    c_in, k = last_conv.in_channels, self.num_classes
    h, w = geometry.of(self.mlpconv).output_size(size)
    conv_head = c_in * k + k
    dense_head = h * w * c_in * k + k
    return [f'head: 1x1 conv {c_in}->{k} + global average pooling = {conv_head:,} parameters; '
            f'a flatten+dense head on the {h}x{w}x{c_in} features at {size[0]}x{size[1]} would '
            f'have {dense_head:,} ({dense_head / conv_head:.0f}x), and only work at that size']
