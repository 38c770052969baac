"""Loading a trained model, whole-image prediction, and the predict CLI."""

import os
import subprocess
import sys

import jax
import numpy as np
from flax import nnx
import pytest
from PIL import Image

from configs import default
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import predict
from fcn_jax import train


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A finished 3-step run (checkpoints at steps 2 and 3): its workdir and final state."""
  config = default.get_config('runlocal')
  config.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  path = str(tmp_path_factory.mktemp('run'))
  out = train.train_and_evaluate(config, path)
  return path, out['state']


@pytest.fixture(scope='module')
def workdir(trained):
  return trained[0]


def _params(state):
  return jax.tree.leaves(nnx.state(state, nnx.Param) if isinstance(state, nnx.Module) else
                         nnx.filter_state(state, nnx.Param))


def test_load_trained_returns_the_trained_parameters(trained):
  workdir, final = trained
  model, config = inference.load_trained(workdir)
  loaded = _params(model)
  assert len(loaded) == len(_params(final)) > 0
  for a, b in zip(loaded, _params(final)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise: the run's last state
  fresh = _params(models.get_model(config.model, rngs=nnx.Rngs(config.seed)))
  assert any(not np.array_equal(a, b) for a, b in zip(loaded, fresh))  # not a new init
  earlier = _params(inference.load_trained(workdir, step=2)[0])
  assert any(not np.array_equal(a, b) for a, b in zip(loaded, earlier))  # step 3 is not step 2


def test_loaded_model_predicts_like_the_trained_one(workdir):
  model, config = inference.load_trained(workdir)
  assert config.model.name == 'patch_net'
  image = np.random.default_rng(0).random((100, 130, 3), np.float32)
  logits = inference.predict(model, image)
  assert logits.shape == (*geometry.of(model).output_size((100, 130)), 1)
  np.testing.assert_allclose(logits, np.asarray(model(image[None]))[0], rtol=1e-6, atol=1e-6)


def test_missing_run_or_checkpoint_is_a_clear_error(tmp_path, workdir):
  with pytest.raises(ValueError, match='holds no config.json'):
    inference.load_trained(str(tmp_path))
  with pytest.raises(ValueError, match=r'no checkpoint for step 99 .* steps there: \[2, 3\]'):
    inference.load_trained(workdir, step=99)


def test_bad_inputs_are_refused(tmp_path, workdir):
  model, _ = inference.load_trained(workdir)
  with pytest.raises(ValueError, match=r'patch_net cannot take an input of size \(0, 8\)'):
    inference.predict(model, np.zeros((0, 8, 3), np.float32))
  (tmp_path / 'notes.txt').write_text('not an image')
  with pytest.raises(ValueError, match='cannot read .* as an image'):
    predict.read_image(str(tmp_path / 'notes.txt'))
  np.save(tmp_path / 'nan.npy', np.full((4, 4, 3), np.nan, np.float32))
  with pytest.raises(ValueError, match='NaN or infinite'):
    predict.read_image(str(tmp_path / 'nan.npy'))
  np.save(tmp_path / 'int.npy', np.zeros((4, 4, 3), np.int32))
  with pytest.raises(ValueError, match='unsupported dtype int32'):
    predict.read_image(str(tmp_path / 'int.npy'))


def test_predict_cli_writes_logits_and_overlays(tmp_path, workdir):
  rng = np.random.default_rng(0)
  Image.fromarray((rng.random((200, 300, 3)) * 255).astype(np.uint8)).save(tmp_path / 'a.png')
  np.save(tmp_path / 'b.npy', rng.random((64, 80, 3)).astype(np.float32))
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={workdir}',
                        f'--input={tmp_path}/[ab].*', f'--output={tmp_path / "out"}',
                        '--border_map'], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'a.png: input 200x300x3 -> output 25x38x1' in out.stdout
  model, _ = inference.load_trained(workdir)
  np.testing.assert_array_equal(np.load(tmp_path / 'out' / 'a_border.npy'),
                                inference.border_map(model, (200, 300)))
  assert np.load(tmp_path / 'out' / 'a.npy').shape == (25, 38, 1)
  assert np.load(tmp_path / 'out' / 'b.npy').shape == (8, 10, 1)
  with Image.open(tmp_path / 'out' / 'a_overlay.png') as overlay:
    assert overlay.size == (300, 200)
  assert not [f for f in os.listdir(tmp_path / 'out') if '.tmp' in f]
  bad = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={tmp_path}',
                        f'--input={tmp_path}/a.png'], capture_output=True, text=True, check=False)
  assert bad.returncode == 1
  assert 'error:' in bad.stderr and 'holds no config.json' in bad.stderr
  assert 'Traceback' not in bad.stderr


def test_predict_cli_refuses_instances_of_a_heatmap_model(tmp_path, workdir):
  np.save(tmp_path / 'e.npy', np.zeros((64, 64, 3), np.float32))
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={workdir}',
                        f'--input={tmp_path}/e.npy', f'--output={tmp_path / "out"}',
                        '--instances=components'], capture_output=True, text=True, check=False)
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert "--instances labels a segmentation model's foreground; this run's task is 'heatmap'" in (
      out.stderr)
  assert not os.path.exists(tmp_path / 'out' / 'e.npy')


def test_predict_cli_tiled_out_of_core_matches_whole(tmp_path, workdir):
  image = (np.random.default_rng(3).random((150, 170, 3)) * 255).astype(np.uint8)
  np.save(tmp_path / 'scan.npy', image)
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={workdir}',
                        f'--input={tmp_path}/scan.npy', f'--output={tmp_path / "out"}',
                        '--tile=32', '--batch=4'], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert '(tiled, 1 compilation(s))' in out.stdout
  model, _ = inference.load_trained(workdir)
  whole = inference.predict(model, image.astype(np.float32) / 255)
  np.testing.assert_allclose(np.load(tmp_path / 'out' / 'scan.npy'), whole, rtol=1e-5, atol=1e-6)


def test_predict_cli_stitch_and_tta(tmp_path, workdir):
  image = np.random.default_rng(4).random((60, 70, 3)).astype(np.float32)
  np.save(tmp_path / 'c.npy', image)
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={workdir}',
                        f'--input={tmp_path}/c.npy', f'--output={tmp_path / "out"}',
                        '--stitch=2'], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  model, _ = inference.load_trained(workdir)
  np.testing.assert_allclose(np.load(tmp_path / 'out' / 'c.npy'),
                             inference.shift_and_stitch(model, image, 2), rtol=1e-5, atol=1e-6)
  assert np.load(tmp_path / 'out' / 'c.npy').shape == (4 * 7, 4 * 8, 1)  # 54x64 -> 7x8 per shift
  odd = np.random.default_rng(5).random((57, 65, 3)).astype(np.float32)  # symmetric: 8k + 1
  np.save(tmp_path / 'd.npy', odd)
  tta = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={workdir}',
                        f'--input={tmp_path}/d.npy', f'--output={tmp_path / "tta"}',
                        '--tta=d4', '--tta_average=sigmoid'], capture_output=True, text=True,
                       check=False)
  assert tta.returncode == 0, tta.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / 'tta' / 'd.npy'),
                             inference.predict_tta(model, odd, 'd4', average='sigmoid'),
                             rtol=1e-5, atol=1e-6)


def test_export_round_trip_runs_at_any_size(tmp_path, workdir):
  """`predict --export` writes an artifact that runs without the model code at any size."""
  model, _ = inference.load_trained(workdir)
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={workdir}',
                        f'--export={tmp_path / "model.jaxexport"}'],
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  assert 'sizes 1+1k x 1+1k' in out.stdout
  run = inference.load_exported((tmp_path / 'model.jaxexport').read_bytes())
  for size in [(64, 64), (37, 53), (200, 8)]:
    images = np.random.default_rng(0).random((2, *size, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(run(images)), np.asarray(model(images)), rtol=1e-5,
                               atol=1e-6)


EXPORTED = {  # config, in_channels, sizes (the lattice is first + period*k)
    'unet_valid': (dict(name='unet', depth=2, width=4), 1, [(18, 18), (24, 20)]),
    'unet_same_bilinear': (dict(name='unet', depth=3, width=4, padding='same',
                                upsample='bilinear'), 1, [(8, 16), (40, 24)]),
    'encoder_decoder_unpool': (dict(name='encoder_decoder', upsample='unpool'), 3,
                               [(4, 8), (36, 20)]),
    'fcn8s_ceil_pools': (dict(name='fcn', variant='fcn8s', widths=(4, 4, 4, 4, 4), fc_width=8),
                         3, [(1, 2), (37, 53)]),
}


@pytest.mark.parametrize('case', sorted(EXPORTED))
def test_export_round_trip_every_family(case):
  """U-Net crops, up-sampling, unpooling and ceil-mode pools export with symbolic sizes."""
  config, channels, sizes = EXPORTED[case]
  model = models.get_model(config, rngs=nnx.Rngs(0))
  run = inference.load_exported(inference.export(model, channels))
  for size in sizes:
    images = np.random.default_rng(1).random((2, *size, channels), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(run(images)), inference.predict(model, images),
                               rtol=1e-5, atol=1e-6)
  first, period = inference.size_lattice(model, 0)
  if period > 1:  # the artifact itself refuses sizes off the lattice
    with pytest.raises(ValueError, match='polymorphic shapes'):
      run(np.zeros((1, first + 1, first, channels), np.float32))
