"""The memory-budget planner (fcn_jax.inference.memory): the chosen tiles keep the measured
peak memory of a prediction under the budget, a smaller budget gets smaller calls, and a
budget too small is one line naming the minimum."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from configs import default
from fcn_jax import errors
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import train
from fcn_jax.inference import memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK = ('import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:], '
        'capture_output=True, text=True); print(json.dumps([r.returncode, r.stdout, r.stderr, '
        'resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))')


def _peak(args):
  """(returncode, stdout, stderr, peak RSS bytes) of `python -m fcn_jax.predict ARGS`, alone in a
  fresh parent process (so the peak is its own)."""
  out = subprocess.run([sys.executable, '-c', PEAK, sys.executable, '-m', 'fcn_jax.predict',
                        *args], capture_output=True, text=True, cwd=ROOT, timeout=500,
                       check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_budget_keeps_the_measured_peak_under_it(tmp_path):
  config = default.get_config('runlocal')
  config.data.data_dir = str(tmp_path / 'tfds')
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  image = (np.random.default_rng(0).random((1536, 1536, 3)) * 255).astype(np.uint8)
  np.save(tmp_path / 'big.npy', image)
  base = [f'--workdir={tmp_path / "run"}', f'--input={tmp_path / "big.npy"}',
          f'--output={tmp_path / "out"}']
  code, stdout, stderr, peak = _peak(base + ['--memory=1GB'])
  assert code == 0, stderr[-2000:]
  assert 'memory plan: tile' in stdout
  assert peak < 2 ** 30, (peak / 2 ** 20, stdout)
  refused = subprocess.run([sys.executable, '-m', 'fcn_jax.predict', *base, '--memory=100MB'],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert refused.returncode == 1 and 'needs at least' in refused.stderr
  assert 'Traceback' not in refused.stderr


def test_a_smaller_budget_gets_fewer_pixels_per_call():
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  model.eval()
  shape = (1024, 1024, 3)
  large = inference.plan_memory(model, shape, '8GB')
  small = inference.plan_memory(model, shape, large.estimate - 1)
  assert small.tile ** 2 * small.batch <= large.tile ** 2 * min(large.batch, 64)
  assert small.estimate < large.estimate
  with pytest.raises(errors.InputError, match='memory budget'):
    memory.parse_bytes('lots')
  assert memory.parse_bytes('1.5G') == 3 * 2 ** 29
