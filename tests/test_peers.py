"""The PyTorch peers of the benchmark compute the same function as the Flax models."""

import jax
import numpy as np
import pytest
from flax import nnx

from fcn_jax import inference
from fcn_jax import models

from benchmarks import peers

CASES = {
    'patch_net': (dict(name='patch_net', features=(32, 64, 128), head=(32, 1)), (2, 64, 48, 3)),
    'unet': (dict(name='unet', in_channels=3, depth=3, width=8, padding='same'), (2, 32, 40, 3)),
    'fcn8s': (dict(name='fcn', variant='fcn8s', widths=(4, 8, 8, 16, 16), fc_width=16,
                   num_classes=5, dropout=0.0), (2, 37, 45, 3)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_peer_matches_flax(case, torch_peer):
  config, shape = CASES[case]
  model = models.get_model(config, rngs=nnx.Rngs(0))
  # Non-zero skip scores (the paper zero-initialises them), so the fusions are checked too.
  nnx.update(model, jax.tree.map(lambda a: a + 0.01, nnx.state(model, nnx.Param)))
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  want = inference.predict(model, x)
  got = torch_peer.forward(*peers.export(model, [shape[1:3]]), x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_fcn_peer_refuses_a_size_it_was_not_exported_for(torch_peer):
  config, shape = CASES['fcn8s']
  model = models.get_model(config, rngs=nnx.Rngs(0))
  x = np.zeros(shape, np.float32)
  with pytest.raises(RuntimeError, match='without crop offsets'):
    torch_peer.forward(*peers.export(model, [(64, 64)]), x)


def test_worker_reports_the_pytorch_side_error_and_keeps_serving(torch_peer):
  with pytest.raises(RuntimeError, match='PyTorch side: '):
    torch_peer.call('conv2d', np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 3, 3, 3),
                                                                           np.float32))
  assert torch_peer.call('relu', np.array([-1.0, 2.0], np.float32)).tolist() == [0.0, 2.0]


def test_unsupported_models_are_refused():
  valid = models.get_model(dict(name='unet', depth=2, width=4), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="padding='same' only"):
    peers.export(valid)
  with pytest.raises(ValueError, match='no PyTorch peer'):
    peers.export(models.get_model(dict(name='nin'), rngs=nnx.Rngs(0)))


def test_speed_benchmark_quick_mode_runs(torch_peer):
  """The benchmark's smoke mode (no thresholds: timings belong to benchmarks, not tests)."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, '-m', 'benchmarks.speed', '--quick'], cwd=root,
                       capture_output=True, text=True, check=False, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  rows = [l for l in out.stdout.splitlines() if l.startswith('| training') or
          l.startswith('| inference')]
  assert len(rows) == 2 and all('n/a' not in r.split('|')[3] for r in rows)


def test_user_net_peer_matches_flax(torch_peer):
  """The benchmark's user net (fcn_jax.layers, not fcn_jax.models) and its PyTorch peer."""
  from benchmarks import speed  # pylint: disable=g-import-not-at-top
  model = speed.user_net(nnx.Rngs(0))
  x = np.random.default_rng(0).normal(size=(2, 32, 40, 3)).astype(np.float32)
  got = torch_peer.forward(*peers.export(model), x)
  np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-4, atol=1e-5)


def test_gpu_table_from_constructed_rows():
  """--platform=gpu's table: the median rate, and achieved GFLOP/s against the measured peak."""
  from benchmarks import speed  # pylint: disable=g-import-not-at-top
  rows = [{'kind': 'matmul', 'framework': 'jax', 'gflops': 40000.0, 'device': 'NVIDIA H100',
           'jax': '0.12.0.1'}]
  for rate in (900.0, 1000.0, 5000.0):  # median 1000 patches/s of a 4-GFLOP batch of 64
    rows.append({'kind': 'train', 'framework': 'jax', 'model': 'unet', 'size': 64, 'batch': 64,
                 'rate': rate, 'first_s': 2.0, 'flops': 4e9})
  rows.append({'kind': 'infer', 'framework': 'jax', 'model': 'unet', 'size': 1024,
               'error': 'OOM'})
  text = speed.gpu_table(rows, 3)
  assert 'on NVIDIA H100' in text and '40,000 GFLOP/s' in text
  # 1000 / 64 batches/s x 4 GFLOP = 62.5 GFLOP/s = 0.16 % of 40,000
  assert '| training, patches/s (batch 64, 64²) | unet | 1,000.0 | 62 (0.2%) | 2.00 |' in text
  assert '| inference 1024², Mpixel/s | unet | n/a | - | n/a |' in text
  assert 'Not measured: OOM' in text


def test_gpu_benchmark_without_a_gpu_says_so_in_one_line():
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if jax.default_backend() == 'gpu':
    pytest.skip('this machine has a GPU')
  out = subprocess.run([sys.executable, '-m', 'benchmarks.speed', '--platform=gpu', '--quick'],
                       cwd=root, capture_output=True, text=True, check=False, timeout=300)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines() == [
      'benchmarks.speed --platform=gpu: no GPU for JAX here (JAX finds no GPU (a CUDA jaxlib '
      'plugin and an NVIDIA driver are needed: pip install -r requirements-gpu.txt))']


def test_timed_runs_the_warm_up_calls_untimed():
  from benchmarks import speed, workload
  calls = []
  first, times = workload.timed(lambda: calls.append(1), repeats=3, inner=2, warmup=4)
  assert len(calls) == 1 + 4 + 3 * 2 and len(times) == 3 and first >= 0
  specs = [s for s in speed.figures() if s['kind'] == 'infer']
  assert {s['warmup'] for s in specs if s['size'] <= 1024} == {speed.INFER_WARMUP}
  assert {s['warmup'] for s in specs if s['size'] > 1024} == {0}


def test_speed_only_selects_figures_by_kind_and_size():
  from absl import app
  from benchmarks import speed
  specs = speed.figures()
  chosen = speed.select(specs, ['infer:256'])
  assert chosen and {(s['kind'], s['size']) for s in chosen} == {('infer', 256)}
  assert {s['model'] for s in chosen} == {'patch_net', 'unet', 'fcn8s'}
  assert speed.select(specs, ['train']) == [s for s in specs if s['kind'] == 'train']
  assert speed.select(specs, []) == specs
  with pytest.raises(app.UsageError, match='names no figure'):
    speed.select(specs, ['infer:300'])
