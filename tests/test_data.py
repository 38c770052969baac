"""Datasets (builders, catalog via mock data), the input pipeline, targets and weight maps."""

import collections
import glob
import hashlib
import math
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import models
from fcn_jax import tasks
from fcn_jax.data import builders
from fcn_jax.data import catalog
from fcn_jax.data import pipeline
from fcn_jax.data import synthetic
from fcn_jax.tasks import heatmap
from fcn_jax.tasks import segmentation
from tests import mock_catalog

TINY = ('fcn_shapes/tiny', 'fcn_cells/tiny', 'fcn_digits/canvas_tiny', 'fcn_digits/single')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('tfds'))
  for name in TINY:
    catalog.prepared_builder(name, path)
  return path


def _config(data_dir, **fields):
  base = dict(name='fcn_shapes/tiny', data_dir=data_dir, task='heatmap', patch_size=64,
              heatmap='fraction', target_class=1, small_images='reject', augment={},
              shuffle_buffer=8, train_split='train')
  base.update(fields)
  return ml_collections.ConfigDict(base)


def _geometry(**model):
  return geometry.of(models.get_model(model or dict(name='patch_net'), rngs=nnx.Rngs(0)))


def _batches(config, g, n, **kwargs):
  ds = pipeline.train_dataset(config, g, seed=kwargs.pop('seed', 0), **kwargs)
  return list(ds.take(n).as_numpy_iterator())


# --------------------------------------------------------------------------
# Builders.


@pytest.mark.parametrize('name', TINY)
def test_builders_load_with_expected_features(data_dir, name):
  ds = tfds.load(name, split='train', data_dir=data_dir)
  for ex in tfds.as_numpy(ds.take(3)):
    image = ex['image']
    assert image.dtype == np.uint8 and image.ndim == 3
    assert image.shape[-1] == (3 if 'shapes' in name else 1)
    if 'single' in name:
      assert image.shape == (28, 28, 1) and 0 <= ex['label'] < 10
      continue
    assert ex['mask'].shape == image.shape[:2] + (1,)
    assert ex['mask'].max() < catalog.num_classes(name)
    if 'cells' in name:
      assert ex['instances'].dtype == np.uint16
      np.testing.assert_array_equal(ex['instances'] > 0, ex['mask'] > 0)
    else:
      centres = ex['objects']['centre']  # a cut shape's centre may lie up to a radius outside
      assert ((centres >= -36) & (centres <= np.array(image.shape[:2]) + 36)).all()
      boxes = ex['objects']['box']
      assert ((boxes >= 0) & (boxes <= 1)).all()


def test_shapes_test_split_has_fixed_sizes(data_dir):
  sizes = [ex['image'].shape[:2] for ex in tfds.as_numpy(
      tfds.load('fcn_shapes/tiny', split='test', data_dir=data_dir))]
  assert sorted(sizes) == [(48, 80), (64, 64)]


def test_shapes_scenes_are_stationary():
  # Objects per pixel and median radius (of objects centred in the image) within 10 % at every
  # size, over ~4 Mpixel per size; fcn_shapes 1.0.0 failed this (radius capped at min(H, W) / 3).
  found = {}
  for size in ((64, 64), (256, 256), (1024, 1024)):
    objects, radii = 0, []
    for i in range(4 * 1024 ** 2 // (size[0] * size[1])):
      o = synthetic.shapes_example(np.random.default_rng((7, *size, i)), *size)['objects']
      inside = ((o['centre'] >= 0) & (o['centre'] < np.asarray(size))).all(1)
      objects += int(inside.sum())
      radii += o['radius'][inside].tolist()
    found[size] = (objects / 4, np.median(radii))  # per Mpixel (4 Mpixel per size)
  density, radius = np.array(list(found.values())).T
  assert density.max() / density.min() < 1.1 and radius.max() / radius.min() < 1.1, found
  assert abs(density.mean() / (synthetic.OBJECTS_PER_PIXEL * 1024 ** 2) - 1) < 0.1, found


def test_shapes_test_split_holds_equal_area_per_size():
  rows = builders.shapes_test_statistics()
  assert [r['images'] for r in rows] == [512, 128, 32, 11, 2]
  config = builders.FcnShapes.BUILDER_CONFIGS[0]
  assert all(r['images'] * r['size'][0] * r['size'][1] >= config.test_pixels for r in rows)


def test_shapes_validation_split_is_laid_out_like_test():
  config = builders.FcnShapes.BUILDER_CONFIGS[0]
  validation = collections.Counter(builders.split_sizes(config, 'validation'))
  test = collections.Counter(builders.split_sizes(config, 'test'))
  assert set(validation) == set(test) == set(config.test_sizes)
  assert [validation[s] for s in config.test_sizes] == [256, 64, 16, 6, 1]
  assert all(2 * validation[s] >= test[s] >= validation[s] for s in test)


def test_generation_is_deterministic(tmp_path):
  digests = []
  for run in ('a', 'b'):
    catalog.prepared_builder('fcn_shapes/tiny', str(tmp_path / run))
    files = sorted(glob.glob(str(tmp_path / run / 'fcn_shapes/tiny/*/*.tfrecord*')))
    assert files
    digests.append([hashlib.sha256(open(f, 'rb').read()).hexdigest() for f in files])
  assert digests[0] == digests[1]


# --------------------------------------------------------------------------
# Catalog datasets (mocked: these machines are offline).


@pytest.mark.parametrize('name,task,patch', [('mnist', 'classification', None),
                                             ('cifar10', 'classification', None),
                                             ('oxford_iiit_pet', 'segmentation', 64),
                                             ('voc', 'segmentation', 64)])
def test_catalog_datasets_through_the_pipeline(monkeypatch, name, task, patch):
  if task == 'classification':
    g = _geometry(name='gap_classifier', in_channels=1 if name == 'mnist' else 3)
  else:
    g = _geometry(name='encoder_decoder', out_channels=catalog.num_classes(name))
  config = _config(None, name=name, task=task, patch_size=patch, small_images='pad')
  with mock_catalog.mock_catalog(monkeypatch):
    [batch] = _batches(config, g, 1, batch_size=2)
  if task == 'classification':
    assert batch['target'].shape == (2,)
    assert batch['image'].shape[1:3] == ((28, 28) if name == 'mnist' else (32, 32))
  else:
    assert batch['image'].shape == (2, 64, 64, 3) and batch['target'].shape == (2, 64, 64)
    labels = set(np.unique(batch['target'])) - {tasks.IGNORE}
    assert labels <= set(range(catalog.num_classes(name)))


def test_offline_catalog_request_is_a_clear_error(monkeypatch, tmp_path):
  monkeypatch.setattr(catalog, '_reachable', lambda builder: False)
  with pytest.raises(errors.DatasetUnavailableError,
                     match=r"dataset 'mnist' is not prepared .* cannot be downloaded .*"
                     r'fcn_shapes, fcn_digits, fcn_cells'):
    catalog.prepared_builder('mnist', str(tmp_path))
  with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'"):
    catalog.prepared_builder('imagenet', str(tmp_path))


def test_voc_boxes_become_a_mask_with_small_boxes_on_top():
  boxes = np.array([[0, 0, 1, 1], [0.5, 0.5, 1, 1], [0, 0, 0.25, 0.25]], np.float32)
  mask = catalog._boxes_to_mask((8, 8), boxes, np.array([4, 6, 1]),  # pylint: disable=protected-access
                                np.array([False, False, True]))
  assert mask[1, 5] == 5 and mask[6, 6] == 7 and mask[0, 0] == tasks.IGNORE


# --------------------------------------------------------------------------
# Pipeline.


def _locate(patch, images):
  """(image index, top, left, flipped) where `patch` sits in one of `images`, or None."""
  p = patch.shape[0]
  for k, image in enumerate(images):
    for flipped, source in ((False, image), (True, image[:, ::-1])):
      h, w = source.shape[:2]
      for top in range(h - p + 1):
        for left in range(w - p + 1):
          if np.array_equal(source[top:top + p, left:left + p], patch):
            return k, top, left, flipped
  return None


def test_crops_stay_inside_images_and_labels_align(data_dir):
  """Every patch is found in its source image, and its label crop is the same window."""
  g = _geometry(name='encoder_decoder', out_channels=4, features=(4, 4))  # stride 1, offset 0
  config = _config(data_dir, task='segmentation', augment={'flip': True})
  sources = [(ex['image'], ex['mask'][..., 0]) for ex in tfds.as_numpy(
      tfds.load('fcn_shapes/tiny', split='train', data_dir=data_dir))]
  images = [(s[0] * 1.0 / 255).astype(np.float32) for s in sources]
  for batch in _batches(config, g, 3, batch_size=4):
    for image, target in zip(batch['image'], batch['target']):
      found = _locate(image, images)
      assert found is not None, 'patch is not a window of any image'
      k, top, left, flipped = found
      mask = sources[k][1][:, ::-1] if flipped else sources[k][1]
      np.testing.assert_array_equal(target, mask[top:top + 64, left:left + 64])


def test_small_images_are_rejected_or_padded(data_dir):
  g = _geometry()
  sides = [min(ex['image'].shape[:2]) for ex in tfds.as_numpy(
      tfds.load('fcn_shapes/tiny', split='train', data_dir=data_dir))]
  patch = max(sides)  # only the largest image is large enough; the others are rejected
  for batch in _batches(_config(data_dir, patch_size=patch), g, 2, batch_size=2):
    assert batch['image'].shape == (2, patch, patch, 3)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'smaller than patch_size 200: use '
                     r'a smaller data.patch_size or set data.small_images to pad'):
    _batches(_config(data_dir, patch_size=200), g, 1, batch_size=2)
  padded = _batches(_config(data_dir, patch_size=120, small_images='pad', task='segmentation'),
                    _geometry(name='encoder_decoder', out_channels=4, features=(4, 4, 4)), 1,
                    batch_size=2)[0]
  assert (padded['target'] == tasks.IGNORE).any()  # the padding carries no label


def test_stream_is_deterministic_and_resumable(data_dir):
  g, config = _geometry(), _config(data_dir, augment={'flip': True, 'rot90': True, 'colour': 0.1})
  first = _batches(config, g, 4, batch_size=2)
  again = _batches(config, g, 4, batch_size=2)
  resumed = _batches(config, g, 2, batch_size=2, start_index=2 * 2)
  other = _batches(config, g, 1, batch_size=2, seed=1)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])
  for a, b in zip(first[2:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['target'], b['target'])
  assert not np.array_equal(first[0]['image'], other[0]['image'])


def test_hosts_read_disjoint_shares(data_dir):
  g, config = _geometry(), _config(data_dir, patch_size=None, name='fcn_digits/single',
                                   task='classification')
  shares = []
  for index in range(2):
    ds = pipeline.train_dataset(config, g, batch_size=1, seed=0, process_index=index,
                                process_count=2)
    shares.append({hashlib.md5(b['image'].tobytes()).hexdigest()
                   for b in ds.take(40).as_numpy_iterator()})
  assert not shares[0] & shares[1]


# --------------------------------------------------------------------------
# Targets.


def _nearest_centre_fraction(mask, target_class, g):
  """Brute force: each pixel joins the output whose field centre is nearest (ties: later)."""
  out = g.output_size(mask.shape)
  fields = g.field(mask.shape)
  owner = []
  for a, n in enumerate(mask.shape):
    centres = [float(fields[a].centre + fields[a].jump * i) for i in range(out[a])]
    row = []
    for y in range(n):
      best = min(range(out[a]), key=lambda i, y=y: (abs(y - centres[i]), -i))
      half = float(fields[a].jump) / 2
      inside = -half <= y - centres[best] < half
      row.append(best if inside else -1)
    owner.append(row)
  frac = np.zeros(out)
  for i in range(out[0]):
    for j in range(out[1]):
      pixels = [mask[y, x] for y in range(mask.shape[0]) for x in range(mask.shape[1])
                if owner[0][y] == i and owner[1][x] == j and mask[y, x] != tasks.IGNORE]
      frac[i, j] = np.mean([p == target_class for p in pixels]) if pixels else 0
  return frac


@pytest.mark.parametrize('model', [dict(name='patch_net'),
                                   dict(name='patch_net', padding='valid', kernel_size=5),
                                   dict(name='gap_classifier', features=(8, 8))])
def test_heatmap_targets_match_brute_force(model, data_dir):
  cfg = dict(model)
  if cfg['name'] == 'gap_classifier':  # use its score map (stride 4) as a heat-map net
    cfg = dict(name='patch_net', features=(8, 8), downsample='maxpool')
  g = _geometry(**cfg)
  rng = np.random.default_rng(0)
  for size in [(64, 64), (37, 50)]:
    mask = rng.integers(0, 3, size=size)
    mask[rng.random(size) < 0.05] = tasks.IGNORE
    want = _nearest_centre_fraction(mask, 1, g)
    np.testing.assert_allclose(heatmap.fraction(mask, 1, g), want, atol=1e-6)


def test_pipeline_targets_equal_numpy_targets(data_dir):
  g = _geometry()
  config = _config(data_dir, task='segmentation')
  seg_g = _geometry(name='encoder_decoder', out_channels=4, features=(4, 4))
  seg = _batches(config, seg_g, 2, batch_size=4)  # masks of the same patches as below
  heat = _batches(_config(data_dir), g, 2, batch_size=4)
  for s, h in zip(seg, heat):
    for mask, target in zip(s['target'], h['target']):
      np.testing.assert_allclose(target[..., 0], heatmap.fraction(mask, 1, g), atol=1e-6)


def test_centre_targets_find_a_known_object():
  g = _geometry()
  # An object centred at (20.5, 41.2) lies in the cell of output (3, 5): cells are
  # [8i - 4, 8i + 4) because output i is centred on input 8i.
  heat = heatmap.centres(np.array([[20.5, 41.2]]), (64, 64), g)
  assert heat.sum() == 1 and heat[3, 5] == 1
  assert heatmap.centres(np.array([[3.9, 4.0]]), (64, 64), g)[0, 1] == 1


def test_dense_labels_crop_for_valid_unet():
  g = _geometry(name='unet', depth=3, width=2)
  labels = np.arange(92 * 92).reshape(92, 92)
  cropped = segmentation.dense_labels(labels, g)
  assert cropped.shape == g.output_size((92, 92)) == (52, 52)
  assert cropped[0, 0] == labels[20, 20]  # (92 - 52) / 2


def test_unet_weight_map_hand_computed():
  instances = np.array([[1, 0, 0, 0, 0, 0, 2]])
  w = segmentation.unet_weight_map(instances, w0=10, sigma=5)
  w_bg, w_fg = 7 / (2 * 5), 7 / (2 * 2)  # class balance: N / (2 * count)
  assert math.isclose(w[0, 0], w_fg, rel_tol=1e-6)
  # Pixel 3 is 3 from both cells: w_bg + 10 * exp(-(3 + 3)^2 / 50).
  assert math.isclose(w[0, 3], w_bg + 10 * math.exp(-36 / 50), rel_tol=1e-6)
  assert math.isclose(w[0, 1], w_bg + 10 * math.exp(-(1 + 5) ** 2 / 50), rel_tol=1e-6)


def test_weight_maps_come_with_cell_patches(data_dir):
  g = _geometry(name='unet', depth=3, width=2)
  config = _config(data_dir, name='fcn_cells/tiny', task='segmentation', patch_size=92,
                   small_images='pad', weight_map={'w0': 10.0, 'sigma': 5.0})
  [batch] = _batches(config, g, 1, batch_size=2)
  assert batch['weight'].shape == batch['target'].shape == (2, 52, 52)
  assert batch['weight'].max() > 2  # separation term between touching cells


def test_eval_examples_are_whole_images(data_dir):
  g = _geometry()
  examples = list(pipeline.eval_examples(_config(data_dir), g, 'test'))
  assert sorted(ex['size'] for ex in examples) == [(48, 80), (64, 64)]
  for ex in examples:
    assert ex['target'].shape == (*g.output_size(ex['size']), 1)
  unet = _geometry(name='unet', depth=3, width=2)
  [ex] = pipeline.eval_examples(_config(data_dir, name='fcn_cells/tiny', task='segmentation'),
                                unet, 'test')
  assert ex['size'] == (92, 92) and ex['target'].shape == (52, 52)


def test_show_writes_a_png(data_dir, tmp_path):
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.data.show', '--dataset=fcn_cells/tiny',
                        f'--data_dir={data_dir}', f'--out={tmp_path}', '--num=2'],
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  path = tmp_path / 'fcn_cells_tiny_train.png'
  assert path.exists() and path.read_bytes()[:4] == b'\x89PNG'
  assert os.path.getsize(path) > 5000


@pytest.mark.parametrize('transforms', [('flip',), ('vflip',), ('rot90',),
                                        ('flip', 'vflip', 'rot90')])
def test_augmentation_moves_labels_and_centres_with_the_pixels(transforms):
  """Each pixel carries its id in the image; after any draw of the transforms, the mask, the
  weight map and every centre must still sit on the pixel they were made for."""
  h = w = 8
  ids = np.arange(h * w, dtype=np.float32).reshape(h, w)
  image = np.stack([ids / (h * w), np.zeros_like(ids), np.zeros_like(ids)], -1)
  markers = [(0, 1), (2, 6), (7, 3)]  # (row, col) of the pixels the centres mark
  ex = {'image': tf.constant(image), 'mask': tf.constant((ids % 5).astype(np.int32)),
        'weight': tf.constant(ids / 10),
        'centres': tf.constant([[r + 0.5, c + 0.5] for r, c in markers], tf.float32)}
  changed = 0
  for seed in range(12):
    out = pipeline._augment(ex, (h, w), {t: True for t in transforms},  # pylint: disable=protected-access
                            tf.constant([seed, 7]))
    got_ids = np.rint(out['image'].numpy()[..., 0] * h * w).astype(int)
    assert sorted(got_ids.ravel()) == list(range(h * w))  # a permutation of the pixels
    np.testing.assert_array_equal(out['mask'].numpy(), got_ids % 5)
    np.testing.assert_allclose(out['weight'].numpy(), got_ids / 10, rtol=1e-6)
    for (r, c), (y, x) in zip(markers, out['centres'].numpy()):
      assert got_ids[int(y), int(x)] == r * w + c
    changed += not np.array_equal(got_ids, ids)
  assert changed >= 3  # the transforms did fire
