"""Evaluation's results table."""

import numpy as np

from fcn_jax import evaluate
from fcn_jax import tasks


def test_heatmap_sizes_report_positive_cells_and_an_interval_over_images():
  acc = tasks.Heatmap().metrics(1)
  truth = np.zeros((4, 4, 1))
  truth[:2] = 1  # 8 positive cells per image
  good = np.where(truth > 0.5, 3.0, -3.0)
  acc.add(good, truth)  # every cell right
  acc.add(-good, truth)  # every cell wrong: 8 fp, 8 fn
  metrics, _ = acc.result()
  interval = acc.interval()
  assert acc.positives == 16
  assert interval.estimate == metrics['f1'] == 0.5
  assert interval.low == 0 and interval.high == 1  # two images: all right or all wrong
  result = evaluate.SizeResult((32, 32), (4, 4, 1), 2, metrics, 0.6, None, interval, 16,
                               headline='f1')
  table = evaluate.markdown([result], 'T')
  assert '| positive cells |' in table and '| f1 95 % CI |' in table
  assert '| 32×32 | 4×4×1 | 2 | 16 | 0.500 | 0.500 | 0.500 | 0.000–1.000 | 0.600 |' in table


def test_classification_table_has_no_positive_cells():
  acc = tasks.Classification().metrics(3)
  for label, logits in [(0, [2., 0, 0]), (1, [0, 2., 0]), (2, [2., 0, 0]), (2, [0, 0, 2.])]:
    acc.add(np.array(logits), np.array(label))
  table = evaluate.markdown([evaluate.SizeResult((28, 28), (3,), 4, acc.result()[0], 0.5, None,
                                                 acc.interval(), headline='accuracy')], 'T')
  assert 'positive cells' not in table and '| accuracy 95 % CI |' in table
  assert '| 28×28 | 3 | 4 | 0.750 |' in table
