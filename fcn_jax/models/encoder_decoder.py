"""encoder_decoder: conv + pooling down, up-sampling + conv up, output the input's size.

The reference example with `features=(8, 16)`: 64x64x3 -> conv 64x64x8 -> pool
32x32x8 -> conv 32x32x16 -> pool 16x16x16 -> up 32x32x16 -> conv 32x32x8 -> up
64x64x8 -> conv 64x64x3. Variants:

* `upsample='nearest' | 'bilinear'`: resize by 2;
* `upsample='unpool'` (SegNet-style, "segnet_lite"): `MaxUnpool` puts values back
  at the positions the encoder's max-pools took them from (the switches);
* `gated=True`: every conv is a `GatedConv`.

Every pooling must see an even size (so the output has exactly the input's
size): inputs must be multiples of `2**len(features)`.
"""

from typing import Sequence

import jax
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import layers

UPSAMPLE = ('nearest', 'bilinear', 'unpool')


class Model(nnx.Module):
  """Same-size image-to-image net; returns `(N, H, W, out_channels)`."""
  name = 'encoder_decoder'

  def __init__(self, in_channels: int = 3, out_channels: int = 3,
               features: Sequence[int] = (8, 16), kernel_size: int = 3,
               upsample: str = 'nearest', gated: bool = False, padding_mode: str = 'zeros',
               activation: str = 'relu', *, rngs: nnx.Rngs):
    if upsample not in UPSAMPLE:
      raise errors.ConfigError(f'upsample must be one of {UPSAMPLE}, got {upsample!r}')
    conv = layers.GatedConv if gated else layers.Conv
    self.activation = layers.activation(activation)
    self.upsample = upsample
    widths = list(features)
    ins = [in_channels] + widths[:-1]
    self.down_convs = nnx.List([conv(i, o, kernel_size, padding_mode=padding_mode, rngs=rngs)
                                for i, o in zip(ins, widths)])
    self.pools = nnx.List([layers.MaxPool(2, exact=True, return_switches=upsample == 'unpool')
                           for _ in widths])
    outs = widths[-2::-1] + [out_channels]
    self.ups = nnx.List([layers.MaxUnpool(2) if upsample == 'unpool' else
                         layers.Upsample(2, method=upsample) for _ in widths])
    self.up_convs = nnx.List([conv(i, o, kernel_size, padding_mode=padding_mode, rngs=rngs)
                              for i, o in zip(widths[::-1], outs)])

  @property
  def geometry(self) -> geometry.Node:
    nodes = []
    for i, (conv, pool) in enumerate(zip(self.down_convs, self.pools)):
      nodes += [conv.geometry.with_name(f'down{i}.conv'), pool.geometry.with_name(f'down{i}.pool')]
    for i, (up, conv) in enumerate(zip(self.ups, self.up_convs)):
      nodes += [up.geometry.with_name(f'up{i}.{self.upsample}'),
                conv.geometry.with_name(f'up{i}.conv')]
    return geometry.chain(self.name, *nodes)

  def __call__(self, x: jax.Array) -> jax.Array:
    geometry.check(self, x.shape)
    switches = []
    for conv, pool in zip(self.down_convs, self.pools):
      x = pool(self.activation(conv(x)))
      if self.upsample == 'unpool':
        x, s = x
        switches.append(s)
    for i, (up, conv) in enumerate(zip(self.ups, self.up_convs)):
      x = up(x, switches.pop()) if self.upsample == 'unpool' else up(x)
      x = conv(x)
      if i < len(self.up_convs) - 1:
        x = self.activation(x)
    return x
