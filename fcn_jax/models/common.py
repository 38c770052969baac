"""Building blocks shared by several models."""

from typing import Sequence

from flax import nnx

from fcn_jax import errors
from fcn_jax import layers

DOWNSAMPLE = ('stride', 'maxpool', 'avgpool')


def down_stack(in_channels: int, features: Sequence[int], *, kernel_size: int = 3,
               downsample: str = 'stride', padding: str = 'same', padding_mode: str = 'zeros',
               activation: str = 'relu', norm: str | None = None, rngs: nnx.Rngs,
               name: str = 'features') -> layers.Sequential:
  """One conv (+ `norm`, see `norm_layer`) + activation per width in `features`, each halving
  H and W.

  `downsample='stride'` uses stride-2 convs; 'maxpool' / 'avgpool' use stride-1
  convs followed by 2x2 pooling.
  """
  if downsample not in DOWNSAMPLE:
    raise errors.ConfigError(f'downsample must be one of {DOWNSAMPLE}, got {downsample!r}')
  act, stack, c = layers.activation(activation), [], in_channels
  for width in features:
    stride = 2 if downsample == 'stride' else 1
    stack += [layers.Conv(c, width, kernel_size, stride=stride, padding=padding,
                          padding_mode=padding_mode, rngs=rngs)]
    if norm not in (None, 'none'):  # no identity entry without norm: layer indices (and so
      stack.append(norm_layer(norm, width, rngs))  # checkpoints' parameter paths) stay as they were
    stack.append(act)
    if downsample != 'stride':
      stack.append((layers.MaxPool if downsample == 'maxpool' else layers.AvgPool)(2))
    c = width
  return layers.Sequential(*stack, name=name)


def norm_layer(kind: str | None, channels: int, rngs: nnx.Rngs):
  """'batch' | 'group' (up to 8 groups) | None (identity)."""
  if kind is None or kind == 'none':
    return layers.identity
  if kind == 'batch':
    return nnx.BatchNorm(channels, rngs=rngs)
  if kind == 'group':
    groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nnx.GroupNorm(channels, num_groups=groups, rngs=rngs)
  raise errors.ConfigError(f"norm must be 'batch', 'group' or None, got {kind!r}")
