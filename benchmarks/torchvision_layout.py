"""torchvision's model layouts in plain PyTorch, to test weight loading without torchvision.

Runs in the PyTorch interpreter (imports only NumPy and PyTorch; `peers.TorchWorker` calls
`reference`). The modules have torchvision's attribute names, so their `state_dict()` keys
are torchvision's: `resnet18/34/50/101` (`conv1`, `bn1`, `layer1.0.conv1`, ...,
`layer1.0.downsample.0`, `fc`), `fcn_resnet50` / `deeplabv3_resnet50` (`backbone.*` as
`IntermediateLayerGetter` keeps them, `classifier.*`: `FCNHead`, `DeepLabHead` with
`ASPP`), and `vgg16` (`features.0` ... `features.28`, `classifier.0/3/6`), written from
torchvision's `models/resnet.py`, `models/segmentation/{fcn,deeplabv3}.py` and
`models/vgg.py`. Widths are scaled down for tests (`base_width`, `aspp_width`,
`vgg_widths`); names and structure are unchanged. torchvision's BasicBlock refuses
dilation; here (as in fcn_jax) a dilated BasicBlock dilates both its 3x3 convs.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _conv3x3(c_in, c_out, stride=1, dilation=1):
  return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation,
                   bias=False)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, c_in, planes, stride=1, downsample=None, dilation=1):
    super().__init__()
    self.conv1 = _conv3x3(c_in, planes, stride, dilation)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = _conv3x3(planes, planes, dilation=dilation)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, c_in, planes, stride=1, downsample=None, dilation=1):
    super().__init__()
    self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = _conv3x3(planes, planes, stride, dilation)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    return self.relu(self.bn3(self.conv3(out)) + identity)


LAYERS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
          50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
  """torchvision's ResNet (v1.5) with `replace_stride_with_dilation`."""

  def __init__(self, depth, base_width=64, replace_stride_with_dilation=(False, False, False),
               num_classes=1000):
    super().__init__()
    block, counts = LAYERS[depth]
    self.inplanes, self.dilation = base_width, 1
    self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(base_width)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    self.layer1 = self._make_layer(block, base_width, counts[0])
    for i in range(1, 4):
      setattr(self, f'layer{i + 1}', self._make_layer(block, base_width * 2 ** i, counts[i],
                                                      2, replace_stride_with_dilation[i - 1]))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(base_width * 8 * block.expansion, num_classes)

  def _make_layer(self, block, planes, count, stride=1, dilate=False):
    previous = self.dilation
    if dilate:
      self.dilation *= stride
      stride = 1
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
          nn.BatchNorm2d(planes * block.expansion))
    blocks = [block(self.inplanes, planes, stride, downsample, previous)]
    self.inplanes = planes * block.expansion
    blocks += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, count)]
    return nn.Sequential(*blocks)

  def features(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Backbone(nn.Module):
  """`IntermediateLayerGetter(resnet, {'layer4': 'out'})`: the ResNet without avgpool and fc."""

  def __init__(self, resnet):
    super().__init__()
    for name in ('conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4'):
      setattr(self, name, getattr(resnet, name))

  forward = ResNet.features


class FCNHead(nn.Sequential):

  def __init__(self, c_in, channels):
    inter = c_in // 4
    super().__init__(nn.Conv2d(c_in, inter, 3, padding=1, bias=False), nn.BatchNorm2d(inter),
                     nn.ReLU(), nn.Dropout(0.1), nn.Conv2d(inter, channels, 1))


class ASPPPooling(nn.Sequential):

  def __init__(self, c_in, c_out):
    super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1, bias=False),
                     nn.BatchNorm2d(c_out), nn.ReLU())

  def forward(self, x):
    size = x.shape[-2:]
    for module in self:
      x = module(x)
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


class ASPP(nn.Module):

  def __init__(self, c_in, rates, c_out=256):
    super().__init__()
    convs = [nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
                           nn.ReLU())]
    for rate in rates:
      convs.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=rate, dilation=rate,
                                           bias=False), nn.BatchNorm2d(c_out), nn.ReLU()))
    convs.append(ASPPPooling(c_in, c_out))
    self.convs = nn.ModuleList(convs)
    self.project = nn.Sequential(nn.Conv2d(len(convs) * c_out, c_out, 1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(), nn.Dropout(0.5))

  def forward(self, x):
    return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):

  def __init__(self, c_in, num_classes, rates=(12, 24, 36), width=256):
    super().__init__(ASPP(c_in, rates, width), nn.Conv2d(width, width, 3, padding=1, bias=False),
                     nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, num_classes, 1))


class Segmentation(nn.Module):
  """torchvision's `FCN` / `DeepLabV3` (`_SimpleSegmentationModel`) without the aux head."""

  def __init__(self, backbone, classifier):
    super().__init__()
    self.backbone, self.classifier = backbone, classifier

  def forward(self, x):
    size = x.shape[-2:]
    return F.interpolate(self.classifier(self.backbone(x)), size=size, mode='bilinear',
                         align_corners=False)


class VGG16Features(nn.Module):
  """torchvision's `vgg16` (`features`, `classifier`), run as FCN runs it: the classifier's
  fc6/fc7 as convolutions (7x7, 1x1) on the features, returning fc7's activations."""

  def __init__(self, widths=(64, 128, 256, 512, 512), fc_width=4096):
    super().__init__()
    layers, c = [], 3
    for width, repeats in zip(widths, (2, 2, 3, 3, 3)):
      for _ in range(repeats):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
        c = width
      layers.append(nn.MaxPool2d(2, 2))
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d(7)
    self.classifier = nn.Sequential(nn.Linear(c * 49, fc_width), nn.ReLU(True), nn.Dropout(),
                                    nn.Linear(fc_width, fc_width), nn.ReLU(True), nn.Dropout(),
                                    nn.Linear(fc_width, 1000))
    self.c = c

  def forward(self, x):
    x = self.features(x)
    fc6, fc7 = self.classifier[0], self.classifier[3]
    x = F.relu(F.conv2d(x, fc6.weight.reshape(-1, self.c, 7, 7), fc6.bias))
    return F.relu(F.conv2d(x, fc7.weight[:, :, None, None], fc7.bias))


def build(spec: dict) -> nn.Module:
  """`spec['arch']`: 'resnet', 'fcn', 'deeplabv3' (with `depth`, `output_stride`,
  `base_width`, ...) or 'vgg16' (`vgg_widths`, `fc_width`)."""
  arch = spec['arch']
  if arch == 'vgg16':
    return VGG16Features(tuple(spec.get('vgg_widths', (64, 128, 256, 512, 512))),
                         spec.get('fc_width', 4096))
  dilate = {32: (False, False, False), 16: (False, False, True),
            8: (False, True, True)}[spec.get('output_stride', 32)]
  resnet = ResNet(spec['depth'], spec.get('base_width', 64), dilate)
  if arch == 'resnet':
    return resnet
  c = spec.get('base_width', 64) * 8 * LAYERS[spec['depth']][0].expansion
  k = spec.get('num_classes', 21)
  head = (FCNHead(c, k) if arch == 'fcn' else
          DeepLabHead(c, k, tuple(spec.get('aspp_rates', (12, 24, 36))),
                      spec.get('aspp_width', 256)))
  return Segmentation(Backbone(resnet), head)


def reference(spec: dict, x: np.ndarray, seed: int = 0) -> tuple[dict, np.ndarray]:
  """A randomly initialised model of `spec` (batch norm statistics and affine parameters
  random too, as a trained net's are): its state dict as NumPy arrays, and its eval-mode
  output on the NHWC batch `x` (NHWC; a plain ResNet returns layer4's features)."""
  torch.manual_seed(seed)
  module = build(spec)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  module.eval()
  with torch.no_grad():
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2)
    out = module.features(inputs) if spec['arch'] == 'resnet' else module(inputs)
  state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
  return state, out.permute(0, 2, 3, 1).numpy()
