"""resnet: ResNet-18/34/50/101 backbones (torchvision's layout) with an FCN or DeepLabv3 head.

The backbone is torchvision's ResNet v1.5: a 7x7 stride-2 stem conv, batch norm, ReLU and a
3x3 stride-2 max-pool, then four layers of residual blocks (BasicBlock for 18/34,
Bottleneck for 50/101) whose first block strides by 2 (layer 1 excepted) in its 3x3 conv,
with a 1x1 conv + batch norm on the shortcut where the shape changes. Every residual
block is a `layers.Merge` (`layers.residual`), so geometry, size checks, exact tiling and
export come from the layers, with no geometry written here.

`output_stride` (32, 16 or 8) is torchvision's `replace_stride_with_dilation`: layer 4
(16), or layers 3 and 4 (8), do not stride but dilate their 3x3 convs by the stride they
dropped; the first block of a dilated layer keeps the previous dilation, as torchvision's
`_make_layer` does. torchvision refuses dilation in BasicBlock; here a dilated BasicBlock
dilates both its 3x3 convs by the same rule (the tests build that reference in PyTorch).

Heads (`head`):
* 'fcn': torchvision's `FCNHead` (3x3 conv to in/4 channels, batch norm, ReLU, dropout
  0.1, 1x1 conv to the classes), as in `fcn_resnet50`;
* 'aspp': DeepLabv3's head (`deeplabv3_resnet50`): ASPP (a 1x1 conv and three 3x3 convs
  dilated by `aspp_rates`, and with `aspp_pooling=True` an image-pooling branch, each with
  batch norm and ReLU, concatenated, projected by a 1x1 conv to 256 channels, batch norm,
  ReLU, dropout 0.5), then a 3x3 conv, batch norm, ReLU and a 1x1 conv to the classes.
  The image-pooling branch sees the whole image: its output at every pixel depends on
  every pixel, so a net with it cannot be tiled exactly (`predict_tiled` refuses it, and
  `predict` on a large image is not the same function as on a training patch). Set
  `aspp_pooling=False` for exact tiling.

The scores are up-sampled by `output_stride` (bilinear, half-pixel centres: torchvision's
`F.interpolate(..., align_corners=False)`, which it applies to the input size): inputs
must be multiples of `output_stride` (the geometry says so), and the output is then the
input's size. `base_width` (64) and `aspp_width` (256) shrink the widths for tests; the
defaults are torchvision's (its `deeplabv3_resnet50` uses `aspp_rates` (12, 24, 36) at
output stride 8). `input_norm` ('imagenet' for torchvision's weights) normalises the input
(`layers.Normalize`); `fcn_jax.weights.load_torchvision` loads torchvision's weights (also
through `config.model.pretrained`).
"""

from typing import Any, Sequence

import jax
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import layers

DEPTHS = {18: ('basic', (2, 2, 2, 2)), 34: ('basic', (3, 4, 6, 3)),
          50: ('bottleneck', (3, 4, 6, 3)), 101: ('bottleneck', (3, 4, 23, 3))}
EXPANSION = {'basic': 1, 'bottleneck': 4}
DILATE = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
HEADS = ('fcn', 'aspp')


def _conv(c_in, c_out, k, rngs, *, stride=1, dilation=1, name=None):
  del name
  return layers.Conv(c_in, c_out, k, stride=stride, dilation=dilation,
                     padding=dilation * (k // 2), use_bias=False, rngs=rngs)


def _bn(c, rngs):
  # PyTorch's batch norm: momentum 0.1 (flax's 0.9 is the kept fraction), epsilon 1e-5.
  return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=rngs)


def block(kind: str, c_in: int, planes: int, *, stride: int, dilation: int, rngs: nnx.Rngs,
          name: str) -> layers.Merge:
  """One residual block: `relu(shortcut(x) + body(x))` is the Merge and the ReLU after it."""
  out = planes * EXPANSION[kind]
  if kind == 'basic':
    body = [_conv(c_in, planes, 3, rngs, stride=stride, dilation=dilation), _bn(planes, rngs),
            jax.nn.relu, _conv(planes, planes, 3, rngs, dilation=dilation), _bn(planes, rngs)]
  else:
    body = [_conv(c_in, planes, 1, rngs), _bn(planes, rngs), jax.nn.relu,
            _conv(planes, planes, 3, rngs, stride=stride, dilation=dilation), _bn(planes, rngs),
            jax.nn.relu, _conv(planes, out, 1, rngs), _bn(out, rngs)]
  if stride != 1 or c_in != out:
    shortcut = layers.Sequential(_conv(c_in, out, 1, rngs, stride=stride), _bn(out, rngs),
                                 name='downsample')
  else:
    shortcut = layers.identity
  return layers.residual(layers.Sequential(*body, name='body'), shortcut, name=name)


def backbone(depth: int, in_channels: int, output_stride: int, base_width: int,
             rngs: nnx.Rngs) -> tuple[layers.Sequential, int]:
  """The stem and layers 1-4 (torchvision's `conv1 ... layer4`), and their output channels."""
  if depth not in DEPTHS:
    raise errors.ConfigError(f'depth must be one of {sorted(DEPTHS)}, got {depth}')
  if output_stride not in DILATE:
    raise errors.ConfigError(f'output_stride must be one of {sorted(DILATE)}, got '
                             f'{output_stride}')
  kind, counts = DEPTHS[depth]
  stem = layers.Sequential(_conv(in_channels, base_width, 7, rngs, stride=2),
                           _bn(base_width, rngs), jax.nn.relu,
                           layers.MaxPool(3, 2, padding=1), name='stem')
  stages, c, dilation = [stem], base_width, 1
  for index, (count, dilate) in enumerate(zip(counts, (False, *DILATE[output_stride]))):
    planes = base_width * 2 ** index
    stride = 1 if index == 0 else 2
    previous = dilation
    if dilate:
      dilation, stride = dilation * stride, 1
    blocks = []
    for b in range(count):
      blocks.append(block(kind, c, planes, stride=stride if b == 0 else 1,
                          dilation=previous if b == 0 else dilation, rngs=rngs,
                          name=f'layer{index + 1}.{b}'))
      blocks.append(jax.nn.relu)
      c = planes * EXPANSION[kind]
    stages.append(layers.Sequential(*blocks, name=f'layer{index + 1}'))
  return layers.Sequential(*stages, name=f'resnet{depth}'), c


def fcn_head(c_in: int, num_classes: int, rngs: nnx.Rngs) -> layers.Sequential:
  """torchvision's FCNHead."""
  inner = c_in // 4
  return layers.Sequential(_conv(c_in, inner, 3, rngs), _bn(inner, rngs), jax.nn.relu,
                           nnx.Dropout(0.1, rngs=rngs),
                           layers.pointwise(inner, num_classes, rngs=rngs), name='fcn_head')


class ImagePooling(nnx.Module):
  """ASPP's image-pooling branch: global mean, 1x1 conv, batch norm, ReLU, broadcast back to
  the input's size (torchvision's bilinear resize of a 1x1 map is a broadcast)."""

  def __init__(self, c_in: int, c_out: int, rngs: nnx.Rngs):
    self.conv = _conv(c_in, c_out, 1, rngs)
    self.bn = _bn(c_out, rngs)

  @property
  def geometry(self) -> geometry.Node:
    n_params = self.conv.geometry.params + 2 * self.conv.out_channels
    return geometry.Broadcast('image_pooling', self.conv.out_channels, n_params)

  def __call__(self, x: jax.Array) -> jax.Array:
    pooled = x.mean(axis=(1, 2), keepdims=True)
    y = jax.nn.relu(self.bn(self.conv(pooled)))
    return jax.numpy.broadcast_to(y, (*x.shape[:3], y.shape[-1]))


def aspp_head(c_in: int, num_classes: int, rates: Sequence[int], pooling: bool,
              rngs: nnx.Rngs, width: int = 256) -> layers.Sequential:
  """DeepLabv3's head (torchvision's `DeepLabHead`)."""
  branches: list[Any] = [layers.Sequential(_conv(c_in, width, 1, rngs), _bn(width, rngs),
                                           jax.nn.relu, name='aspp_1x1')]
  for rate in rates:
    branches.append(layers.Sequential(_conv(c_in, width, 3, rngs, dilation=rate),
                                      _bn(width, rngs), jax.nn.relu, name=f'aspp_rate{rate}'))
  if pooling:
    branches.append(ImagePooling(c_in, width, rngs))
  c = width * len(branches)
  return layers.Sequential(
      layers.Merge(*branches, combine='concat', name='aspp'),
      _conv(c, width, 1, rngs), _bn(width, rngs), jax.nn.relu, nnx.Dropout(0.5, rngs=rngs),
      _conv(width, width, 3, rngs), _bn(width, rngs), jax.nn.relu,
      layers.pointwise(width, num_classes, rngs=rngs), name='aspp_head')


class Model(nnx.Module):
  """ResNet + FCN or DeepLabv3 head; per-pixel logits `(N, H, W, num_classes)` for inputs
  whose sides are multiples of `output_stride`."""

  def __init__(self, in_channels: int = 3, num_classes: int = 21, depth: int = 50,
               output_stride: int = 8, head: str = 'fcn', base_width: int = 64,
               aspp_rates: Sequence[int] = (12, 24, 36), aspp_pooling: bool = True,
               aspp_width: int = 256, input_norm: str | None = None, *,
               rngs: nnx.Rngs):
    if head not in HEADS:
      raise errors.ConfigError(f'head must be one of {HEADS}, got {head!r}')
    self.name = f'{"deeplabv3" if head == "aspp" else "fcn"}_resnet{depth}'
    self.output_stride = output_stride
    self.normalize = layers.Normalize(input_norm)
    self.backbone, c = backbone(depth, in_channels, output_stride, base_width, rngs)
    self.head = (fcn_head(c, num_classes, rngs) if head == 'fcn' else
                 aspp_head(c, num_classes, tuple(aspp_rates), aspp_pooling, rngs, aspp_width))
    self.upsample = layers.Upsample(output_stride, method='bilinear')

  @property
  def geometry(self) -> geometry.Node:
    return geometry.chain(self.name, geometry.Multiple('input', self.output_stride),
                          self.backbone.geometry, self.head.geometry,
                          self.upsample.geometry.with_name('upsample'))

  def __call__(self, x: jax.Array) -> jax.Array:
    geometry.check(self, x.shape)
    return self.upsample(self.head(self.backbone(self.normalize(x))))
