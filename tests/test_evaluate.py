"""Evaluation's results table."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from fcn_jax import evaluate
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import tasks
from fcn_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_outputs_are_split_by_border_fraction_into_bins_that_partition_them():
  task = tasks.Heatmap()
  border = np.array([[0.5, 0.3, 0.5], [0.3, 0.0, 0.3], [0.5, 0.3, 0.9]], np.float32)
  truth = np.ones((3, 3))
  logits = np.where(border > 0.4, -2.0, 2.0)[..., None]  # right inside, wrong far out
  groups = {}
  bins = evaluate.border_bins((0, 0.25, 0.5, 1))
  evaluate.add_by_border(groups, (24, 24), logits, truth, border, task, 1, bins)
  f1 = {label: acc.result()[0]['f1'] for (_, label), acc in groups.items()}
  # (0.25, 0.5]: 4 outputs right, 3 missed: precision 1, recall 4/7, F1 8/11.
  assert f1 == pytest.approx({'interior (0)': 1.0, '(0.25, 0.5]': 8 / 11, '(0.5, 1]': 0.0})
  assert sum(acc.positives for acc in groups.values()) == 9  # every output in one bin
  with pytest.raises(ValueError, match='border bins'):
    evaluate.border_bins((0.1, 0.5))


def test_a_trained_run_evaluated_by_border_through_the_cli(tmp_path):
  config = default.get_config('runlocal')
  config.num_train_steps = 2
  config.data.data_dir = str(tmp_path / 'tfds')
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  out = subprocess.run([sys.executable, '-m', 'fcn_jax.evaluate', f'--workdir={tmp_path / "run"}',
                        '--max_images=4'], cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  table = (tmp_path / 'run' / 'border_test.md').read_text()
  assert '| interior (0) |' in table and '| (0.5, 1] |' in table
  model, _ = inference.load_trained(str(tmp_path / 'run'))
  rows = evaluate.by_border(model, config.data, split='test', max_images=4)
  sizes = {r.size for r in rows}
  for size in sizes:  # the bins of a size partition its outputs
    per_image = np.prod(geometry.of(model).output_size(size))
    counted = sum(r.outputs for r in rows if r.size == size)
    assert counted % per_image == 0 and counted > 0
