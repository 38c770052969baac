"""The bad-input catalogue: every user error is one clear message (the value, what is valid).

Items covered elsewhere: catalog dataset requested offline (test_data), workdir not writable
and misspelt config field (test_train), missing run/checkpoint for predict (test_inference).
"""

import errno
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import zarr
from flax import nnx
from PIL import Image

from configs import default
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import predict
from fcn_jax import train

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path = tmp_path_factory.mktemp('run')
  config = default.get_config('runlocal')
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(path))
  return str(path)


def _predict(*args):
  return subprocess.run([sys.executable, '-m', 'fcn_jax.predict', *args], cwd=ROOT,
                        capture_output=True, text=True, check=False)


def _one_error_line(out) -> str:
  assert out.returncode != 0
  assert 'Traceback' not in out.stderr, out.stderr[-2000:]
  errors = [l for l in out.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1, out.stderr[-2000:]
  return errors[0]


def test_image_smaller_than_the_minimum_and_misaligned_unet_sizes():
  unet = models.get_model(dict(name='unet', depth=3, width=4), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'cannot take an input of size \(20, 60\).*minimum '
                     r'height is 44'):
    inference.predict(unet, np.zeros((20, 60, 1), np.float32))
  with pytest.raises(ValueError, match=r'height 45 is not accepted.*nearest valid: \[44, 48\]'):
    inference.predict(unet, np.zeros((45, 44, 1), np.float32))


def test_bad_image_files_through_the_predict_cli(workdir, tmp_path):
  grey = tmp_path / 'grey.png'
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(grey)
  assert 'expects 3 input channels' in _one_error_line(
      _predict(f'--workdir={workdir}', f'--input={grey}'))
  text = tmp_path / 'notes.png'
  text.write_text('not an image')
  assert f"cannot read '{text}' as an image" in _one_error_line(
      _predict(f'--workdir={workdir}', f'--input={text}'))
  nan = tmp_path / 'nan.npy'
  image = np.zeros((16, 16, 3), np.float32)
  image[3, 4] = np.nan
  np.save(nan, image)
  assert 'NaN or infinite pixels' in _one_error_line(
      _predict(f'--workdir={workdir}', f'--input={nan}'))
  assert 'NaN or infinite pixels in rows 0-15' in _one_error_line(  # out of core, tile by tile
      _predict(f'--workdir={workdir}', f'--input={nan}', '--tile=64',
               f'--output={tmp_path / "out"}'))
  ints = tmp_path / 'ints.npy'
  np.save(ints, np.zeros((16, 16, 3), np.int64))
  for extra in ([], ['--tile=64']):
    assert 'unsupported dtype int64 (use uint8' in _one_error_line(
        _predict(f'--workdir={workdir}', f'--input={ints}', *extra))
  assert not (tmp_path / 'out' / 'nan.npy').exists()


def test_tile_smaller_than_the_halo(workdir, tmp_path):
  image = tmp_path / 'image.npy'
  np.save(image, np.zeros((64, 64, 3), np.float32))
  line = _one_error_line(_predict(f'--workdir={workdir}', f'--input={image}', '--tile=2'))
  assert 'tile 2 is smaller than the 16-pixel halo' in line and 'at least 16' in line


def test_config_field_of_the_wrong_type_and_unknown_names(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.train', '--config=configs/default.py',
                        f'--workdir={tmp_path}', '--config.num_train_steps=abc'], cwd=ROOT,
                       capture_output=True, text=True, check=False)
  assert out.returncode != 0 and 'Traceback' not in out.stderr
  assert "--config.num_train_steps=abc: invalid literal for int()" in out.stderr
  config = default.get_config('runlocal')
  config.model.name = 'unetx'
  with pytest.raises(ValueError, match="unknown model 'unetx'; choose one of patch_net"):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  assert not (tmp_path / 'a' / 'config.json').exists()  # a failed start leaves no config
  config = default.get_config('runlocal')
  config.data.name = 'nosuchdata'
  with pytest.raises(ValueError, match="unknown dataset 'nosuchdata'; offline: fcn_shapes"):
    train.train_and_evaluate(config, str(tmp_path / 'b'))


def test_workdir_of_another_config_is_refused_unless_overwrite(workdir, tmp_path):
  run = tmp_path / 'run'
  config = default.get_config('runlocal')
  config.num_train_steps = 1
  train.train_and_evaluate(config, str(run))
  other = default.get_config('runlocal')
  other.num_train_steps = 1
  other.model.head = (8, 1)
  with pytest.raises(ValueError, match=r"holds a run of a different config \(fields \['model'\] "
                     r'differ\).*--overwrite'):
    train.train_and_evaluate(other, str(run))
  train.train_and_evaluate(other, str(run), overwrite=True)
  aside = [p for p in tmp_path.iterdir() if p.name.startswith('run.replaced-')]
  assert len(aside) == 1 and (aside[0] / 'checkpoints').is_dir()  # the old run is kept


def test_disk_full_while_writing_leaves_no_file_under_the_final_name(tmp_path):
  target = str(tmp_path / 'logits.npy')

  def write(path):
    with open(path, 'wb') as f:
      f.write(b'partial')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

  with pytest.raises(ValueError, match='cannot write .*logits.npy: No space left on device; '
                     'nothing was left under that name'):
    predict._write_atomically(target, write)  # pylint: disable=protected-access
  assert list(tmp_path.iterdir()) == []


def test_streamed_outputs_through_the_predict_cli_and_a_foreign_output_refused(workdir,
                                                                                tmp_path):
  image = tmp_path / 'scan.png'
  Image.fromarray((np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)).save(
      image)
  out = _predict(f'--workdir={workdir}', f'--input={image}', '--format=ome-zarr',
                 '--values=labels+confidence', f'--output={tmp_path / "out"}', '--tile=32')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'scan.ome.zarr (labels+confidence, 8x12 outputs of 1 channel(s))' in out.stdout
  assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
      'scan.ome.zarr', 'scan.ome.zarr.source.json', 'scan_confidence.ome.zarr']
  out = _predict(f'--workdir={workdir}', f'--input={image}', '--format=zarr', '--workers=2',
                 '--values=labels', f'--output={tmp_path / "cluster"}', '--tile=32')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'on 2 local worker process(es)' in out.stdout
  labels = zarr.open_array(str(tmp_path / 'cluster' / 'scan.zarr'), mode='r')[:]
  np.testing.assert_array_equal(labels, zarr.open_group(str(
      tmp_path / 'out' / 'scan.ome.zarr'), mode='r')['labels/prediction/s0'][:])
  theirs = tmp_path / 'theirs'
  (theirs / 'scan.npy').parent.mkdir()
  np.save(theirs / 'scan.npy', np.ones(4))
  line = _one_error_line(_predict(f'--workdir={workdir}', f'--input={image}', '--tile=32',
                                  '--values=labels', f'--output={theirs}'))
  assert 'scan.npy already exists and was not written by fcn_jax.predict' in line
  line = _one_error_line(_predict(f'--workdir={workdir}', f'--input={image}',  # in memory
                                  f'--output={theirs}'))
  assert 'scan.npy already exists and was not written by fcn_jax.predict' in line
  np.testing.assert_array_equal(np.load(theirs / 'scan.npy'), np.ones(4))
  assert not (theirs / 'scan_overlay.png').exists()
