"""PyTorch peers of fcn_jax models, with the Flax weights copied in, for like-for-like benchmarks.

`torch_peer(model)` builds the same function in PyTorch (NCHW) for the models
the benchmark compares: `patch_net` (stride-2 convs + 1x1 head, any padding
'same'/'valid' with zero padding), `unet` with `padding='same'`,
`upsample='transpose'` and no normalisation. Layout: Flax conv kernels are
`(kh, kw, in, out)`, PyTorch's `(out, in, kh, kw)`; transposed-conv kernels
are `(kh, kw, in, out)` with PyTorch semantics here and `(in, out, kh, kw)` in
PyTorch. `fcn8s` (and 16s/32s) without dropout: VGG blocks with ceil-mode pools,
fc6/fc7 as convs, skip fusions cropped at the offsets the Flax model's geometry
gives. `tests/test_peers.py` checks the outputs are equal.
"""

import numpy as np
import torch
from torch import nn

from fcn_jax import layers


def _conv(layer: layers.Conv) -> nn.Conv2d:
  if layer.padding_mode != 'zeros' or layer.groups != 1:
    raise ValueError('the peer supports zero-padded, ungrouped convs only')
  (top, bottom), (left, right) = layer.padding
  if top != bottom or left != right:
    raise ValueError(f'the peer needs symmetric padding, got {layer.padding}')
  conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                   (top, left), layer.dilation, bias=layer.bias is not None)
  with torch.no_grad():
    conv.weight.copy_(torch.from_numpy(np.array(layer.kernel[...])).permute(3, 2, 0, 1))
    if layer.bias is not None:
      conv.bias.copy_(torch.from_numpy(np.array(layer.bias[...])))
  return conv


def _conv_transpose(layer: layers.ConvTranspose) -> nn.ConvTranspose2d:
  (top, bottom), (left, right) = layer.padding
  if top != bottom or left != right or any(layer.output_padding):
    raise ValueError('the peer needs symmetric padding and no output padding')
  up = nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                          (top, left), dilation=layer.dilation, bias=layer.bias is not None)
  with torch.no_grad():
    up.weight.copy_(torch.from_numpy(np.array(layer.kernel[...])).permute(2, 3, 0, 1))
    if layer.bias is not None:
      up.bias.copy_(torch.from_numpy(np.array(layer.bias[...])))
  return up


def _sequential(seq: layers.Sequential) -> nn.Sequential:
  out = []
  for layer in seq.layers:
    if isinstance(layer, layers.Conv):
      out.append(_conv(layer))
    elif isinstance(layer, layers.MaxPool) and layer.padding == ((0, 0), (0, 0)):
      out.append(nn.MaxPool2d(layer.window, layer.stride, ceil_mode=layer.ceil_mode))
    elif layer is layers.identity:
      continue
    elif getattr(layer, '__name__', '') == 'relu':
      out.append(nn.ReLU())
    else:
      raise ValueError(f'no PyTorch peer for {layer!r}')
  return nn.Sequential(*out)


class _UNetLevel(nn.Module):

  def __init__(self, level):
    super().__init__()
    self.encode = _sequential(level.encode)
    self.is_bottom = level.is_bottom
    if not self.is_bottom:
      self.pool = nn.MaxPool2d(2)
      self.inner = _UNetLevel(level.inner)
      if not isinstance(level.up, layers.ConvTranspose):
        raise ValueError("the U-Net peer supports upsample='transpose' only")
      self.up = _conv_transpose(level.up)
      self.decode = _sequential(level.decode)

  def forward(self, x):
    x = self.encode(x)
    if self.is_bottom:
      return x
    below = self.up(self.inner(self.pool(x)))
    return self.decode(torch.cat([x, below], dim=1))


class _PatchNet(nn.Module):

  def __init__(self, model):
    super().__init__()
    self.features, self.head = _sequential(model.features), _sequential(model.head)

  def forward(self, x):
    return self.head(self.features(x))


class _UNet(nn.Module):

  def __init__(self, model):
    super().__init__()
    if model.body.encode.layers[0].padding == ((0, 0), (0, 0)):
      raise ValueError("the U-Net peer supports padding='same' only (no skip crops)")
    self.body = _UNetLevel(model.body)
    self.head = _conv(model.head)

  def forward(self, x):
    return self.head(self.body(x))


class _FCN(nn.Module):
  """FCN-32s/16s/8s; the crop offsets of every fusion come from the Flax model's geometry."""

  def __init__(self, model):
    super().__init__()
    self.first_skip = model.first_skip
    self.blocks = nn.ModuleList(_sequential(b) for b in model.blocks)
    self.classifier = _sequential(model.classifier)
    self.score_pool = nn.ModuleList(_conv(c) for c in model.score_pool)
    self.up2 = nn.ModuleList(_conv_transpose(u) for u in model.up2)
    self.final_up = _conv_transpose(model.final_up)
    self._offsets, self._crop_offsets = {}, model.crop_offsets

  def _fused(self, b, x, offsets):
    if b == 5:
      return self.classifier(x)
    k = b - self.first_skip
    deeper = self.up2[k](self._fused(b + 1, self.blocks[b](x), offsets))
    (top, left), (h, w) = offsets[f'score_pool{b}'], deeper.shape[2:]
    return self.score_pool[k](x)[:, :, top:top + h, left:left + w] + deeper

  def forward(self, x):
    size = tuple(x.shape[2:])
    if size not in self._offsets:
      self._offsets[size] = self._crop_offsets(size)
    offsets = self._offsets[size]
    h = x
    for block in self.blocks[:self.first_skip]:
      h = block(h)
    scores = self.final_up(self._fused(self.first_skip, h, offsets))
    top, left = offsets['final']
    return scores[:, :, top:top + size[0], left:left + size[1]]


def torch_peer(model) -> nn.Module:
  """The PyTorch module computing the same function as `model` (NCHW in and out)."""
  name = getattr(model, 'name', type(model).__name__)
  if name == 'patch_net':
    return _PatchNet(model)
  if name == 'unet':
    return _UNet(model)
  if name in ('fcn32s', 'fcn16s', 'fcn8s'):
    return _FCN(model)
  raise ValueError(f'no PyTorch peer for {name!r} (peers: patch_net, unet, fcn8s/16s/32s)')
