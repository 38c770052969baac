"""Training: smoke runs of every config, resume, multi-device/-process equivalence, errors."""

import importlib
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fcn_jax import models
from fcn_jax import optim
from fcn_jax import tasks
from fcn_jax import train
from tests import mock_catalog

CONFIGS = ('default', 'gap_digits', 'nin_digits', 'dense_to_fcn_digits', 'unet_cells',
           'fcn8s_shapes', 'encoder_decoder_shapes', 'fcn_resnet50', 'deeplab_resnet50')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def runlocal(name, data_dir, **overrides):
  config = importlib.import_module(f'configs.{name}').get_config('runlocal')
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r['train_loss'] for r in map(json.loads, f) if 'train_loss' in r]


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_trains_and_writes_results(name, data_dir, tmp_path):
  out = train.train_and_evaluate(runlocal(name, data_dir), str(tmp_path))
  assert out['step'] == 3 and np.isfinite(out['train_loss'])
  for path in ('config.json', 'metrics.jsonl', 'results.md', 'examples.png', 'checkpoints'):
    assert (tmp_path / path).exists(), path
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path))
  text = (tmp_path / 'results.md').read_text()
  for r in out['results']:
    assert f'| {r.size[0]}×{r.size[1]} |' in text


def test_validation_is_evaluated_during_training_and_test_once(data_dir, tmp_path):
  out = train.train_and_evaluate(runlocal('default', data_dir, num_train_steps=4, eval_every=2),
                                 str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    evaluations = [(r['step'], r['split']) for r in map(json.loads, f) if 'split' in r]
  assert evaluations == [(2, 'validation'), (4, 'validation'), (4, 'test')]
  # results.md reports the test split (tiny: 64x64 and 48x80), not validation's random sizes
  assert sorted(r.size for r in out['results']) == [(48, 80), (64, 64)]
  assert {r.size for r in out['validation']}.isdisjoint({(48, 80)})
  assert '`test` images' in (tmp_path / 'results.md').read_text()


def test_a_split_that_is_both_validation_and_reported_is_evaluated_once(data_dir, tmp_path):
  config = runlocal('default', data_dir, num_train_steps=4, eval_every=2)
  config.data.eval_split = config.data.validation_split
  out = train.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    evaluations = [(r['step'], r['split']) for r in map(json.loads, f) if 'split' in r]
  assert evaluations == [(2, 'validation'), (4, 'validation')]
  assert out['results'] is out['validation']
  assert '`validation` images' in (tmp_path / 'results.md').read_text()


def test_catalog_config_trains_on_mock_data(monkeypatch, tmp_path):
  with mock_catalog.mock_catalog(monkeypatch, num_examples=4):
    out = train.train_and_evaluate(runlocal('pets_unet', None), str(tmp_path))
  assert out['step'] == 3


@pytest.mark.parametrize('name, overrides', [
    ('default', {}),
    ('fcn8s_shapes', {}),  # dropout: its random state is part of the checkpoint
    ('unet_cells', {'model.norm': 'batch'}),  # batch norm: its running statistics too
    ('default', {'model.norm': 'batch'}),  # patch_net with batch norm
])
def test_resume_gives_bitwise_identical_parameters(name, overrides, data_dir, tmp_path):
  straight = train.train_and_evaluate(runlocal(name, data_dir, num_train_steps=4, **overrides),
                                      str(tmp_path / 'straight'))
  train.train_and_evaluate(runlocal(name, data_dir, num_train_steps=2, **overrides),
                           str(tmp_path / 'resumed'))
  resumed = train.train_and_evaluate(runlocal(name, data_dir, num_train_steps=4, **overrides),
                                     str(tmp_path / 'resumed'))
  assert resumed['step'] == 4
  a, b = jax.tree.leaves(straight['state']), jax.tree.leaves(resumed['state'])
  assert len(a) == len(b)
  for x, y in zip(a, b):  # parameters, optimiser-free model state, dropout's random keys
    np.testing.assert_array_equal(*(np.asarray(jax.random.key_data(v)) if jax.dtypes.issubdtype(
        v.dtype, jax.dtypes.prng_key) else np.asarray(v) for v in (x, y)))
  assert _losses(tmp_path / 'straight') == _losses(tmp_path / 'resumed')


def _run(args, env=None, **kwargs):
  return subprocess.run([sys.executable, '-m', 'fcn_jax.train', *args], capture_output=True,
                        text=True, env={**os.environ, **(env or {})}, check=False, **kwargs)


def test_four_devices_match_one(data_dir, tmp_path):
  args = ['--config=configs/default.py:runlocal', f'--config.data.data_dir={data_dir}',
          '--config.num_train_steps=4']
  one = _run(args + [f'--workdir={tmp_path / "one"}'], env={'JAX_NUM_CPU_DEVICES': '1'})
  four = _run(args + [f'--workdir={tmp_path / "four"}'],
              env={'JAX_NUM_CPU_DEVICES': '4'})
  assert one.returncode == 0, one.stderr[-2000:]
  assert 'devices: [CpuDevice(id=0)]' in one.stderr  # the reference really is one device
  assert four.returncode == 0, four.stderr[-2000:]
  assert 'CpuDevice(id=3)' in four.stderr
  np.testing.assert_allclose(_losses(tmp_path / 'four'), _losses(tmp_path / 'one'), rtol=1e-5)


def test_two_processes_match_one(data_dir, tmp_path):
  args = ['--config=configs/default.py:runlocal', f'--config.data.data_dir={data_dir}',
          '--config.num_train_steps=4']
  one = _run(args + [f'--workdir={tmp_path / "one"}'], env={'JAX_NUM_CPU_DEVICES': '1'})
  assert one.returncode == 0, one.stderr[-2000:]
  assert 'JAX process 0/1, devices: [CpuDevice(id=0)]' in one.stderr  # one process, one device
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'fcn_jax.train', *args, f'--workdir={tmp_path / "two"}',
       f'--coordinator=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
  np.testing.assert_allclose(_losses(tmp_path / 'two'), _losses(tmp_path / 'one'), rtol=1e-5)


def test_misspelt_config_field_is_named(tmp_path):
  out = _run(['--config=configs/default.py:runlocal', f'--workdir={tmp_path}',
              '--config.num_trian_steps=3'])
  assert out.returncode != 0
  assert 'num_trian_steps' in out.stderr


def test_workdir_of_another_config_is_refused(data_dir, tmp_path):
  train.train_and_evaluate(runlocal('default', data_dir, num_train_steps=1), str(tmp_path))
  with pytest.raises(ValueError, match=r"holds a run of a different config \(fields \['model'\]"):
    train.train_and_evaluate(runlocal('default', data_dir, num_train_steps=1,
                                      **{'model.kernel_size': 3}), str(tmp_path))


def test_unwritable_workdir_is_a_clear_error(data_dir, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  with pytest.raises(ValueError, match='cannot create workdir'):
    train.train_and_evaluate(runlocal('default', data_dir), str(blocker / 'run'))


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(data_dir, tmp_path):
  config = runlocal('default', data_dir, num_train_steps=6, checkpoint_every=2,
                    **{'optimizer.learning_rate': 1e30, 'optimizer.grad_clip_norm': 0.0,
                       'optimizer.schedule': 'constant'})
  with pytest.raises(train.NonFiniteLossError, match=r'loss is nan at step \d+; stopped\. The '
                     r'last good checkpoint is'):
    train.train_and_evaluate(config, str(tmp_path))


def test_bfloat16_compute_trains_close_to_float32(data_dir, tmp_path):
  f32 = train.train_and_evaluate(runlocal('default', data_dir), str(tmp_path / 'f32'))
  bf16 = train.train_and_evaluate(runlocal('default', data_dir, compute_dtype='bfloat16'),
                                  str(tmp_path / 'bf16'))
  first = [_losses(tmp_path / d)[0] for d in ('f32', 'bf16')]
  assert np.isfinite(bf16['train_loss'])
  np.testing.assert_allclose(first[1], first[0], rtol=2e-2)
  assert _losses(tmp_path / 'f32') != _losses(tmp_path / 'bf16')  # bf16 did run: rounding differs
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(bf16['state'])
             if np.issubdtype(np.asarray(x).dtype, np.floating))


def _convolutions(jaxpr):
  """Every convolution in `jaxpr` and the jaxprs nested in it: XLA's conv_general_dilated, or
  the oneDNN FFI calls that the 'onednn' lowering policy emits instead."""
  found = []
  for eqn in jaxpr.eqns:
    if (eqn.primitive.name == 'conv_general_dilated' or
        str(eqn.params.get('target_name', '')).startswith('fcn_onednn_conv')):
      found.append(eqn)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          found.extend(_convolutions(inner))
  return found


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_compute_dtype_is_the_dtype_of_the_training_convolutions(dtype):
  """The jaxpr of a training step: with bfloat16, every convolution (forward and backward)
  takes bfloat16 operands; with float32, none does. Parameters stay float32."""
  config = runlocal('default', None, compute_dtype=dtype)
  model = models.get_model(config.model, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optim.make_optimizer(config), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  batch = {'image': jnp.ones((2, 64, 64, 3)), 'target': jnp.zeros((2, 8, 8, 1))}

  def step(state, batch):
    model, optimizer = nnx.merge(graphdef, state)
    return train._train_step(model, optimizer, batch, tasks.Heatmap(), dtype)  # pylint: disable=protected-access

  convs = _convolutions(jax.make_jaxpr(step)(state, batch).jaxpr)
  assert len(convs) >= 6  # three conv blocks and the head, forward and backward
  in_bf16 = [any(v.aval.dtype == jnp.bfloat16 for v in eqn.invars) for eqn in convs]
  assert all(in_bf16) if dtype == 'bfloat16' else not any(in_bf16)
