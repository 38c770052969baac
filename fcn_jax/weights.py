"""Pretrained weights: torchvision state dicts into fcn_jax's ResNets and VGG-16 (FCN).

  model = models.get_model(dict(name='resnet', depth=50, pretrained='resnet50.safetensors',
                                input_norm='imagenet'), rngs=nnx.Rngs(0))
  python -m fcn_jax.train --config=configs/fcn_resnet50.py \\
      --config.model.pretrained=fcn_resnet50_coco.safetensors ...

Files: `.safetensors` (read with the `safetensors` library, no PyTorch needed), `.npz`
(NumPy), or `.pth` / `.pt` (read with PyTorch where it is installed in this Python; else
convert it once where PyTorch is: the error message gives the command). Weights cannot be
downloaded here; get torchvision's files on a connected machine.

What loads into what (names as torchvision's `state_dict()` has them):
* `resnet` models: an ImageNet classifier (`resnet18` ... `resnet101`: `conv1`, `bn1`,
  `layer1.0.conv1`, ...; its `fc` is not used) fills the backbone and leaves the head as
  initialised; a segmentation model (`fcn_resnet50`, `deeplabv3_resnet50`: `backbone.*`,
  `classifier.*`; `aux_classifier.*` is not used) fills backbone and head.
* `fcn` (Long et al.'s FCN on VGG-16): torchvision's `vgg16` fills the five conv blocks
  (`features.*`) and fc6/fc7 (`classifier.0`, `classifier.3`, reshaped into 7x7 and 1x1
  convolutions, as the paper's net surgery does); its 1000-way `classifier.6` is not used.

Conv kernels go from PyTorch's OIHW to HWIO, batch norm's `weight`, `bias`, `running_mean`,
`running_var` to `scale`, `bias`, `mean`, `var` (torchvision's epsilon 1e-5 is fcn_jax's
ResNet's). Every missing, unexpected or mis-shaped entry is reported at once, before
anything is copied (`surgery.copy_weights`), so a failed load leaves the model untouched.

Input normalisation goes with the weights: `input_norm='imagenet'` (torchvision: RGB in
[0, 1], minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225)) or
`'caffe'` (the original VGG-16 / FCN weights: BGR in [0, 255] minus (103.939, 116.779,
123.68)), applied by the model's first layer (`layers.Normalize`), so training,
evaluation, prediction and export all see it.
"""

import os
import re
from typing import Any, Iterator

import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import layers
from fcn_jax import surgery

NOT_USED = re.compile(r'(^|\.)num_batches_tracked$|^fc\.|^aux_classifier\.|^classifier\.6\.')


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """`{name: array}` of a `.safetensors`, `.npz` or `.pth`/`.pt` file."""
  if not os.path.exists(path):
    raise errors.ConfigError(f'pretrained weights {path} do not exist')
  ext = os.path.splitext(path)[1].lower()
  try:
    if ext == '.safetensors':
      from safetensors import numpy as safetensors_numpy  # pylint: disable=import-outside-toplevel
      return dict(safetensors_numpy.load_file(path))
    if ext == '.npz':
      with np.load(path) as f:
        return {k: f[k] for k in f.files}
    if ext in ('.pth', '.pt'):
      return _read_torch(path)
  except errors.UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except (a corrupt file is the user's to fix)
    raise errors.ConfigError(f'pretrained weights {path} cannot be read: {type(e).__name__}: '
                             f'{str(e).splitlines()[0] if str(e) else ""}') from None
  raise errors.ConfigError(f'pretrained weights {path}: use a .safetensors, .npz or .pth file')


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    out = os.path.splitext(path)[0] + '.npz'
    raise errors.ConfigError(
        f'{path} is a PyTorch file and PyTorch is not installed in this Python: convert it '
        f'once where PyTorch is, python -c "import torch, numpy; sd = torch.load(\'{path}\', '
        f'map_location=\'cpu\'); sd = sd.get(\'state_dict\', sd); numpy.savez(\'{out}\', '
        f'**{{k: v.numpy() for k, v in sd.items()}})", and give {out}') from None
  state = torch.load(path, map_location='cpu', weights_only=True)
  state = state.get('state_dict', state) if isinstance(state, dict) else state
  return {k: v.detach().numpy() for k, v in state.items()}


# --------------------------------------------------------------------------
# torchvision's names of fcn_jax's parameters: (name, variable, how to convert).


def _conv(prefix: str, conv: layers.Conv) -> Iterator[tuple[str, nnx.Variable, str]]:
  yield f'{prefix}.weight', conv.kernel, 'oihw'
  if conv.bias is not None:
    yield f'{prefix}.bias', conv.bias, 'same'


def _bn(prefix: str, bn: nnx.BatchNorm) -> Iterator[tuple[str, nnx.Variable, str]]:
  for theirs, ours in (('weight', 'scale'), ('bias', 'bias'), ('running_mean', 'mean'),
                       ('running_var', 'var')):
    yield f'{prefix}.{theirs}', getattr(bn, ours), 'same'


def _resnet_backbone(backbone, prefix: str) -> Iterator[tuple[str, nnx.Variable, str]]:
  stem, *stages = backbone.layers
  yield from _conv(f'{prefix}conv1', stem.layers[0])
  yield from _bn(f'{prefix}bn1', stem.layers[1])
  for i, stage in enumerate(stages):
    for b, merge in enumerate(stage.layers[::2]):  # blocks, each followed by its ReLU
      name = f'{prefix}layer{i + 1}.{b}'
      shortcut, body = merge.branches
      convs = [l for l in body.layers if isinstance(l, layers.Conv)]
      norms = [l for l in body.layers if isinstance(l, nnx.BatchNorm)]
      for k, (conv, bn) in enumerate(zip(convs, norms)):
        yield from _conv(f'{name}.conv{k + 1}', conv)
        yield from _bn(f'{name}.bn{k + 1}', bn)
      if isinstance(shortcut, layers.Sequential):
        yield from _conv(f'{name}.downsample.0', shortcut.layers[0])
        yield from _bn(f'{name}.downsample.1', shortcut.layers[1])


def _sequential_indexed(prefix: str, seq) -> Iterator[tuple[str, nnx.Variable, str]]:
  """Convs and batch norms of a Sequential whose indices are torchvision's."""
  for i, layer in enumerate(seq.layers):
    if isinstance(layer, layers.Conv):
      yield from _conv(f'{prefix}.{i}', layer)
    elif isinstance(layer, nnx.BatchNorm):
      yield from _bn(f'{prefix}.{i}', layer)


def _resnet_head(head) -> Iterator[tuple[str, nnx.Variable, str]]:
  if head.name == 'fcn_head':  # conv, bn, relu, dropout, conv: torchvision's indices
    yield from _sequential_indexed('classifier', head)
    return
  aspp, *rest = head.layers
  for i, branch in enumerate(aspp.branches):
    if isinstance(branch, layers.Sequential):
      yield from _sequential_indexed(f'classifier.0.convs.{i}', branch)
    else:  # ImagePooling: torchvision's ASPPPooling is (pool, conv, bn, relu)
      yield from _conv(f'classifier.0.convs.{i}.1', branch.conv)
      yield from _bn(f'classifier.0.convs.{i}.2', branch.bn)
  # ours: aspp, project conv, bn, relu, dropout, conv3x3, bn, relu, conv1x1
  yield from _conv('classifier.0.project.0', rest[0])
  yield from _bn('classifier.0.project.1', rest[1])
  yield from _conv('classifier.1', rest[4])
  yield from _bn('classifier.2', rest[5])
  yield from _conv('classifier.4', rest[7])


def _vgg(model) -> Iterator[tuple[str, nnx.Variable, str]]:
  index = 0
  for block in model.parts()['blocks']:
    for layer in block.layers:  # conv, relu, ..., pool: one torchvision index each
      if isinstance(layer, layers.Conv):
        yield from _conv(f'features.{index}', layer)
      index += 1
  fc6, fc7 = [l for l in model.parts()['classifier'].layers if isinstance(l, layers.Conv)][:2]
  yield 'classifier.0.weight', fc6.kernel, 'linear'
  yield 'classifier.0.bias', fc6.bias, 'same'
  yield 'classifier.3.weight', fc7.kernel, 'linear'
  yield 'classifier.3.bias', fc7.bias, 'same'


def torchvision_names(model: nnx.Module, state: dict[str, Any]) -> list[tuple[str, Any, str]]:
  """`(torchvision name, variable, conversion)` of every parameter `state` should fill."""
  kind = type(model).__module__.rsplit('.', 1)[-1]
  if kind == 'resnet':
    segmentation = any(k.startswith('backbone.') for k in state)
    names = list(_resnet_backbone(model.backbone, 'backbone.' if segmentation else ''))
    if segmentation:
      names += list(_resnet_head(model.head))
    return names
  if kind == 'fcn':
    return list(_vgg(model))
  raise errors.ConfigError(f'pretrained weights load into resnet and fcn (VGG-16) models, not '
                           f'{kind!r}')


def _convert(array: np.ndarray, how: str, target_shape) -> np.ndarray:
  if how == 'oihw':
    return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array
  if how == 'linear':  # (out, in*kh*kw) -> (kh, kw, in, out), the target's kernel size
    kh, kw, c_in, c_out = target_shape
    if array.shape != (c_out, c_in * kh * kw):
      return array
    return array.reshape(c_out, c_in, kh, kw).transpose(2, 3, 1, 0)
  return array


def load_torchvision(model: nnx.Module, source: str | dict[str, np.ndarray]) -> list[str]:
  """Copies a torchvision state dict (a path or `{name: array}`) into `model`.

  Raises `ConfigError` listing every missing, unexpected and mis-shaped entry, before
  copying anything. Returns the names of the entries deliberately not used (`fc.*`,
  `aux_classifier.*`, VGG's `classifier.6.*`, `num_batches_tracked`).
  """
  state = read_state_dict(source) if isinstance(source, str) else dict(source)
  names = torchvision_names(model, state)
  wanted = {name for name, _, _ in names}
  missing = [name for name in wanted if name not in state]
  unused = sorted(k for k in state if k not in wanted and NOT_USED.search(k))
  unexpected = sorted(k for k in state if k not in wanted and not NOT_USED.search(k))
  problems = []
  if missing:
    problems.append(f'{len(missing)} missing: {", ".join(sorted(missing)[:8])}'
                    + (' ...' if len(missing) > 8 else ''))
  if unexpected:
    problems.append(f'{len(unexpected)} unexpected: {", ".join(unexpected[:8])}'
                    + (' ...' if len(unexpected) > 8 else ''))
  if problems:
    raise errors.ConfigError('pretrained weights do not fit the model (is it the same '
                             'architecture, depth and output classes?):\n  '
                             + '\n  '.join(problems))
  surgery.copy_weights({name: (variable, _convert(np.asarray(state[name]), how,
                                                  variable[...].shape))
                        for name, variable, how in names})
  return unused
