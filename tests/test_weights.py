"""Pretrained weights (fcn_jax.weights): torchvision state dicts, built in PyTorch with random
weights inside the test (none can be downloaded here), give the same outputs in fcn_jax."""

import re

import numpy as np
import pytest
from flax import nnx

from fcn_jax import errors
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import weights

TOL = dict(rtol=1e-4, atol=1e-4)


def _resnet(depth, output_stride, head='fcn', **kw):
  return models.get_model(dict(name='resnet', depth=depth, output_stride=output_stride,
                               head=head, base_width=8, num_classes=5, **kw), rngs=nnx.Rngs(1))


def _backbone_features(model, x):
  model.eval()
  return np.asarray(model.backbone(x))


@pytest.mark.parametrize('depth', [18, 50])
@pytest.mark.parametrize('output_stride', [32, 16, 8])
def test_resnet_backbone_matches_torchvision(torch_peer, depth, output_stride):
  rng = np.random.default_rng(depth + output_stride)
  for size in ((64, 64), (96, 128)):
    x = rng.normal(size=(1, *size, 3)).astype(np.float32)
    state, want = torch_peer.torchvision(dict(arch='resnet', depth=depth, base_width=8,
                                              output_stride=output_stride), x)
    model = _resnet(depth, output_stride)
    unused = weights.load_torchvision(model, state)
    assert 'fc.weight' in unused
    got = _backbone_features(model, x)
    assert got.shape == want.shape == (1, size[0] // output_stride, size[1] // output_stride,
                                       8 * 8 * (4 if depth == 50 else 1))
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize('head', ['fcn', 'aspp'])
def test_segmentation_models_match_torchvision(torch_peer, head, tmp_path):
  x = np.random.default_rng(0).normal(size=(1, 64, 80, 3)).astype(np.float32)
  spec = dict(arch='fcn' if head == 'fcn' else 'deeplabv3', depth=50, base_width=8,
              output_stride=8, num_classes=5, aspp_rates=(2, 3, 4), aspp_width=16)
  state, want = torch_peer.torchvision(spec, x)
  path = str(tmp_path / 'weights.npz')
  np.savez(path, **state)
  model = _resnet(50, 8, head, aspp_rates=(2, 3, 4), aspp_width=16, pretrained=path)
  got = inference.predict(model, x)
  assert got.shape == want.shape == (1, 64, 80, 5)
  np.testing.assert_allclose(got, want, **TOL)


def test_vgg16_features_and_fc6_fc7_match_torchvision(torch_peer):
  widths, fc = (4, 8, 8, 16, 16), 32
  rng = np.random.default_rng(0)
  for size in ((256, 224), (224, 288)):
    x = rng.normal(size=(1, *size, 3)).astype(np.float32)
    state, want = torch_peer.torchvision(dict(arch='vgg16', vgg_widths=widths, fc_width=fc), x)
    model = models.get_model(dict(name='fcn', variant='fcn32s', widths=widths, fc_width=fc,
                                  num_classes=5, first_padding=1, dropout=0.0),
                             rngs=nnx.Rngs(0))
    assert 'classifier.6.weight' in weights.load_torchvision(model, state)
    parts = model.parts()
    h = x
    for block in parts['blocks']:
      h = block(h)
    for layer in parts['classifier'].layers[:4]:  # fc6, relu, fc7, relu (no dropout)
      h = layer(h)
    assert h.shape == want.shape == (1, size[0] // 32 - 6, size[1] // 32 - 6, fc)
    np.testing.assert_allclose(np.asarray(h), want, **TOL)


def test_safetensors_files_load(torch_peer, tmp_path):
  from safetensors import numpy as safetensors_numpy  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
  state, want = torch_peer.torchvision(dict(arch='resnet', depth=18, base_width=8), x)
  path = str(tmp_path / 'resnet18.safetensors')
  safetensors_numpy.save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, path)
  model = _resnet(18, 32)
  weights.load_torchvision(model, path)
  np.testing.assert_allclose(_backbone_features(model, x), want, **TOL)


def test_every_mismatch_is_reported_and_nothing_is_copied():
  model = _resnet(18, 32)
  donor = _resnet(34, 32)
  names = weights.torchvision_names(donor, {})
  state = {name: np.asarray(v[...]).transpose(3, 2, 0, 1) if how == 'oihw' else
           np.asarray(v[...]) for name, v, how in names}
  before = np.asarray(model.backbone.layers[0].layers[0].kernel[...]).copy()
  with pytest.raises(errors.ConfigError, match=r'unexpected: .*layer1\.2\.') as e:
    weights.load_torchvision(model, state)
  assert 'missing' not in str(e.value)
  state18 = {k: v for k, v in state.items() if not k.startswith('layer1.2.')
             and not re.match(r'layer2\.[23]|layer3\.[2-5]|layer4\.2', k)}
  state18['conv1.weight'] = state18['conv1.weight'][:, :1]  # a one-channel stem
  state18.pop('bn1.running_var')
  with pytest.raises(errors.ConfigError) as e:
    weights.load_torchvision(model, state18)
  assert '1 missing: bn1.running_var' in str(e.value)
  state18['bn1.running_var'] = state['bn1.running_var']
  with pytest.raises(errors.ConfigError, match=r'conv1.weight: target \(7, 7, 3, 8\)'):
    weights.load_torchvision(model, state18)
  np.testing.assert_array_equal(model.backbone.layers[0].layers[0].kernel[...], before)


def test_unreadable_files_are_one_line_errors(tmp_path, monkeypatch):
  model = _resnet(18, 32)
  with pytest.raises(errors.ConfigError, match='do not exist'):
    weights.load_torchvision(model, str(tmp_path / 'nowhere.npz'))
  bad = tmp_path / 'bad.safetensors'
  bad.write_bytes(b'not safetensors')
  with pytest.raises(errors.ConfigError, match='cannot be read') as e:
    weights.load_torchvision(model, str(bad))
  assert '\n' not in str(e.value)
  pth = tmp_path / 'w.pth'
  pth.write_bytes(b'')
  monkeypatch.setitem(__import__('sys').modules, 'torch', None)  # no PyTorch in this Python
  with pytest.raises(errors.ConfigError, match='convert it once where PyTorch is') as e:
    weights.load_torchvision(model, str(pth))
  assert '\n' not in str(e.value)


def test_input_norm_is_the_first_layer():
  x = np.full((1, 32, 32, 3), 0.5, np.float32)
  plain = _resnet(18, 32)
  normed = _resnet(18, 32, input_norm='imagenet')
  nnx.update(normed, nnx.state(plain))
  plain.eval()
  normed.eval()
  shifted = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(
      [0.229, 0.224, 0.225], np.float32)
  np.testing.assert_allclose(np.asarray(normed(x)), np.asarray(plain(shifted)), rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(errors.ConfigError, match='input_norm must be one of'):
    _resnet(18, 32, input_norm='bgr')
