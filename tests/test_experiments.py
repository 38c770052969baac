"""Every experiment runs end to end with --quick and writes sane numbers (what CI checks)."""

import json
import math
import os
import subprocess
import sys

import pytest


def _run(name: str, workdir) -> dict:
  out = subprocess.run([sys.executable, '-m', f'experiments.{name}', f'--workdir={workdir}',
                        '--quick'], capture_output=True, text=True, check=False,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.returncode == 0, out.stderr[-3000:]
  text = (workdir / 'results.md').read_text()
  assert text.startswith('# ') and 'Produced by `python -m experiments.' in text
  for line in text.splitlines():  # every plot the results link to exists
    if line.startswith('!['):
      assert (workdir / line[line.index('(') + 1:-1]).is_file(), line
  assert not list(workdir.glob('*.tmp*'))  # outputs are renamed into place
  return json.loads((workdir / 'results.json').read_text())


def test_scaling(tmp_path):
  numbers = _run('scaling', tmp_path)
  assert numbers['all_shapes_exact']
  for s in numbers['shapes']:
    assert list(s['output']) == [math.ceil(n / 8) for n in s['input']]


def test_overfeat(tmp_path):
  numbers = _run('overfeat', tmp_path)
  assert numbers['max_abs_diff'] <= 1e-4
  assert [r['windows'] for r in numbers['rows']] == [1, 16, 121]
  assert all(r['dense_s'] > 0 and r['flop_ratio'] >= 1 - 1e-6 for r in numbers['rows'])


def test_gap_vs_dense(tmp_path):
  numbers = _run('gap_vs_dense', tmp_path)
  for r in numbers['rows']:
    trained_size = r['size'] == [28, 28]
    if r['model'] == 'dense':  # runs only at its training size
      assert math.isnan(r['accuracy']) != trained_size
    else:
      assert 0 <= r['accuracy'] <= 1
  assert numbers['params']['dense']['head'] > 100 * numbers['params']['gap']['head']
  assert 'cannot take an input of size' in numbers['errors']['dense']


def test_nin(tmp_path):
  rows = _run('nin', tmp_path)['rows']
  heads = {r['head']: r for r in rows}
  assert heads['gap']['params'] < heads['dense']['params']
  assert heads['gap']['head_params'] == 64 * 10 + 10
  assert all(0 <= r['accuracy'] <= 1 for r in rows)


def test_padding(tmp_path):
  results = _run('padding', tmp_path)['results']
  for mode, per_size in results.items():
    for r in per_size:
      # The receptive field (29 px) reaches < 2 cells: 3+ cells in, padding changes nothing.
      assert r['deviation'][3] < 1e-6, (mode, r)
      if mode == 'valid':  # no padding at all
        assert all(math.isnan(d) or d < 1e-6 for d in r['deviation'])


def test_fcn_skips(tmp_path):
  rows = _run('fcn_skips', tmp_path)['rows']
  assert [r['variant'] for r in rows] == ['fcn32s', 'fcn16s', 'fcn8s']
  for r in rows:
    for metric in ('pixel_accuracy', 'mean_accuracy', 'mean_iou', 'fw_iou'):
      assert 0 <= r[metric] <= 1


def test_unet(tmp_path):
  rows = _run('unet', tmp_path)['rows']
  assert {r['weights'] for r in rows} == {True, False}
  assert all(0 <= r['iou'] <= 1 and r['gap_pixels'] > 0 for r in rows)
