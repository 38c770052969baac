"""Folder datasets (fcn_jax.data.folder): every mask and image format, every bad input, the
example folder, training and `show` on a folder, the `check` command."""

import importlib
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tifffile
from PIL import Image

from fcn_jax import errors
from fcn_jax import inference
from fcn_jax import tasks
from fcn_jax import train
from fcn_jax.data import catalog
from fcn_jax.data import folder
from fcn_jax.data import show

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _save(path, array, mode=None, palette=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  img = Image.fromarray(array, mode) if mode else Image.fromarray(array)
  if palette:
    img.putpalette(palette)
  img.save(path)


def _data(tmp_path, **fields):
  base = dict(name='folder', task='segmentation', images=str(tmp_path / 'images'),
              masks=str(tmp_path / 'masks'), mask_format='index', num_classes=3,
              validation_fraction=0.0, test_fraction=0.0, data_dir=str(tmp_path / 'tfds'))
  base.update(fields)
  return ml_collections.ConfigDict(base)


def _examples(data, split='train'):
  """{file name: standardized example} of a split, read through tfds as training reads it."""
  standardize = catalog.standardize(data)
  ds = catalog.load(data, split, data_dir=data.data_dir).map(
      lambda ex: (ex['file'], standardize(ex)))
  return {file.decode(): ex for file, ex in tfds.as_numpy(ds)}


def _problems(data):
  return folder.check(folder.Spec.of(data)).problems


def _refused(data):
  """The one-line error that preparing (and so training on) the folder gives."""
  with pytest.raises(errors.ConfigError) as e:
    catalog.prepared_builder(data, data.data_dir)
  message = str(e.value)
  assert '\n' not in message
  return message


# --------------------------------------------------------------------------
# Mask formats.


def test_index_masks_grey_palette_and_16_bit_give_the_classes(tmp_path):
  rng = np.random.default_rng(0)
  classes = rng.integers(0, 3, size=(20, 30)).astype(np.uint8)
  classes[0, :5] = 255  # unlabelled
  image = rng.integers(0, 256, size=(20, 30, 3)).astype(np.uint8)
  for name in ('grey', 'palette', 'deep'):
    _save(str(tmp_path / 'images' / f'{name}.jpg'), image)
  _save(str(tmp_path / 'masks' / 'grey.png'), classes)
  # A palette PNG: the indices are the classes, whatever colours the palette shows.
  _save(str(tmp_path / 'masks' / 'palette.png'), classes, 'P',
        [200, 10, 10, 10, 200, 10, 10, 10, 200] + [255, 255, 255] * 253)
  _save(str(tmp_path / 'masks' / 'deep.png'), classes.astype(np.uint16))
  data = _data(tmp_path)
  assert _problems(data) == []
  examples = _examples(data)
  expected = np.where(classes == 255, tasks.IGNORE, classes)
  for name in ('grey.jpg', 'palette.jpg', 'deep.jpg'):
    np.testing.assert_array_equal(examples[name]['mask'], expected)
    assert examples[name]['image'].shape == (20, 30, 3)


def test_reduce_zero_label_and_a_custom_ignore_index(tmp_path):
  values = np.array([[0, 1, 2, 3, 7]], np.uint8)
  _save(str(tmp_path / 'images' / 'a.png'), np.zeros((1, 5, 3), np.uint8))
  _save(str(tmp_path / 'masks' / 'a.png'), values)
  data = _data(tmp_path, reduce_zero_label=True, ignore_index=7)
  np.testing.assert_array_equal(_examples(data)['a.png']['mask'],
                                [[tasks.IGNORE, 0, 1, 2, tasks.IGNORE]])


def test_colour_masks_map_each_colour_to_its_class(tmp_path):
  colours = ((0, 0, 0), (255, 0, 0), (0, 128, 255))
  classes = np.array([[0, 1, 2, 1], [2, 2, 0, 1]])
  rgb = np.array(colours, np.uint8)[classes]
  rgb[1, 3] = (255, 255, 255)  # the ignore colour
  _save(str(tmp_path / 'images' / 'a.png'), np.zeros((2, 4), np.uint8))
  _save(str(tmp_path / 'masks' / 'a.png'), rgb)
  data = _data(tmp_path, mask_format='colour', colours=colours, num_classes=None,
               ignore_colour=(255, 255, 255))
  expected = classes.copy()
  expected[1, 3] = tasks.IGNORE
  np.testing.assert_array_equal(_examples(data)['a.png']['mask'], expected)


@pytest.mark.parametrize('foreground', [1, 255])
def test_binary_masks_of_0_and_1_or_255(tmp_path, foreground):
  mask = np.array([[0, foreground], [foreground, 0]], np.uint8)
  _save(str(tmp_path / 'images' / 'a.png'), np.zeros((2, 2, 3), np.uint8))
  _save(str(tmp_path / 'masks' / 'a.png'), mask)
  data = _data(tmp_path, mask_format='binary', num_classes=2)
  np.testing.assert_array_equal(_examples(data)['a.png']['mask'], [[0, 1], [1, 0]])
  assert catalog.num_classes(data) == 2


def test_images_and_masks_match_by_stem_with_suffixes(tmp_path):
  for name, value in (('a', 1), ('b', 2)):
    _save(str(tmp_path / 'images' / f'{name}_img.jpg'), np.zeros((4, 6, 3), np.uint8))
    _save(str(tmp_path / 'masks' / f'{name}_mask.png'), np.full((4, 6), value, np.uint8))
  _save(str(tmp_path / 'masks' / 'notes.png'), np.zeros((4, 6), np.uint8))  # no _mask suffix
  data = _data(tmp_path, image_suffix='_img.jpg', mask_suffix='_mask.png')
  assert _problems(data) == []  # notes.png is not a mask: it lacks the suffix
  masks = {k: int(v['mask'].max()) for k, v in _examples(data).items()}
  assert masks == {'a_img.jpg': 1, 'b_img.jpg': 2}
  assert 'have no mask' in '\n'.join(_problems(_data(tmp_path, image_suffix='_img.jpg')))


# --------------------------------------------------------------------------
# Image formats.


def test_grey_rgba_16_bit_and_tiff_images(tmp_path, capsys):
  grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
  rgba = np.dstack([np.full((3, 4, 3), 100, np.uint8), np.full((3, 4), 7, np.uint8)])
  deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 100)  # max 1100
  _save(str(tmp_path / 'images' / 'grey.png'), grey)
  _save(str(tmp_path / 'images' / 'rgba.png'), rgba)
  _save(str(tmp_path / 'images' / 'deep.png'), deep)
  os.makedirs(tmp_path / 'images', exist_ok=True)
  tifffile.imwrite(str(tmp_path / 'images' / 'tiff.tif'), np.dstack([deep // 2] * 3))
  for name in ('grey', 'rgba', 'deep', 'tiff'):
    _save(str(tmp_path / 'masks' / f'{name}.png'), np.zeros((3, 4), np.uint8))
  data = _data(tmp_path)
  report = folder.check(folder.Spec.of(data))
  assert report.problems == []
  assert any('alpha channel' in n and 'rgba.png' in n for n in report.notes)
  assert report.max16 == 1100
  examples = _examples(data)
  capsys.readouterr()
  np.testing.assert_array_equal(examples['grey.png']['image'], np.dstack([grey] * 3))
  np.testing.assert_array_equal(examples['rgba.png']['image'], rgba[..., :3])
  scaled = np.round(deep * 255.0 / 1100).astype(np.uint8)
  np.testing.assert_array_equal(examples['deep.png']['image'][..., 0], scaled)
  np.testing.assert_array_equal(examples['tiff.tif']['image'][..., 0],
                                np.round((deep // 2) * 255.0 / 1100).astype(np.uint8))
  # One channel: RGB becomes its luma, grey stays.
  grey_data = _data(tmp_path, channels=1)
  one = _examples(grey_data)
  np.testing.assert_array_equal(one['grey.png']['image'][..., 0], grey)
  assert one['rgba.png']['image'].shape == (3, 4, 1)
  assert (one['rgba.png']['image'] == 100).all()


# --------------------------------------------------------------------------
# Bad input: found all at once by `check`, refused in one line by training.


def _good_pair(tmp_path, name, size=(8, 8)):
  _save(str(tmp_path / 'images' / f'{name}.png'), np.zeros((*size, 3), np.uint8))
  _save(str(tmp_path / 'masks' / f'{name}.png'), np.zeros(size, np.uint8))


def test_every_problem_of_a_folder_is_reported_at_once(tmp_path):
  _good_pair(tmp_path, 'good')
  _save(str(tmp_path / 'images' / 'wrong_size.png'), np.zeros((8, 10, 3), np.uint8))
  _save(str(tmp_path / 'masks' / 'wrong_size.png'), np.zeros((6, 10), np.uint8))
  _save(str(tmp_path / 'images' / 'lonely.png'), np.zeros((8, 8, 3), np.uint8))
  _save(str(tmp_path / 'masks' / 'orphan.png'), np.zeros((8, 8), np.uint8))
  _save(str(tmp_path / 'images' / 'big_class.png'), np.zeros((8, 8, 3), np.uint8))
  big = np.zeros((8, 8), np.uint8)
  big[:2] = 5
  _save(str(tmp_path / 'masks' / 'big_class.png'), big)
  with open(tmp_path / 'images' / 'broken.png', 'wb') as f:
    f.write(b'not a png')
  _save(str(tmp_path / 'masks' / 'broken.png'), np.zeros((8, 8), np.uint8))
  problems = _problems(_data(tmp_path))
  text = '\n'.join(problems)
  assert 'wrong_size.png is 6x10 (HxW) but its image wrong_size.png is 8x10' in text
  assert '1 images have no mask' in text and 'lonely.png' in text
  assert '1 masks have no image' in text and 'orphan.png' in text
  assert 'big_class.png has class indices >= data.num_classes=3' in text and '5 in 16 pixels' \
      in text
  assert 'broken.png cannot be read' in text
  message = _refused(_data(tmp_path))
  assert 'more problems' in message and 'fcn_jax.data.folder check' in message


def test_an_unknown_colour_names_file_colour_and_pixel_count(tmp_path):
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[0, :3] = (9, 8, 7)
  _save(str(tmp_path / 'images' / 'a.png'), np.zeros((4, 4, 3), np.uint8))
  _save(str(tmp_path / 'masks' / 'a.png'), rgb)
  data = _data(tmp_path, mask_format='colour', colours=((0, 0, 0), (255, 0, 0)),
               num_classes=None)
  message = _refused(data)
  assert 'a.png has colours not in data.colours: (9, 8, 7) in 3 pixels' in message


def test_a_mask_that_is_not_binary_is_refused(tmp_path):
  _save(str(tmp_path / 'images' / 'a.png'), np.zeros((4, 4, 3), np.uint8))
  _save(str(tmp_path / 'masks' / 'a.png'), np.array([[0, 255, 254, 1]] * 4, np.uint8))
  message = _refused(_data(tmp_path, mask_format='binary', num_classes=2))
  assert 'a.png is not binary' in message and '254' in message


def test_empty_and_missing_folders(tmp_path):
  os.makedirs(tmp_path / 'images')
  os.makedirs(tmp_path / 'masks')
  assert 'holds no image files' in _refused(_data(tmp_path))
  assert 'does not exist' in _refused(_data(tmp_path, images=str(tmp_path / 'nowhere')))


def test_a_refused_folder_writes_nothing_to_the_workdir(tmp_path):
  _good_pair(tmp_path, 'a')
  _save(str(tmp_path / 'masks' / 'b.png'), np.zeros((8, 8), np.uint8))  # no image b
  config = importlib.import_module('configs.folder_segmentation').get_config('runlocal')
  config.data.update(dict(images=str(tmp_path / 'images'), masks=str(tmp_path / 'masks'),
                          data_dir=str(tmp_path / 'tfds')))
  workdir = tmp_path / 'run'
  with pytest.raises(errors.ConfigError, match='1 masks have no image'):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_settings_that_cannot_work_are_one_line_errors(tmp_path):
  with pytest.raises(errors.ConfigError, match='needs data.images'):
    folder.Spec.of(_data(tmp_path, images=None))
  with pytest.raises(errors.ConfigError, match='needs data.colours'):
    folder.Spec.of(_data(tmp_path, mask_format='colour'))
  with pytest.raises(errors.ConfigError, match='set data.num_classes=2'):
    folder.Spec.of(_data(tmp_path, mask_format='binary', num_classes=3))
  with pytest.raises(errors.ConfigError, match='data.channels must be 1 or 3'):
    folder.Spec.of(_data(tmp_path, channels=4))


# --------------------------------------------------------------------------
# Points, classification, splits, re-preparation.


def test_points_from_csv_and_json_are_the_same_centres(tmp_path):
  for name in ('a', 'b', 'c'):
    _save(str(tmp_path / 'images' / f'{name}.png'), np.zeros((10, 20, 3), np.uint8))
  with open(tmp_path / 'points.csv', 'w') as f:
    f.write('image,row,col\na.png,1.5,2\na,3,19\nb,9,0\n')
  with open(tmp_path / 'points.json', 'w') as f:
    json.dump({'a': [[1.5, 2], [3, 19]], 'b.png': [[9, 0]]}, f)
  found = {}
  for name in ('points.csv', 'points.json'):
    data = _data(tmp_path, task='heatmap', heatmap='centres', masks=None,
                 points=str(tmp_path / name))
    report = folder.check(folder.Spec.of(data))
    assert report.problems == [] and any('1 of 3 images have no points' in n
                                          for n in report.notes)
    found[name] = {k: v['centres'].tolist() for k, v in _examples(data).items()}
  assert found['points.csv'] == found['points.json'] == {
      'a.png': [[1.5, 2.0], [3.0, 19.0]], 'b.png': [[9.0, 0.0]], 'c.png': []}


def test_points_outside_their_image_or_of_unknown_images_are_refused(tmp_path):
  _save(str(tmp_path / 'images' / 'a.png'), np.zeros((10, 20, 3), np.uint8))
  with open(tmp_path / 'points.csv', 'w') as f:
    f.write('image,row,col\na,15,2\nz,1,1\n')
  data = _data(tmp_path, task='heatmap', heatmap='centres', masks=None,
               points=str(tmp_path / 'points.csv'))
  text = '\n'.join(_problems(data))
  assert 'points of a.png (10x20) lie outside it' in text
  assert 'not in' in text and 'z' in text
  with open(tmp_path / 'points.csv', 'w') as f:
    f.write('name,x,y\na,1,1\n')
  assert 'header must name the columns image,row,col' in '\n'.join(_problems(data))


def test_classification_folders_split_per_class(tmp_path):
  for c, name in enumerate(('cat', 'dog')):
    for i in range(10):
      _save(str(tmp_path / 'images' / name / f'{i}.png'),
            np.full((12 + i, 9, 3), 100 * c, np.uint8))
  data = _data(tmp_path, task='classification', masks=None, num_classes=2,
               validation_fraction=0.2, test_fraction=0.2)
  report = folder.check(folder.Spec.of(data))
  assert report.problems == [] and report.class_names == ('cat', 'dog')
  assert report.counts == {'train': 12, 'validation': 4, 'test': 4}
  for split in ('train', 'validation', 'test'):
    examples = _examples(data, split)
    labels = [v['label'] for v in examples.values()]
    assert labels.count(0) == labels.count(1)  # every class in every split
    for file, ex in examples.items():
      assert int(ex['label']) == ('cat', 'dog').index(file.split('/')[0])
  assert catalog.num_classes(data) == 2
  assert 'there are 2 classes' in _refused(_data(tmp_path, task='classification', masks=None,
                                                 num_classes=3))


def test_split_files_and_a_seeded_split(tmp_path):
  for i in range(10):
    _good_pair(tmp_path, f'im{i}')
  with open(tmp_path / 'train.txt', 'w') as f:
    f.write('im0\nim1.png\nim2\n')
  with open(tmp_path / 'test.txt', 'w') as f:
    f.write('im3\nnope\n')
  data = _data(tmp_path, split_files={'train': str(tmp_path / 'train.txt'),
                                      'test': str(tmp_path / 'test.txt')})
  assert any('nope' in p for p in _problems(data))
  with open(tmp_path / 'test.txt', 'w') as f:
    f.write('im3\n')
  assert set(_examples(data, 'train')) == {'im0.png', 'im1.png', 'im2.png'}
  assert set(_examples(data, 'test')) == {'im3.png'}
  seeded = [folder.listing(folder.Spec.of(_data(tmp_path, validation_fraction=0.3,
                                                split_seed=s))).splits for s in (0, 0, 1)]
  names = [[e.key for e in split['validation']] for split in seeded]
  assert len(names[0]) == 3 and names[0] == names[1] and names[0] != names[2]


def test_editing_a_file_prepares_the_dataset_again(tmp_path):
  _good_pair(tmp_path, 'a')
  data = _data(tmp_path)
  first = catalog.prepared_builder(data, data.data_dir)
  assert _examples(data)['a.png']['mask'].max() == 0
  _save(str(tmp_path / 'masks' / 'a.png'), np.full((8, 8), 2, np.uint8))
  os.utime(tmp_path / 'masks' / 'a.png', ns=(1, 1))  # mtimes of a fast test may coincide
  second = catalog.prepared_builder(data, data.data_dir)
  assert second.builder_config.name != first.builder_config.name
  assert _examples(data)['a.png']['mask'].max() == 2


# --------------------------------------------------------------------------
# The example folder: check, training, show, the command line.


@pytest.fixture(scope='module')
def example(tmp_path_factory):
  out = tmp_path_factory.mktemp('example')
  return folder.write_example(str(out), num_images=10)


def _example_config(name, example, tmp_path, **data):
  config = importlib.import_module(f'configs.{name}').get_config('runlocal')
  config.data.update(dict(images=example['images'], data_dir=str(tmp_path / 'tfds'), **data))
  return config


def test_the_example_folder_is_ready_to_train(example):
  data = ml_collections.ConfigDict(dict(
      name='folder', task='segmentation', images=example['images'], masks=example['masks'],
      points=example['points'], num_classes=4))
  report = folder.check(folder.Spec.of(data))
  assert report.problems == [] and report.counts == {'train': 6, 'validation': 2, 'test': 2}


def test_runlocal_training_on_a_folder(example, tmp_path):
  config = _example_config('folder_segmentation', example, tmp_path, masks=example['masks'],
                           num_classes=4)
  out = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert np.isfinite(out['train_loss'])
  assert config.model.num_classes == 4  # follows data.num_classes
  with open(tmp_path / 'run' / 'metrics.jsonl') as f:
    logged = [json.loads(line) for line in f]
  test = [entry for entry in logged if entry.get('split') == 'test']
  assert test and any(k.endswith('/mean_iou') for k in test[-1])  # the folder's test split
  results = (tmp_path / 'run' / 'results.md').read_text()
  assert f'on folder {example["images"]} after 3 steps' in results
  # Prediction on an image of a size this U-Net (multiples of 2) does not take: --pad.
  odd = np.random.default_rng(0).integers(0, 256, (33, 47, 3)).astype(np.uint8)
  Image.fromarray(odd).save(tmp_path / 'odd.png')
  command = [sys.executable, '-m', 'fcn_jax.predict', f'--workdir={tmp_path / "run"}',
             f'--input={tmp_path / "odd.png"}', f'--output={tmp_path / "out"}']
  refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert refused.returncode == 1 and 'or pass --pad' in refused.stderr
  padded = subprocess.run(command + ['--pad'], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
  assert padded.returncode == 0, padded.stderr[-2000:]
  logits = np.load(tmp_path / 'out' / 'odd.npy')
  assert logits.shape == (33, 47, 4)
  model, _ = inference.load_trained(str(tmp_path / 'run'))
  whole = inference.predict(model, np.pad(odd, ((0, 1), (0, 1), (0, 0)), mode='edge') / 255.0)
  np.testing.assert_allclose(logits, whole[:33, :47], rtol=1e-5, atol=1e-5)


def test_runlocal_heat_map_training_from_points(example, tmp_path):
  config = _example_config('folder_points', example, tmp_path, points=example['points'])
  out = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert np.isfinite(out['train_loss'])


def test_show_draws_a_folder(example, tmp_path):
  config = _example_config('folder_segmentation', example, tmp_path, masks=example['masks'],
                           num_classes=4)
  fig = show.grid(config.data, 'train', 3, config.data.data_dir)
  assert len(fig.axes) == 6  # image and mask of three examples


def test_the_check_command_prints_every_problem(example, tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  base = [sys.executable, '-m', 'fcn_jax.data.folder', 'check',
          '--config=configs/folder_segmentation.py', f'--config.data.images={example["images"]}']
  good = subprocess.run(base + [f'--config.data.masks={example["masks"]}',
                                '--config.data.num_classes=4'],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  assert good.returncode == 0, good.stderr
  assert 'no problems' in good.stdout and 'train 6, validation 2, test 2' in good.stdout
  bad = subprocess.run(base + [f'--config.data.masks={example["masks"]}',
                               '--config.data.num_classes=2'],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  assert bad.returncode == 1
  lines = [l for l in bad.stdout.splitlines() if l.startswith('problem:')]
  assert len(lines) >= 2 and all('>= data.num_classes=2' in l for l in lines)
