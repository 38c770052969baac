"""Tasks (fcn_jax.tasks): losses and metrics against plain NumPy loops over pixels and cells,
the choice of task from a config, and the pictures."""

import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fcn_jax import errors
from fcn_jax import tasks
from fcn_jax.tasks import segmentation


def _log_softmax(z):
  z = z - z.max()
  return z - math.log(np.exp(z).sum())


def test_segmentation_loss_matches_a_loop_over_pixels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 3, (2, 3, 4))
  labels[0, 0, :2] = tasks.IGNORE  # unlabelled pixels
  weight = rng.random((2, 3, 4)).astype(np.float32)
  class_weights = (0.5, 2.0, 1.0)
  total, labelled = 0.0, 0
  for n, i, j in np.ndindex(*labels.shape):
    if labels[n, i, j] == tasks.IGNORE:
      continue
    labelled += 1
    c = labels[n, i, j]
    total += -_log_softmax(logits[n, i, j])[c] * class_weights[c] * weight[n, i, j]
  weighted = tasks.Segmentation(class_weights=class_weights, weight_map=(10.0, 5.0))
  batch = {'target': jnp.asarray(labels), 'weight': jnp.asarray(weight)}
  np.testing.assert_allclose(float(weighted.loss(jnp.asarray(logits), batch)), total / labelled,
                             rtol=1e-5)
  unweighted = sum(-_log_softmax(logits[p])[labels[p]] for p in np.ndindex(*labels.shape)
                   if labels[p] != tasks.IGNORE) / labelled
  plain = tasks.Segmentation()
  np.testing.assert_allclose(float(plain.loss(jnp.asarray(logits), {'target': labels})),
                             unweighted, rtol=1e-5)
  everything_ignored = np.full_like(labels, tasks.IGNORE)
  assert float(plain.loss(jnp.asarray(logits), {'target': everything_ignored})) == 0.0


def test_heatmap_loss_matches_a_loop_over_cells():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
  target = rng.random((2, 4, 4, 1)).astype(np.float32)  # soft targets (cell fractions)
  expected = np.mean([-(t * math.log(1 / (1 + math.exp(-z))) +
                        (1 - t) * math.log(1 - 1 / (1 + math.exp(-z))))
                      for z, t in zip(logits.ravel(), target.ravel())])
  got = tasks.Heatmap().loss(jnp.asarray(logits), {'target': jnp.asarray(target)})
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_classification_loss_matches_a_loop_over_images():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(5, 4)).astype(np.float32)
  labels = rng.integers(0, 4, 5)
  expected = np.mean([-_log_softmax(z)[y] for z, y in zip(logits, labels)])
  got = tasks.Classification().loss(jnp.asarray(logits), {'target': jnp.asarray(labels)})
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_heatmap_f1_and_chance_match_counting_cells():
  rng = np.random.default_rng(2)
  acc = tasks.Heatmap().metrics(1)
  tp = fp = fn = positives = cells = 0
  for _ in range(3):
    target = rng.random((5, 6, 1))
    logits = rng.normal(size=(5, 6, 1))
    acc.add(logits, target)
    for z, t in zip(logits.ravel(), target.ravel()):
      called, positive = 1 / (1 + math.exp(-z)) > 0.5, t > 0.5
      tp, fp, fn = tp + (called and positive), fp + (called and not positive), fn + (
          positive and not called)
      positives, cells = positives + positive, cells + 1
  metrics, chance = acc.result()
  np.testing.assert_allclose(metrics['precision'], tp / (tp + fp))
  np.testing.assert_allclose(metrics['recall'], tp / (tp + fn))
  np.testing.assert_allclose(metrics['f1'], 2 * tp / (2 * tp + fp + fn))
  p = positives / cells  # calling every cell positive: precision p, recall 1
  np.testing.assert_allclose(chance, 2 * p / (1 + p))
  assert acc.positives == positives
  assert acc.interval().estimate == pytest.approx(metrics['f1'])


def test_segmentation_metrics_of_long_et_al():
  # Truth rows, predicted columns: class 0 has 6 pixels (5 right), class 1 has 2 (1 right);
  # class 2 never occurs in the truth and is left out of the means.
  confusion = np.array([[5, 1, 0], [1, 1, 0], [0, 0, 0]])
  m = segmentation.long_metrics(confusion)
  np.testing.assert_allclose(m['pixel_accuracy'], 6 / 8)
  np.testing.assert_allclose(m['mean_accuracy'], (5 / 6 + 1 / 2) / 2)
  np.testing.assert_allclose(m['mean_iou'], (5 / 7 + 1 / 3) / 2)
  np.testing.assert_allclose(m['fw_iou'], 6 / 8 * 5 / 7 + 2 / 8 * 1 / 3)


def test_segmentation_confusion_skips_unlabelled_pixels_and_counts_chance():
  acc = tasks.Segmentation().metrics(3)
  target = np.array([[0, 0, 1], [2, tasks.IGNORE, 0]])
  logits = np.eye(3)[np.array([[0, 1, 1], [0, 2, 0]])]  # one-hot predictions
  acc.add(logits, target)
  np.testing.assert_array_equal(acc.confusion, [[2, 1, 0], [0, 1, 0], [1, 0, 0]])
  metrics, chance = acc.result()
  assert metrics['pixel_accuracy'] == 3 / 5 and chance == 3 / 5  # class 0: 3 of 5 labelled
  np.testing.assert_array_equal(acc.per_image, [[3, 5]])


def test_classification_accuracy_and_its_interval():
  acc = tasks.Classification().metrics(3)
  for label, logits in [(0, [2., 0, 0]), (1, [0, 2., 0]), (2, [2., 0, 0]), (2, [0, 0, 2.])]:
    acc.add(np.array(logits), np.array(label))
  metrics, chance = acc.result()
  assert acc.interval().estimate == metrics['accuracy'] == 0.75
  assert chance == 0.5  # class 2: 2 of 4


def test_examples_prefer_an_image_with_positives():
  empty, full = np.zeros((4, 4, 1)), np.ones((4, 4, 1))
  assert not tasks.Heatmap().holds_positives(empty)
  assert tasks.Heatmap().holds_positives(full)
  labels = np.array([[0, tasks.IGNORE], [0, 0]])
  assert not tasks.Segmentation().holds_positives(labels)
  labels[1, 1] = 2
  assert tasks.Segmentation().holds_positives(labels)


def _config(**data):
  return ml_collections.ConfigDict({'data': data, 'loss': {'class_weights': None}})


def test_the_task_comes_from_the_config_with_its_settings():
  config = _config(task='heatmap', heatmap='centres', target_class=2)
  assert tasks.from_config(config.data) == tasks.Heatmap(kind='centres', target_class=2)
  config = _config(task='segmentation', weight_map={'w0': 10, 'sigma': 5})
  config.loss.class_weights = (1, 2)
  task = tasks.from_config(config.data, config.loss)
  assert task == tasks.Segmentation(class_weights=(1.0, 2.0), weight_map=(10.0, 5.0))
  assert task.inputs() == ('mask', 'weight')
  hash(task)  # a static argument of the jitted training step
  with pytest.raises(errors.ConfigError, match='data.task must be one of'):
    tasks.from_config(_config(task='detection').data)
  with pytest.raises(errors.ConfigError, match='data.heatmap must be one of'):
    tasks.from_config(_config(task='heatmap', heatmap='boxes').data)


@pytest.mark.parametrize('task', [tasks.Heatmap(), tasks.Segmentation()])
def test_overlay_takes_uint8_or_unit_floats_alike(task):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
  logits = rng.normal(size=(2, 3, 1 if task.name == 'heatmap' else 4)).astype(np.float32)
  from_uint8 = task.overlay(image, logits)
  from_floats = task.overlay((image / 255.0).astype(np.float32), logits)
  np.testing.assert_allclose(from_uint8, from_floats, atol=1)
  assert from_uint8.shape == (16, 24, 3) and from_uint8.std() > 20  # not washed out to white


def test_classification_overlays_only_maps_of_classes():
  image = np.zeros((8, 8, 1), np.float32)
  assert tasks.Classification().overlay(image, np.zeros(10)) is None  # one label per image
  assert tasks.Classification().overlay(image, np.zeros((2, 2, 10))).shape == (8, 8, 3)
