"""unet: U-Net (Ronneberger et al., 2015) with configurable depth, width and padding.

Each level: two 3x3 convs, then (except at the bottom) 2x2 max-pool, the next
level, 2x up-sampling to half the channels, concatenation with this level's
features, and two more convs. `depth` counts levels (5 in the paper).

* `padding='valid'` is the original: convs shrink the maps, skip features are
  centre-cropped to the decoder's size (offsets from the geometry, not
  hard-coded), and the output is smaller than the input: 572x572 -> 388x388 at
  depth 5. Every max-pool must see an even size; `geometry.of(model)` lists the
  valid input sizes (572 + 16k at depth 5).
* `padding='same'`: output = input size, for multiples of `2**(depth-1)`.
* `upsample='transpose'` (2x2 stride-2 transposed conv, the paper) or
  `'bilinear'` (bilinear resize then a 3x3 conv).
* `norm=None | 'batch' | 'group'` after every 3x3 conv.
"""

import jax
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import layers
from fcn_jax.models.common import norm_layer


def double_conv(c_in: int, c_out: int, *, padding: str, norm: str | None, act, rngs: nnx.Rngs,
                name: str) -> layers.Sequential:
  stack = []
  for c in (c_in, c_out):
    stack += [layers.Conv(c, c_out, 3, padding=padding, rngs=rngs), norm_layer(norm, c_out, rngs),
              act]
  return layers.Sequential(*stack, name=name)


def level(index: int, depth: int, c_in: int, width: int, *, padding: str, upsample: str,
          norm: str | None, act, rngs: nnx.Rngs) -> layers.Sequential:
  """One U-Net level and, recursively, the levels below it: two convs, then (above the
  bottom) a skip merge of their features with pool -> the level below -> up, and two convs.

  The skip is a `layers.Merge`, so the crop of the features to the up-sampled path comes
  from the geometry (valid padding) and no geometry is written here.
  """
  encode = double_conv(c_in, width, padding=padding, norm=norm, act=act, rngs=rngs,
                       name=f'enc{index}')
  if index == depth - 1:
    return layers.Sequential(encode, name=f'level{index}')
  pool = layers.MaxPool(2, exact=True)
  inner = level(index + 1, depth, width, 2 * width, padding=padding, upsample=upsample,
                norm=norm, act=act, rngs=rngs)
  if upsample == 'transpose':
    up = layers.ConvTranspose(2 * width, width, 2, stride=2, rngs=rngs)
  elif upsample == 'bilinear':
    up = layers.Sequential(layers.Upsample(2, method='bilinear'),
                           layers.Conv(2 * width, width, 3, padding=padding, rngs=rngs), name='up')
  else:
    raise errors.ConfigError(f"upsample must be 'transpose' or 'bilinear', got {upsample!r}")
  decode = double_conv(2 * width, width, padding=padding, norm=norm, act=act, rngs=rngs,
                       name=f'dec{index}')
  below = layers.Sequential(pool, inner, up, name=f'down{index}')
  skip = layers.Merge(layers.identity, below, reference=1, combine='concat', name=f'skip{index}')
  return layers.Sequential(encode, skip, decode, name=f'level{index}')


class Model(nnx.Module):
  """U-Net; returns per-pixel logits `(N, H', W', num_classes)`."""
  name = 'unet'

  def __init__(self, in_channels: int = 1, num_classes: int = 2, depth: int = 5,
               width: int = 64, padding: str = 'valid', upsample: str = 'transpose',
               norm: str | None = None, activation: str = 'relu', *, rngs: nnx.Rngs):
    if padding not in ('valid', 'same'):
      raise errors.ConfigError(f"padding must be 'valid' or 'same', got {padding!r}")
    if depth < 1:
      raise errors.ConfigError(f'depth must be at least 1, got {depth}')
    self.body = level(0, depth, in_channels, width, padding=padding, upsample=upsample, norm=norm,
                      act=layers.activation(activation), rngs=rngs)
    self.head = layers.pointwise(width, num_classes, rngs=rngs)

  @property
  def geometry(self) -> geometry.Node:
    return geometry.chain(self.name, self.body.geometry, self.head.geometry.with_name('head'))

  def __call__(self, x: jax.Array) -> jax.Array:
    geometry.check(self, x.shape)
    return self.head(self.body(x))
