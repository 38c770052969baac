"""Evaluation metrics."""

import numpy as np

from fcn_jax import evaluate


def test_segmentation_metrics_of_long_et_al():
  # Truth rows, predicted columns: class 0 has 6 pixels (5 right), class 1 has 2 (1 right);
  # class 2 never occurs in the truth and is left out of the means.
  confusion = np.array([[5, 1, 0], [1, 1, 0], [0, 0, 0]])
  m = evaluate.segmentation_metrics(confusion)
  np.testing.assert_allclose(m['pixel_accuracy'], 6 / 8)
  np.testing.assert_allclose(m['mean_accuracy'], (5 / 6 + 1 / 2) / 2)
  np.testing.assert_allclose(m['mean_iou'], (5 / 7 + 1 / 3) / 2)
  np.testing.assert_allclose(m['fw_iou'], 6 / 8 * 5 / 7 + 2 / 8 * 1 / 3)


def test_heatmap_sizes_report_positive_cells_and_an_interval_over_images():
  acc = evaluate.Accumulator('heatmap', 1)
  truth = np.zeros((4, 4, 1))
  truth[:2] = 1  # 8 positive cells per image
  good = np.where(truth > 0.5, 3.0, -3.0)
  acc.add(good, truth)  # every cell right
  acc.add(-good, truth)  # every cell wrong: 8 fp, 8 fn
  metrics, _ = acc.result()
  interval = acc.interval()
  assert acc.counts['positive'] == 16
  assert interval.estimate == metrics['f1'] == 0.5
  assert interval.low == 0 and interval.high == 1  # two images: all right or all wrong
  result = evaluate.SizeResult((32, 32), (4, 4, 1), 2, metrics, 0.6, None, interval, 16)
  table = evaluate.markdown([result], 'T')
  assert '| positive cells |' in table and '| f1 95 % CI |' in table
  assert '| 32×32 | 4×4×1 | 2 | 16 | 0.500 | 0.500 | 0.500 | 0.000–1.000 | 0.600 |' in table


def test_classification_interval_is_of_accuracy():
  acc = evaluate.Accumulator('classification', 3)
  for label, logits in [(0, [2., 0, 0]), (1, [0, 2., 0]), (2, [2., 0, 0]), (2, [0, 0, 2.])]:
    acc.add(np.array(logits), np.array(label))
  assert acc.interval().estimate == acc.result()[0]['accuracy'] == 0.75
  table = evaluate.markdown([evaluate.SizeResult((28, 28), (3,), 4, acc.result()[0], 0.5, None,
                                                 acc.interval())], 'T')
  assert 'positive cells' not in table and '| accuracy 95 % CI |' in table


def test_examples_prefer_an_image_with_positives():
  empty, full = np.zeros((4, 4, 1)), np.ones((4, 4, 1))
  assert not evaluate.holds_positives('heatmap', empty)
  assert evaluate.holds_positives('heatmap', full)
  labels = np.array([[0, 255], [0, 0]])
  assert not evaluate.holds_positives('segmentation', labels)
  labels[1, 1] = 2
  assert evaluate.holds_positives('segmentation', labels)
