"""Streamed outputs (fcn_jax.inference.outputs): values reduced tile by tile, OME-Zarr
pyramids, and the refusal of another model's or image's output."""

import os

import numpy as np
import pytest
import zarr
from flax import nnx

from fcn_jax import errors
from fcn_jax import models
from fcn_jax import inference
from fcn_jax.inference import outofcore
from fcn_jax.inference import tiled


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope='module')
def three_classes():
  model = models.get_model(dict(name='encoder_decoder', out_channels=3), rngs=nnx.Rngs(0))
  image = (np.random.default_rng(2).random((200, 260, 3)) * 255).astype(np.uint8)
  return model, image, inference.predict(model, image.astype(np.float32) / 255)


@pytest.mark.parametrize('ext', ['.npy', '.zarr'])
def test_every_value_kind_equals_the_reduction_of_whole_image_logits(tmp_path, three_classes,
                                                                     ext):
  model, image, whole = three_classes
  read = np.load if ext == '.npy' else (lambda p: zarr.open_array(p, mode='r')[:])
  probabilities = _softmax(whole)
  for values in inference.VALUES:
    out = outofcore.predict_to_file(model, image, str(tmp_path / f'{values}{ext}'), tile=64,
                                    batch=4, progress=False, values=values)
    main = read(out)
    if values == 'logits':
      assert main.dtype == np.float32
      np.testing.assert_allclose(main, whole, rtol=1e-5, atol=1e-5)
    elif values == 'probabilities':
      assert main.dtype == np.float16 and main.shape == whole.shape
      np.testing.assert_allclose(main, probabilities, atol=1e-3)
    else:
      assert main.dtype == np.uint8 and main.shape == whole.shape[:2]
      np.testing.assert_array_equal(main, whole.argmax(-1))
    if values == 'labels+confidence':
      confidence = read(str(tmp_path / f'{values}_confidence{ext}'))
      assert confidence.dtype == np.float16
      np.testing.assert_allclose(confidence, probabilities.max(-1), atol=1e-3)
  assert not [p for p in os.listdir(tmp_path) if 'partial' in p or 'done' in p]


def test_one_channel_nets_give_sigmoid_probabilities_and_labels_above_one_half(tmp_path):
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(1))
  image = np.random.default_rng(0).random((96, 128, 3), dtype=np.float32)
  whole = inference.predict(model, image)[..., 0]
  p = 1 / (1 + np.exp(-whole))
  out = outofcore.predict_to_file(model, image, str(tmp_path / 'o.npy'), tile=32,
                                  progress=False, values='labels+confidence')
  np.testing.assert_array_equal(np.load(out), p > 0.5)
  np.testing.assert_allclose(np.load(tmp_path / 'o_confidence.npy'), np.maximum(p, 1 - p),
                             atol=1e-3)


def test_ome_zarr_holds_the_image_and_the_labels_as_valid_ngff_pyramids(tmp_path, three_classes):
  import ome_zarr_models.v04 as ngff  # pylint: disable=g-import-not-at-top
  model, _, _ = three_classes
  image = (np.random.default_rng(5).random((600, 520, 3)) * 255).astype(np.uint8)
  whole = inference.predict(model, image.astype(np.float32) / 255)
  out = outofcore.predict_to_file(model, image, str(tmp_path / 'scan.ome.zarr'), tile=128,
                                  progress=False, values='probabilities', name='scan')
  root = zarr.open_group(out, mode='r')
  spec = ngff.Image.from_zarr(root)  # raises unless the metadata is valid NGFF 0.4
  multiscale = spec.attributes.multiscales[0]
  assert [a.name for a in multiscale.axes] == ['c', 'y', 'x'] and multiscale.name == 'scan'
  assert [d.path for d in multiscale.datasets] == ['s0', 's1', 's2']  # 600 -> 300 -> 150
  np.testing.assert_array_equal(root['s0'][:], image.transpose(2, 0, 1))
  assert root['s2'].shape == (3, 150, 130)
  labels = zarr.open_group(os.path.join(out, 'labels', 'prediction'), mode='r')
  ngff.ImageLabel.from_zarr(labels)
  assert labels.attrs['image-label']['colors'][2]['label-value'] == 2
  np.testing.assert_array_equal(labels['s0'][:], whole.argmax(-1))
  assert list(root['labels'].attrs['labels']) == ['prediction']
  floats = zarr.open_group(str(tmp_path / 'scan_probabilities.ome.zarr'), mode='r')
  ngff.Image.from_zarr(floats)
  np.testing.assert_allclose(floats['s0'][:].transpose(1, 2, 0), _softmax(whole), atol=1e-3)
  assert floats.attrs['fcn_jax']['channels'] == [f'probabilities_{k}' for k in range(3)]


def test_ome_zarr_labels_are_scaled_by_the_stride_of_a_strided_net(tmp_path):
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  image = np.random.default_rng(0).random((128, 96, 3), dtype=np.float32)
  out = outofcore.predict_to_file(model, image, str(tmp_path / 'a.ome.zarr'), tile=64,
                                  progress=False, values='labels')
  labels = zarr.open_group(os.path.join(out, 'labels', 'prediction'), mode='r')
  s0 = labels.attrs['multiscales'][0]['datasets'][0]['coordinateTransformations'][0]
  assert s0 == {'type': 'scale', 'scale': [8.0, 8.0]}
  assert labels['s0'].shape == (16, 12)
  meta = zarr.open_group(out, mode='r').attrs['fcn_jax']
  assert meta['stride'] == [8.0, 8.0] and len(meta['output_0_centre']) == 2
  assert not (tmp_path / 'a_labels.ome.zarr').exists()  # labels only: no float store


def test_an_output_of_another_model_or_image_is_refused_and_left_as_it_was(
    tmp_path, three_classes, monkeypatch):
  model, image, _ = three_classes
  out = str(tmp_path / 'o.zarr')
  outofcore.predict_to_file(model, image, out, tile=64, progress=False, values='labels')
  before = zarr.open_array(out, mode='r')[:]
  other = models.get_model(dict(name='encoder_decoder', out_channels=3), rngs=nnx.Rngs(7))
  with pytest.raises(errors.InputError, match='already exists and was computed with another '
                     'model: nothing was overwritten'):
    outofcore.predict_to_file(other, image, out, tile=64, progress=False, values='labels')
  with pytest.raises(errors.InputError, match='with another image'):
    outofcore.predict_to_file(model, 255 - image, out, tile=64, progress=False, values='labels')
  np.testing.assert_array_equal(zarr.open_array(out, mode='r')[:], before)
  # The same command again: complete already, nothing is computed.
  monkeypatch.setattr(tiled, '_tiled_forward', lambda *a: pytest.fail('recomputed'))
  assert outofcore.predict_to_file(model, image, out, tile=64, progress=False,
                                   values='labels') == out
  np.save(tmp_path / 'mine.npy', np.zeros(3))  # a user's file fcn_jax did not write
  with pytest.raises(errors.InputError, match='was not written by fcn_jax.predict'):
    outofcore.predict_to_file(model, image, str(tmp_path / 'mine.npy'), tile=64, progress=False)
  np.testing.assert_array_equal(np.load(tmp_path / 'mine.npy'), np.zeros(3))


def test_a_partial_output_of_another_image_is_not_resumed(tmp_path, three_classes, monkeypatch):
  model, image, whole = three_classes
  out = str(tmp_path / 'o.npy')
  forward, calls = tiled._tiled_forward, []

  def crash_on_second_batch(*args):
    calls.append(1)
    if len(calls) == 2:
      raise InterruptedError('killed')
    return forward(*args)

  monkeypatch.setattr(tiled, '_tiled_forward', crash_on_second_batch)
  with pytest.raises(InterruptedError):
    outofcore.predict_to_file(model, image, out, tile=64, batch=2, progress=False)
  monkeypatch.setattr(tiled, '_tiled_forward', forward)
  with pytest.raises(errors.InputError, match='records a partial output of another model, '
                     'image'):
    outofcore.predict_to_file(model, 255 - image, out, tile=64, batch=2, progress=False)
  # The interrupted run itself resumes and completes.
  outofcore.predict_to_file(model, image, out, tile=64, batch=2, progress=False)
  np.testing.assert_allclose(np.load(out), whole, rtol=1e-5, atol=1e-5)
