"""Shift-and-stitch (fcn_jax.inference.stitch): a dense output from a strided net equals the net
run on each output's own window, whole or tiled, and bad strides are one-line errors."""

import numpy as np
import pytest
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import models


def _model(**config):
  model = models.get_model(dict(name='patch_net', **config), rngs=nnx.Rngs(0))
  model.eval()
  return model


@pytest.mark.parametrize('stride', [1, 2, 4])
def test_each_dense_output_is_the_net_on_its_own_window(stride):
  """With valid padding, output (0, 0) of the net on a window of its receptive field is the
  net's output at that window: dense output (k, l) must equal the net run alone on the window
  starting at (stride*k, stride*l)."""
  model = _model(padding='valid')
  g = geometry.of(model)
  rf = int(g.receptive_field[0])
  image = np.random.default_rng(stride).random((70, 83, 3), dtype=np.float32)
  dense = inference.shift_and_stitch(model, image, stride)
  plain = inference.predict(model, image)
  f = 8 // stride
  assert dense.shape[0] >= f * (plain.shape[0] - 1) and dense.shape[0] % f == 0
  rng = np.random.default_rng(0)
  for k, l in zip(rng.integers(0, dense.shape[0], 6), rng.integers(0, dense.shape[1], 6)):
    window = image[stride * k:stride * k + rf, stride * l:stride * l + rf]
    np.testing.assert_allclose(dense[k, l], inference.predict(model, window)[0, 0], rtol=1e-5,
                               atol=1e-6)
  np.testing.assert_allclose(dense[::f, ::f][:plain.shape[0] - 1, :plain.shape[1] - 1],
                             plain[:-1, :-1], rtol=1e-5, atol=1e-6)  # shift 0 is the plain run


def test_tiled_shifts_equal_whole_shifts():
  model = _model()
  image = np.random.default_rng(0).random((90, 75, 3), dtype=np.float32)
  whole = inference.shift_and_stitch(model, image, 2)
  tiled = inference.shift_and_stitch(model, image, 2, tile=32, batch=3)
  np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)
  assert whole.shape[:2] == (4 * 11, 4 * 9)  # 90 - 6 = 84 -> 11 outputs, 75 - 6 = 69 -> 9


def test_bad_strides_and_dense_nets_are_refused_in_one_line():
  model = _model()
  with pytest.raises(errors.InputError, match=r'stride 3 does not divide .* \[1, 2, 4, 8\]'):
    inference.shift_and_stitch(model, np.zeros((64, 64, 3), np.float32), 3)
  unet = models.get_model(dict(name='unet', depth=2, width=4, padding='same'), rngs=nnx.Rngs(0))
  with pytest.raises(errors.InputError, match='already dense'):
    inference.shift_and_stitch(unet, np.zeros((32, 32, 1), np.float32), 1)
  valid = _model(padding='valid')
  with pytest.raises(errors.InputError, match='too small for shift-and-stitch'):
    inference.shift_and_stitch(valid, np.zeros((20, 20, 3), np.float32), 1)  # needs 15 + 7


@pytest.mark.parametrize('stride', [1, 4])
def test_out_of_core_stitching_from_a_memory_map_equals_stitching_in_memory(tmp_path, stride):
  model = _model()
  image = (np.random.default_rng(stride).random((150, 203, 3)) * 255).astype(np.uint8)
  np.save(tmp_path / 'scan.npy', image)
  source = inference.open_image(str(tmp_path / 'scan.npy'))
  assert isinstance(source, np.memmap)
  out = inference.shift_and_stitch(model, source, stride, tile=32, batch=3,
                                   output=str(tmp_path / 'dense.npy'))
  in_memory = inference.shift_and_stitch(model, image.astype(np.float32) / 255, stride)
  np.testing.assert_allclose(np.load(out), in_memory, rtol=1e-5, atol=1e-6)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['dense.npy', 'scan.npy']


def test_out_of_core_stitching_reads_a_zarr_image_lazily(tmp_path):
  import zarr  # pylint: disable=g-import-not-at-top
  model = _model()
  image = (np.random.default_rng(0).random((90, 100, 3)) * 255).astype(np.uint8)
  zarr.create_array(store=str(tmp_path / 'scan.zarr'), shape=image.shape, chunks=(32, 32, 3),
                    dtype='uint8')[:] = image
  out = inference.shift_and_stitch(model, inference.open_image(str(tmp_path / 'scan.zarr')), 2,
                                   tile=32, output=str(tmp_path / 'dense.npy'))
  np.testing.assert_allclose(np.load(out), inference.shift_and_stitch(
      model, image.astype(np.float32) / 255, 2), rtol=1e-5, atol=1e-6)
