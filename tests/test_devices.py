"""fcn_jax.devices: CPU cores as JAX devices, and work split over them without changing results."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from fcn_jax import devices
from fcn_jax import inference
from fcn_jax import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _device_count(env):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'} | env
  out = subprocess.run([sys.executable, '-c', 'import fcn_jax, jax; print(len(jax.devices()))'],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=False)
  return out.stdout.strip() or out.stderr.strip().splitlines()[-1]


def test_one_device_per_core_unless_told_otherwise():
  assert _device_count({}) == str(devices.usable_cores())
  assert _device_count({devices.ENV: '3'}) == '3'
  assert _device_count({devices.ENV: '1'}) == '1'
  assert _device_count({'XLA_FLAGS': '--xla_force_host_platform_device_count=5'}) == '5'
  assert 'FCN_JAX_CPU_DEVICES must be a whole number' in _device_count({devices.ENV: 'two'})


@pytest.mark.skipif(len(jax.devices()) < 2, reason='needs several CPU devices')
def test_batch_mesh_uses_the_most_devices_that_divide_the_batch():
  n = len(jax.devices())
  assert devices.batch_mesh(2 * n).devices.size == n
  assert devices.batch_mesh(1).devices.size == 1
  assert (2 * n + 1) % devices.batch_mesh(2 * n + 1).devices.size == 0


@pytest.mark.skipif(len(jax.devices()) < 2, reason='needs several CPU devices')
def test_split_inference_equals_one_device(monkeypatch):
  n = len(jax.devices())
  model = models.get_model(dict(name='unet', in_channels=3, depth=2, width=4, padding='same'),
                           rngs=nnx.Rngs(0))
  model.eval()
  image = np.random.default_rng(0).random((1, 256 * n, 72, 3), dtype=np.float32)
  assert devices.row_sharding(image.shape) is not None
  assert devices.row_sharding((1, 256 * n + 1, 72, 3)) is None  # rows do not divide
  assert devices.row_sharding((1, 128, 72, 3)) is None  # too few rows to pay for the split
  monkeypatch.setattr(inference, 'band_rows', lambda *_: None)  # XLA's split, not bands
  split = inference.predict(model, image)
  single = np.asarray(inference._forward(model, image))  # pylint: disable=protected-access
  np.testing.assert_allclose(split, single, rtol=1e-5, atol=1e-5)
  tiled = inference.predict_tiled(model, image[0], tile=64, batch=2 * n)
  np.testing.assert_allclose(tiled, single[0], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(len(jax.devices()) < 2, reason='needs several CPU devices')
def test_band_inference_equals_one_device():
  n = len(jax.devices())
  model = models.get_model(dict(name='patch_net', in_channels=3, features=(4, 8, 8), head=(1,)),
                           rngs=nnx.Rngs(0))
  model.eval()
  images = np.random.default_rng(0).random((2, 2 * n * inference.BAND_ROWS + 40, 56, 3),
                                           dtype=np.float32)
  assert inference.band_rows(model, images.shape) is not None
  assert inference.band_rows(model, (1, inference.BAND_ROWS, 56, 3)) is None  # one band
  deep = models.get_model(dict(name='unet', in_channels=3, depth=4, width=2, padding='same'),
                          rngs=nnx.Rngs(0))
  assert inference.band_rows(deep, images.shape) is None  # its halo would add > 1/8 work
  banded = inference.predict(model, images)
  single = np.asarray(inference._forward(model, images))  # pylint: disable=protected-access
  np.testing.assert_allclose(banded, single, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(inference.predict(model, images[1]), single[1], rtol=1e-5,
                             atol=1e-6)
