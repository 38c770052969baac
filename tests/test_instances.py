"""fcn_jax.instances on hand-built label images whose answers are known, and predict's
--instances."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fcn_jax import errors
from fcn_jax import instances
from fcn_jax.data import synthetic


def _canvas(*boxes, shape=(12, 16)) -> np.ndarray:
  """Instance ids: box k (top, left, height, width) gets the id given with it."""
  ids = np.zeros(shape, np.int32)
  for value, (top, left, h, w) in boxes:
    ids[top:top + h, left:left + w] = value
  return ids


def test_a_perfect_segmentation_with_other_ids_matches_every_object():
  truth = _canvas((1, (0, 0, 4, 4)), (2, (6, 6, 3, 5)), (3, (1, 12, 2, 2)))
  pred = np.select([truth == 1, truth == 2, truth == 3], [70, 9, 4], 0)
  m = instances.match(truth, pred)
  assert (m.true_objects, m.pred_objects, m.tp, m.fp, m.fn) == (3, 3, 3, 0, 0)
  assert (m.merges, m.splits) == (0, 0)
  assert m.rand_error == pytest.approx(0.0)
  assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)


def test_two_cells_predicted_as_one_is_one_merge():
  # A: 16 px, B: 8 px side by side; the prediction is one object over both (24 px).
  truth = _canvas((1, (0, 0, 4, 4)), (2, (0, 4, 4, 2)))
  pred = _canvas((5, (0, 0, 4, 6)))
  m = instances.match(truth, pred)
  # IoU(A, pred) = 16/24 matches; IoU(B, pred) = 8/24 does not.
  assert (m.tp, m.fp, m.fn, m.merges, m.splits) == (1, 0, 1, 1, 0)
  # Adapted Rand over pairs of distinct pixels (n = 24): pairs together in both labellings
  # 16*15 + 8*7 = 296, together in the prediction 24*23 = 552, in the truth 296: precision
  # 296/552, recall 1, error 1 - 2PR/(P + R) = 1 - 592/848.
  assert m.rand_error == pytest.approx(1 - 592 / 848)
  assert m.f1 == pytest.approx(2 / 3)


def test_one_cell_predicted_as_two_is_one_split():
  truth = _canvas((1, (0, 0, 4, 6)))
  pred = _canvas((1, (0, 0, 4, 4)), (2, (0, 4, 4, 2)))
  m = instances.match(truth, pred)
  assert (m.tp, m.fp, m.fn, m.merges, m.splits) == (1, 1, 0, 0, 1)
  assert m.rand_error == pytest.approx(1 - 592 / 848)  # the merge's, truth and prediction swapped


def test_matching_is_one_to_one_at_the_iou_threshold():
  truth = _canvas((1, (0, 0, 2, 4)))  # 8 px
  exactly_half = _canvas((1, (0, 0, 2, 2)))  # 4 px inside: IoU 0.5
  assert instances.match(truth, exactly_half).tp == 1
  assert instances.match(truth, exactly_half, iou=0.51).tp == 0
  # Two predictions each at IoU 0.5 of the same cell: only one can be its match.
  halves = _canvas((1, (0, 0, 2, 2)), (2, (0, 2, 2, 2)))
  m = instances.match(truth, halves)
  assert (m.tp, m.fp, m.fn, m.splits) == (1, 1, 0, 1)


def test_missed_and_spurious_objects():
  truth = _canvas((1, (0, 0, 3, 3)))
  m = instances.match(truth, np.zeros_like(truth))
  assert (m.tp, m.fp, m.fn, m.f1) == (0, 0, 1, 0.0)
  m = instances.match(np.zeros_like(truth), truth)
  assert (m.tp, m.fp, m.fn, m.rand_error) == (0, 1, 0, 1.0)
  empty = instances.match(np.zeros_like(truth), np.zeros_like(truth))
  assert (empty.tp, empty.fp, empty.fn, empty.rand_error) == (0, 0, 0, 0.0)


def test_bad_inputs_are_one_line_errors():
  with pytest.raises(errors.InputError, match='differ in shape'):
    instances.match(np.zeros((3, 3), int), np.zeros((3, 4), int))
  with pytest.raises(errors.InputError, match='integer ids'):
    instances.match(np.zeros((3, 3)), np.zeros((3, 3), int))
  with pytest.raises(errors.ConfigError, match='not one of'):
    instances.label(np.ones((3, 3), bool), 'flood')


def test_components_are_four_connected():
  foreground = np.zeros((6, 6), bool)
  foreground[0:3, 0:3] = True
  foreground[3:6, 3:6] = True  # touches the first square at one corner only
  ids = instances.label(foreground)
  assert ids.max() == 2 and ids[0, 0] != ids[5, 5]
  assert instances.label(foreground, min_size=10).max() == 0  # both 9 px


def _two_touching_discs(gap: bool):
  yy, xx = np.mgrid[:40, :60]
  left = (yy - 20) ** 2 + (xx - 18) ** 2 <= 11 ** 2
  right = (yy - 20) ** 2 + (xx - 40) ** 2 <= 11 ** 2
  truth = np.where(left, 1, np.where(right, 2, 0)).astype(np.int32)
  if gap:
    truth[:, 29] = 0
  return truth


def test_watershed_splits_touching_discs_that_components_join():
  truth = _two_touching_discs(gap=False)
  assert instances.label(truth > 0, 'components').max() == 1
  split = instances.label(truth > 0, 'watershed')
  m = instances.match(truth, split)
  assert (m.tp, m.merges, m.splits) == (2, 0, 0)


def test_otsu_watershed_finds_bright_objects():
  truth = _two_touching_discs(gap=True)
  rng = np.random.default_rng(0)
  image = np.where(truth > 0, 0.8, 0.2) + rng.normal(0, 0.02, truth.shape)
  m = instances.match(truth, instances.otsu_watershed(image[..., None]))
  assert (m.tp, m.fp, m.fn) == (2, 0, 0)


def test_a_synthetic_cell_image_against_itself_and_its_foreground():
  cells = synthetic.cells_example(np.random.default_rng(3), 96, 96)
  truth = cells['instances'][..., 0].astype(np.int32)
  assert instances.match(truth, truth).f1 == 1.0
  # The dataset separates touching cells by background lines: components of its foreground
  # give back its cells.
  m = instances.match(truth, instances.label(truth > 0))
  assert m.f1 == 1.0 and m.rand_error == pytest.approx(0.0)


@pytest.fixture(scope='module')
def unet_workdir(tmp_path_factory):
  """A finished 3-step run of the tiny U-Net (configs/unet_cells.py:runlocal)."""
  from configs import unet_cells  # pylint: disable=g-import-not-at-top
  from fcn_jax import train  # pylint: disable=g-import-not-at-top
  config = unet_cells.get_config('runlocal')
  config.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  path = str(tmp_path_factory.mktemp('unet'))
  train.train_and_evaluate(config, path)
  return path


def _predict(*args):
  return subprocess.run([sys.executable, '-m', 'fcn_jax.predict', *args], capture_output=True,
                        text=True, check=False)


def test_predict_writes_the_instance_map_of_the_predicted_foreground(tmp_path, unet_workdir):
  cells = synthetic.cells_example(np.random.default_rng(5), 68, 84)
  np.save(tmp_path / 'cells.npy', cells['image'].astype(np.float32) / 255)
  out = _predict(f'--workdir={unet_workdir}', f'--input={tmp_path}/cells.npy',
                 f'--output={tmp_path / "out"}', '--instances=watershed')
  assert out.returncode == 0, out.stderr[-2000:]
  logits = np.load(tmp_path / 'out' / 'cells.npy')
  ids = np.load(tmp_path / 'out' / 'cells_instances.npy')
  assert ids.dtype == np.int32 and ids.shape == logits.shape[:2]
  np.testing.assert_array_equal(ids, instances.label(logits.argmax(-1) != 0, 'watershed'))
  streamed = _predict(f'--workdir={unet_workdir}', f'--input={tmp_path}/cells.npy',
                      f'--output={tmp_path / "out2"}', '--instances=components', '--tile=64')
  assert streamed.returncode == 1 and 'Traceback' not in streamed.stderr
  assert '--instances needs the output in memory' in streamed.stderr
  assert not os.path.exists(tmp_path / 'out2' / 'cells_instances.npy')
