"""Every experiment runs end to end with --quick, learns, and writes sane numbers (what CI
checks); every committed results.md is what its results.json renders to."""

import importlib
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments import common
from fcn_jax import sweep

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.parent.name for p in (ROOT / 'experiments').glob('*/__main__.py'))


def _run(name: str, workdir, grown: tuple[str, ...] = ()) -> dict:
  """Runs experiment `name` with --quick; `grown`: runs that start from a trained run (their
  loss starts low, so they need only lower it)."""
  out = subprocess.run([sys.executable, '-m', f'experiments.{name}', f'--workdir={workdir}',
                        '--quick'], capture_output=True, text=True, check=False, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  text = (workdir / 'results.md').read_text()
  assert text.startswith('# ') and 'Produced by `python -m experiments.' in text
  for line in text.splitlines():  # every plot the results link to exists
    if line.startswith('!['):
      assert (workdir / line[line.index('(') + 1:-1]).is_file(), line
  assert not list(workdir.glob('*.tmp*'))  # outputs are renamed into place
  numbers = json.loads((workdir / 'results.json').read_text())
  # Provenance, and results.md is exactly what results.json renders to.
  p = numbers['provenance']
  assert len(p['commit']) == 40 and p['quick'] and p['command'].endswith('--quick')
  assert p['seeds'] and p['machine'] and len(p['config_hash']) == 16
  module = importlib.import_module(f'experiments.{name}.__main__')
  assert common.markdown(module.render, numbers) == text
  # Something was learned: every run's loss fell well below its start.
  assert numbers['training']
  for run, summary in numbers['training'].items():
    factor = 1.0 if run in grown else 0.75
    assert summary['last_loss'] < factor * summary['first_loss'], (run, summary)
  return numbers


# Experiments whose full run is committed (README, "Experiments", says which are pending).
COMMITTED = [n for n in EXPERIMENTS if (ROOT / 'experiments' / n / 'results.json').exists()]


def test_the_scaling_evidence_is_committed():
  assert {'scaling', 'learning_curve'} <= set(COMMITTED)
  for name in EXPERIMENTS:  # no results.md without the results.json it renders from
    folder = ROOT / 'experiments' / name
    assert (folder / 'results.md').exists() == (folder / 'results.json').exists(), name


@pytest.mark.parametrize('name', COMMITTED)
def test_committed_results_render_from_their_json(name):
  """No hand edits: the committed results.md is regenerated from results.json, byte for byte."""
  folder = ROOT / 'experiments' / name
  numbers = json.loads((folder / 'results.json').read_text())
  module = importlib.import_module(f'experiments.{name}.__main__')
  assert common.markdown(module.render, numbers) == (folder / 'results.md').read_text()
  assert not numbers['provenance']['quick'] and not numbers['provenance']['dirty']


SWEEPS = sorted(p.parent.name for p in (ROOT / 'experiments' / 'sweeps').glob('*/results.md'))


@pytest.mark.parametrize('name', SWEEPS)
def test_committed_sweeps_render_from_their_json(name):
  """A committed sweep's results.md is `fcn_jax.sweep.render` of its results.json."""
  folder = ROOT / 'experiments' / 'sweeps' / name
  assert (folder / 'results.json').exists(), f'{name}: results.md without its results.json'
  numbers = json.loads((folder / 'results.json').read_text())
  assert sweep.render(numbers) == (folder / 'results.md').read_text()
  assert numbers['split'] == 'validation' and not numbers['provenance']['dirty']


def test_scaling(tmp_path):
  numbers = _run('scaling', tmp_path)
  assert numbers['all_shapes_exact']
  for s in numbers['shapes']:
    assert list(s['output']) == [math.ceil(n / 8) for n in s['input']]
  rows = numbers['rows']
  assert len({r['positive_cells'] for r in rows}) == 1  # the same cells at every size
  assert all(r['all']['estimate'] > r['chance_f1'] for r in rows)  # above chance
  assert rows[-1]['delta']['estimate'] == 0 and not numbers['failed_seeds']
  assert rows[0]['border_share'] > rows[-1]['border_share']
  overlays = plt.imread(tmp_path / 'overlays.png')[..., :3]
  assert overlays.std() > 0.05 and (overlays < 0.9).mean() > 0.2  # scenes drawn, not blank


def test_learning_curve(tmp_path):
  numbers = _run('learning_curve', tmp_path)
  longest = numbers['rows'][-1]
  assert longest['f1'] > 0.3 and longest['verdict'] != 'failed to train'  # chance ≈ 0.3
  # Measured in parts, one per run: on a fresh machine (no runs, only the kept parts) the
  # same numbers come back without training.
  assert sorted(p.name for p in (tmp_path / 'parts').iterdir()) == [
      'steps300_seed0.json', 'steps300_seed1.json', 'steps50_seed0.json', 'steps50_seed1.json']
  for run in tmp_path.glob('steps*'):
    shutil.rmtree(run)
  again = _run('learning_curve', tmp_path)
  assert again['rows'] == numbers['rows'] and again['training'] == numbers['training']
  assert not list(tmp_path.glob('steps*'))


def test_overfeat(tmp_path):
  numbers = _run('overfeat', tmp_path)
  assert numbers['max_abs_diff'] <= 1e-4  # the on-device windows equal the dense output
  assert [r['windows'] for r in numbers['rows']] == [1, 16, 121]
  for r in numbers['rows']:
    assert 0 < r['dense_s']['min'] <= r['dense_s']['median'] <= r['dense_s']['max']
    assert r['flop_ratio'] >= 1 - 1e-6
  assert numbers['caffe']['outputs'] == 64
  accuracy = numbers['accuracy']
  assert accuracy['misaligned'] <= 1e-4 and accuracy['digits'] > 5
  assert accuracy['single']['estimate'] > 0.3  # real digits, chance 0.1


def test_gap_vs_dense(tmp_path):
  numbers = _run('gap_vs_dense', tmp_path)
  cells = numbers['cells']
  assert not cells['dense/28x16']['ran'] and cells['dense/28x28']['ran']
  for name in ('dense', 'gap'):  # above chance (0.1) at the training size
    assert not cells[f'{name}/28x28']['collapsed']
    assert cells[f'{name}/28x28']['accuracy']['low'] > 0.3
  assert numbers['params']['dense']['head'] > 100 * numbers['params']['gap']['head']
  assert 'cannot take an input of size' in numbers['errors']['dense']
  # Convolutionalized, the dense net runs on larger inputs, and on the training size it is
  # the dense net (the same predictions, so the same histogram).
  assert cells['fcn/56x56']['ran'] and cells['fcn/canvas84']['ran']
  assert cells['fcn/28x28']['histogram'] == cells['dense/28x28']['histogram']
  assert sum(cells['gap/28x28']['histogram']) == numbers['test_digits']
  assert set(numbers['gap_vs_fcn']) >= {'28x28', '56x56', 'canvas56', 'canvas84'}


def test_nin(tmp_path):
  numbers = _run('nin', tmp_path)
  params = numbers['params']
  assert params['gap']['total'] < params['dense']['total']
  assert params['gap']['head'] == 64 * 10 + 10
  regimes = numbers['regimes']
  assert [r['fraction'] for r in regimes] == [25]
  assert 340 < regimes[0]['train_digits'] < 380  # a quarter of the 1,438 training digits
  for r in regimes:
    for head in ('gap', 'dense'):
      assert r[head]['test']['low'] > 0.3  # chance 0.1
      assert r[head]['train']['estimate'] >= r[head]['test']['estimate'] - 0.05


def test_padding(tmp_path):
  numbers = _run('padding', tmp_path)
  for mode, per_size in numbers['results'].items():
    for r in per_size:
      # The receptive field (29 px) reaches < 2 cells: 3+ cells in, padding changes nothing.
      assert r['deviation'][3] < 1e-6, (mode, r)
      if mode == 'valid':  # no padding at all
        assert all(math.isnan(d) or d < 1e-6 for d in r['deviation'])
  assert set(numbers['border_gap']) == {'zeros', 'reflect', 'replicate'}


def test_fcn_skips(tmp_path):
  numbers = _run('fcn_skips', tmp_path, grown=('fcn16s_seed0', 'fcn8s_seed0'))
  rows = numbers['rows']
  assert [r['variant'] for r in rows] == ['fcn32s', 'fcn16s', 'fcn8s']
  for r in rows:
    for metric in ('pixel_accuracy', 'mean_accuracy', 'mean_iou', 'fw_iou'):
      assert 0 <= r[metric] <= 1
    assert 0 < r['steps'] <= 80  # early stopping may end a stage before its cap
  assert [s['fine'] for s in numbers['steps']] == ['fcn16s', 'fcn8s']
  # Each grown stage started from the one before (its config names that run).
  for coarse, fine in (('fcn32s', 'fcn16s'), ('fcn16s', 'fcn8s')):
    config = json.loads((tmp_path / f'{fine}_seed0' / 'config.json').read_text())
    assert config['model']['init_from'] == str(tmp_path / f'{coarse}_seed0')


def test_digits_canvas(tmp_path):
  numbers = _run('digits_canvas', tmp_path)
  rows = numbers['rows']
  assert [(r['net'], r['size']) for r in rows] == [
      (n, s) for n in ('dense', 'gap', 'nin') for s in (64, 128)]
  for r in rows:
    assert r['digits'] > 0 and 0 <= r['f1']['estimate'] <= 1
    assert ('f1_vs_largest' in r) == (r['size'] == 64)
  for thresholds in numbers['thresholds'].values():  # chosen on validation, one per seed
    assert len(thresholds) == 1 and np.isfinite(thresholds[0])


def test_digits_canvas_threshold_is_the_best_validation_peak_score():
  from experiments.digits_canvas import __main__ as digits_canvas
  # Peaks scored 5, 4, 3, 3, 1 (true, false, true, true, false) and one true cell that is no
  # peak: calling >= 3 gives tp 3, fp 1, fn 1 (F1 0.75), better than >= 5 (0.4), >= 4 (1/3)
  # or >= 1 (2/3); the tie at 3 is called whole.
  canvas = lambda score, peak, truth: {'score': np.array(score, float),
                                       'peak': np.array(peak), 'truth': np.array(truth)}
  scored = [canvas([5, 4, 0.5], [True, True, False], [True, False, True]),
            canvas([3, 3, 1], [True, True, True], [True, True, False])]
  assert digits_canvas.best_threshold(scored) == 3.0
  counts = sum(digits_canvas.counts(c, 3.0) for c in scored)
  assert list(counts) == [3, 1, 1]
  # Nothing worth calling: no threshold calls anything.
  assert digits_canvas.best_threshold([canvas([2], [True], [False])]) == float('inf')


def test_digits_canvas_peaks_include_the_border_at_any_score():
  from experiments.digits_canvas import __main__ as digits_canvas
  score = np.array([[-2.0, -3.0, -4.0],
                    [-3.0, -5.0, -1.5],
                    [-6.0, -5.0, -7.0]])
  assert digits_canvas.local_peaks(score).tolist() == [[True, False, False],
                                                       [False, False, True],
                                                       [False, False, False]]


def test_unet(tmp_path):
  numbers = _run('unet', tmp_path)
  rows = numbers['rows']
  assert len(rows) == 2 and not numbers['failed']
  for r in rows:
    assert r['iou_weights']['estimate'] > 0.5 and r['iou_no_weights']['estimate'] > 0.5
    assert 0 <= r['gap_weights']['estimate'] <= 1 and r['band_pixels'] > 0
    # The baseline finds cells; the nets' cells are matched objects, not nothing.
    assert r['f1_otsu_watershed']['estimate'] > 0.5 and r['f1_weights']['estimate'] > 0
  assert numbers['tiled_max_abs_diff'] <= 1e-4




def test_provenance_is_the_code_at_the_start_of_the_run(tmp_path, monkeypatch):
  """A tree edited or moved to another commit while an experiment runs does not relabel it."""
  from fcn_jax import provenance as fcn_provenance  # pylint: disable=g-import-not-at-top
  state = {'commit': 'a' * 40, 'dirty': False, 'date': '2026-01-01 00:00 UTC', 'machine': 'm'}
  monkeypatch.setattr(fcn_provenance, 'source', lambda: dict(state))
  record = common.Record(str(tmp_path), quick=True)
  state.update(commit='b' * 40, dirty=True, date='2026-01-02 00:00 UTC')  # edited meanwhile
  record.write({'x': 1}, lambda numbers: ('T', []))
  p = json.loads((tmp_path / 'results.json').read_text())['provenance']
  assert (p['commit'], p['dirty'], p['date']) == ('a' * 40, False, '2026-01-02 00:00 UTC')


def test_regenerate_lists_every_experiment():
  from experiments import regenerate
  assert sorted(regenerate.EXPERIMENTS) == EXPERIMENTS


def _stand_in(ran: list, fail: str = 'unet', from_run: int = 2):
  """A stand-in for `regenerate.run_experiment`: writes what an experiment writes (a part
  first, then polls) and records what it was given; `fail` fails from its `from_run`th run."""
  def run(name, workdir, log, poll):
    ran.append((name, sorted(os.listdir(os.path.join(workdir, 'parts')))
                if os.path.isdir(os.path.join(workdir, 'parts')) else []))
    os.makedirs(os.path.join(workdir, 'parts'), exist_ok=True)
    pathlib.Path(workdir, 'parts', 'seed9.json').write_text(json.dumps({'commit': 'a' * 40}))
    poll()
    if name == fail and [n for n, _ in ran].count(name) >= from_run:
      return 1
    os.makedirs(os.path.join(workdir, 'run_seed0'), exist_ok=True)
    for file in ('results.json', 'results.md', 'plot.png', 'run_seed0/examples.png'):
      pathlib.Path(workdir, file).write_text(f'{name} {file}')
    return 0
  return run


def test_regenerate_into_this_checkout_copies_once_all_ran(tmp_path, monkeypatch):
  from experiments import regenerate
  from fcn_jax import errors
  from fcn_jax import provenance
  monkeypatch.setattr(provenance, 'ROOT', str(tmp_path))  # `results` lies in this checkout
  results = tmp_path / 'experiments'
  for name in ('nin', 'unet'):
    (results / name).mkdir(parents=True)
  ran = []
  run = _stand_in(ran)
  clean = {'commit': 'a' * 40, 'dirty': False, 'date': 'today'}
  work = str(tmp_path / 'runs')
  assert regenerate.regenerate(['nin', 'unet'], work, clean, str(results), run) == ['nin', 'unet']
  assert sorted(p.name for p in (results / 'nin').iterdir()) == ['parts', 'plot.png',
                                                                 'results.json', 'results.md']
  assert (results / 'unet' / 'results.md').read_text() == 'unet results.md'
  # A failure names its log, and nothing of that invocation is copied (a copied result would
  # leave the checkout dirty for the experiments after it); a dirty tree, another commit or
  # an unknown name is refused before anything runs.
  (results / 'nin' / 'results.md').write_text('committed')
  with pytest.raises(RuntimeError, match='unet.log'):
    regenerate.regenerate(['nin', 'unet'], work, clean, str(results), run)
  assert (results / 'nin' / 'results.md').read_text() == 'committed'
  ran.clear()
  for source, names, match in (({**clean, 'dirty': True}, ['nin'], 'clean commit'),
                               ({**clean, 'commit': 'b' * 40}, ['nin'], 'aaaaaaaaaaaa'),
                               (clean, ['nope'], 'unknown')):
    with pytest.raises(errors.UserError, match=match):
      regenerate.regenerate(names, work, source, str(results), run)
  assert not ran


def test_regenerate_into_another_checkout_keeps_parts_across_sittings(tmp_path):
  """From a worktree into the main checkout: outputs copied as each experiment finishes,
  parts as they are measured, and a later sitting (a fresh workdir) starts from the parts that
  its commit measured, not from another commit's."""
  from experiments import regenerate
  results = tmp_path / 'main' / 'experiments'  # outside this checkout
  (results / 'nin' / 'parts').mkdir(parents=True)
  (results / 'nin' / 'parts' / 'seed0.json').write_text(json.dumps({'commit': 'a' * 40}))
  (results / 'nin' / 'parts' / 'seed1.json').write_text(json.dumps({'commit': 'c' * 40}))
  ran = []
  clean = {'commit': 'a' * 40, 'dirty': False, 'date': 'today'}
  with pytest.raises(RuntimeError, match='nin.log'):  # the first sitting ends in a failure
    regenerate.regenerate(['unet', 'nin'], str(tmp_path / 'w1'), clean, str(results),
                          _stand_in(ran, fail='nin', from_run=1))
  # ... but unet's outputs, and the parts nin measured before failing, are already across.
  assert (results / 'unet' / 'results.md').read_text() == 'unet results.md'
  assert (results / 'nin' / 'parts' / 'seed9.json').exists()
  assert ran == [('unet', []), ('nin', ['seed0.json'])]  # only this commit's part restored
  ran.clear()
  assert regenerate.regenerate(['nin'], str(tmp_path / 'w2'), clean, str(results),
                               _stand_in(ran, fail='none')) == ['nin']
  assert ran == [('nin', ['seed0.json', 'seed9.json'])]  # a fresh workdir resumes the parts
  # Copying the finished experiment leaves exactly its parts: another commit's is gone.
  assert sorted(p.name for p in (results / 'nin' / 'parts').iterdir()) == ['seed0.json',
                                                                          'seed9.json']
  assert (results / 'nin' / 'results.md').read_text() == 'nin results.md'


def test_record_part_is_measured_once_and_kept_with_its_commit(tmp_path, monkeypatch):
  """A part is measured, kept with its runs' configs and training, read back instead of being
  measured again (also by a new Record: the next sitting), and refused from other code."""
  import ml_collections
  from fcn_jax import errors
  from fcn_jax import provenance as fcn_provenance
  state = {'commit': 'a' * 40, 'dirty': False, 'date': '2026-01-01 00:00 UTC',
           'machine': 'm'}
  monkeypatch.setattr(fcn_provenance, 'source', lambda: dict(state))
  calls = []

  def measure(record):
    def go():
      calls.append(1)
      record.configs['run_seed3'] = ml_collections.ConfigDict({'seed': 3, 'widths': (8, 16)})
      record.training['run_seed3'] = {'steps': 5, 'first_loss': 2.0, 'last_loss': 1.0}
      return {'counts': np.arange(6).reshape(3, 2), 'f1': np.float32(0.5)}
    return go

  first = common.Record(str(tmp_path), quick=False)
  a = first.part('seed3', measure(first))
  second = common.Record(str(tmp_path), quick=False)
  b = second.part('seed3', measure(second))
  assert len(calls) == 1 and a == b == {'counts': [[0, 1], [2, 3], [4, 5]], 'f1': 0.5}
  assert second.training == first.training
  assert (common.provenance(second.configs, False)['config_hash'] ==
          common.provenance(first.configs, False)['config_hash'])
  assert common.provenance(second.configs, False)['seeds'] == [3]
  state['commit'] = 'b' * 40
  with pytest.raises(errors.UserError, match='measured at commit aaaaaaaaaaaa'):
    common.Record(str(tmp_path), quick=False).part('seed3', measure(first))
  assert len(calls) == 1


def _fcn_skips_numbers(early_stopped: list[bool], verdicts=('higher', 'higher')) -> dict:
  """Fabricated fcn_skips numbers: 3 stages x 2 seeds, `early_stopped` per stage and seed."""
  from experiments.fcn_skips import __main__ as fcn_skips
  interval = {'estimate': 0.4, 'low': 0.3, 'high': 0.5}
  summary = {v: {'params': 1000, 'collapsed': False, 'steps': [1600, 1600],
                 'early_stopped': early_stopped[2 * i:2 * i + 2], 'mean_iou_ci': interval,
                 'per_image_miou_ci': interval, **{m: 0.5 for m in fcn_skips.METRICS}}
             for i, v in enumerate(fcn_skips.VARIANTS)}
  steps = [{'fine': f, 'coarse': c, 'delta': interval, 'per_image_delta': interval,
            'verdict': w, 'per_image_verdict': w, 'sentence': f'{f} vs {c}: {w}.'}
           for (c, f), w in zip(zip(fcn_skips.VARIANTS, fcn_skips.VARIANTS[1:]), verdicts)]
  setup = {'widths': [8], 'fc_width': 64, 'first_padding': 100, 'max_steps': 1600,
           'batch_size': 8, 'patch_size': 64, 'data': 'fcn_shapes', 'optimizer': 'adam',
           'learning_rate': 1e-3, 'eval_every': 200, 'patience': 3, 'min_delta': 0.002,
           'validation_split': 'validation[:25%]'}
  rows = [{'variant': v, 'seed': seed, 'learning_rate': 1e-3 if i == 0 else 1e-4}
          for i, v in enumerate(fcn_skips.VARIANTS) for seed in (0, 1)]
  return {'summary': summary, 'steps': steps, 'setup': setup, 'seeds': [0, 1], 'margin': 0.02,
          'paper': fcn_skips.PAPER, 'rows': rows}


def test_fcn_skips_verdict_says_which_stages_stopped_at_the_cap():
  from experiments.fcn_skips import __main__ as fcn_skips
  verdict = lambda numbers: fcn_skips.render(numbers)[1][-1]
  text = verdict(_fcn_skips_numbers([False] * 6))
  assert '6 of 6 stages stopped at the 1,600-step cap' in text
  assert 'every comparison below is between nets still learning' in text
  assert 'the paper\'s ordering holds' in text
  text = verdict(_fcn_skips_numbers([True, True, False, True, True, True], ('higher', 'equivalent')))
  assert '1 of 6 stages' in text and 'partly' in text and 'is not shown' in text
  assert 'cap' not in verdict(_fcn_skips_numbers([True] * 6))


def test_fcn_skips_setup_states_the_grown_stages_learning_rate():
  from experiments.fcn_skips import __main__ as fcn_skips
  setup_text = lambda numbers: next(s for s in fcn_skips.render(numbers)[1]
                                    if s.startswith('**Setup.**'))
  numbers = _fcn_skips_numbers([True] * 6)
  grown = lambda rate: [{**r, 'learning_rate': rate} if r['variant'] != 'fcn32s' else r
                        for r in numbers['rows']]
  assert 'the grown stages at a tenth of it' in setup_text(numbers)
  numbers['rows'] = grown(1e-3)
  assert 'the grown stages too' in setup_text(numbers)
  numbers['rows'] = grown(3e-4)
  assert 'the grown stages at 0.0003' in setup_text(numbers)
  # The run's own configs: the grown stages train at GROWN_LEARNING_RATE.
  assert fcn_skips._config('fcn16s', False, 0, 'x').optimizer.learning_rate == (
      fcn_skips.GROWN_LEARNING_RATE)
  assert fcn_skips._config('fcn32s', False, 0, None).optimizer.learning_rate == (
      fcn_skips.LEARNING_RATE)
