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
