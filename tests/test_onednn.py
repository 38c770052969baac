"""fcn_jax.onednn: oneDNN's convolutions equal XLA's (values and both gradients) for every
variant fcn_jax uses, are what the CPU lowering chooses, and fall back to XLA when absent."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax import lax

from fcn_jax import layers
from fcn_jax import lowering
from fcn_jax import models
from fcn_jax import tasks
from fcn_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _xla(x, kernel, stride, padding, dilation, groups):
  return lax.conv_general_dilated(x, kernel, stride, padding, rhs_dilation=dilation,
                                  dimension_numbers=lowering.DIMS, feature_group_count=groups)


# (batch, height, width, in, out, kernel, stride, padding, dilation, groups)
VARIANTS = {
    '3x3 same': (2, 9, 11, 3, 4, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    '1x1': (2, 7, 5, 6, 3, (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    'strided, uneven padding': (2, 16, 15, 8, 6, (3, 3), (2, 2), ((1, 0), (1, 1)), (1, 1), 1),
    'stride 2x1, 5x2 kernel': (1, 12, 9, 4, 5, (5, 2), (2, 1), ((2, 1), (0, 1)), (1, 1), 1),
    'valid 7x7': (1, 20, 18, 3, 8, (7, 7), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    'dilated': (2, 14, 13, 4, 6, (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 1),
    'dilated, strided': (1, 17, 17, 3, 4, (3, 3), (2, 2), ((2, 2), (2, 2)), (2, 2), 1),
    'grouped': (2, 10, 10, 4, 6, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 2),
    'depthwise': (2, 10, 10, 8, 8, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 8),
    'grouped, strided, dilated': (1, 15, 13, 6, 9, (3, 2), (2, 1), ((2, 2), (1, 0)), (2, 3), 3),
}


@pytest.mark.parametrize('variant', VARIANTS)
def test_values_and_gradients_equal_xla(variant, onednn_extension):
  n, h, w, c, o, k, stride, padding, dilation, groups = VARIANTS[variant]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(n, h, w, c)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(*k, c // groups, o)), jnp.float32)
  ours = jax.jit(lambda x, k: onednn_extension.conv(x, k, stride, padding, dilation, groups))
  expected = _xla(x, kernel, stride, padding, dilation, groups)
  np.testing.assert_allclose(ours(x, kernel), expected, atol=1e-4, rtol=1e-4)
  probe = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
  grads = jax.jit(jax.grad(lambda x, k: (ours(x, k) * probe).sum(), (0, 1)))(x, kernel)
  expected_grads = jax.grad(lambda x, k: (_xla(x, k, stride, padding, dilation, groups)
                                          * probe).sum(), (0, 1))(x, kernel)
  for got, want in zip(grads, expected_grads):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  assert onednn_extension.implementation(x.shape, kernel.shape, stride, padding, dilation,
                                         groups)  # oneDNN found a kernel and says which


def test_vmap_over_the_convolution(onednn_extension):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, 2, 8, 8, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
  pads = ((1, 1), (1, 1))
  got = jax.vmap(lambda x: onednn_extension.conv(x, kernel, (1, 1), pads))(x)
  want = jax.vmap(lambda x: _xla(x, kernel, (1, 1), pads, (1, 1), 1))(x)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def _targets(fn, *args) -> set[str]:
  text = jax.jit(fn).lower(*args).as_text()
  return {t for t in ('forward', 'input_grad', 'weight_grad') if f'fcn_onednn_conv_{t}' in text}


def test_the_cpu_lowering_chooses_onednn_for_every_layer_type(onednn_extension):
  del onednn_extension
  assert lowering.resolve('auto') == 'onednn'
  x = jnp.ones((1, 8, 8, 3))
  both = {'forward', 'input_grad', 'weight_grad'}
  for module in (layers.Conv(3, 4, 3, stride=2, padding=1, rngs=nnx.Rngs(0)),
                 layers.Conv(3, 4, 3, dilation=2, padding=2, rngs=nnx.Rngs(0)),
                 layers.ConvTranspose(3, 4, 4, stride=2, padding=1, rngs=nnx.Rngs(0)),
                 layers.ConvTranspose(3, 4, 3, stride=1, padding=1, rngs=nnx.Rngs(0))):
    graphdef, state = nnx.split(module)
    loss = lambda s, x: (nnx.merge(graphdef, s)(x) ** 2).sum()  # pylint: disable=unnecessary-lambda-assignment
    assert _targets(jax.grad(loss, (0, 1)), state, x) == both, module
    layers.set_lowering(module, 'cpu')
    graphdef, state = nnx.split(module)
    assert not _targets(loss, state, x), module
  # bfloat16 stays with XLA (the extension is float32 only)
  assert not _targets(lambda x, k: lowering.conv(x, k, (1, 1), ((1, 1), (1, 1))),
                      jnp.ones((1, 8, 8, 3), jnp.bfloat16), jnp.ones((3, 3, 3, 4), jnp.bfloat16))


CONFIGS = {
    'patch_net': (dict(name='patch_net', features=(4, 8), head=(6, 1)), tasks.Heatmap(), 3),
    'unet': (dict(name='unet', depth=2, width=4, padding='same', num_classes=2),
             tasks.Segmentation(), 1),
    'fcn8s': (dict(name='fcn', variant='fcn8s', widths=(4, 4, 8, 8, 8), fc_width=8,
                   num_classes=3, dropout=0.0), tasks.Segmentation(), 3),
}


@pytest.mark.parametrize('name', CONFIGS)
def test_training_steps_equal_xla(name, onednn_extension):
  """Three Adam steps of each model type: the same loss and weights as XLA's convolutions."""
  del onednn_extension
  config, task, channels = CONFIGS[name]
  rng = np.random.default_rng(2)
  size = 32
  images = jnp.asarray(rng.random((2, size, size, channels)), jnp.float32)
  out_shape = jax.eval_shape(models.get_model(config, rngs=nnx.Rngs(0)), images).shape
  target = (jnp.asarray(rng.random(out_shape) > 0.5, jnp.float32) if name == 'patch_net' else
            jnp.asarray(rng.integers(0, out_shape[-1], out_shape[:3])))
  results = {}
  for policy in ('xla', 'onednn'):
    model = layers.set_lowering(models.get_model(config, rngs=nnx.Rngs(0)), policy)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    batch = {'image': images, 'target': target}
    losses = [float(train.train_step(model, optimizer, batch, task, 'float32')[0])
              for _ in range(3)]
    results[policy] = losses, jax.tree.leaves(nnx.state(model, nnx.Param))
  np.testing.assert_allclose(results['onednn'][0], results['xla'][0], rtol=1e-4)
  for got, want in zip(results['onednn'][1], results['xla'][1]):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_a_plainly_jitted_user_net_runs_onednn(onednn_extension):
  """A net of fcn_jax.layers, jitted without fcn_jax's training loop, gets the extension."""
  del onednn_extension

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.a = layers.Conv(3, 8, 3, stride=2, padding=1, rngs=rngs)
      self.b = layers.Conv(8, 1, 1, rngs=rngs)

    def __call__(self, x):
      return self.b(jax.nn.relu(self.a(x)))

  graphdef, state = nnx.split(Net(nnx.Rngs(0)))
  x = jnp.ones((2, 16, 16, 3))
  grads = lambda s: nnx.grad(lambda n: (n(x) ** 2).mean())(nnx.merge(graphdef, s))  # pylint: disable=unnecessary-lambda-assignment
  assert _targets(grads, state) == {'forward', 'input_grad', 'weight_grad'}


def test_without_a_compiler_fcn_jax_says_so_once_and_uses_xla(tmp_path):
  """No compiler (CXX names none): the build says why in one line, the CLI exits 1, and the
  lowering's 'auto' falls back to the CPU rewrites, with XLA's numbers."""
  env = dict(os.environ, CXX='no-such-compiler', FCN_JAX_CACHE=str(tmp_path),
             PYTHONPATH=ROOT)
  cli = subprocess.run([sys.executable, '-m', 'fcn_jax.onednn', 'build'], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert cli.returncode == 1
  assert cli.stderr.strip().splitlines() == [
      "fcn_jax: oneDNN convolutions unavailable (no C++ compiler (no-such-compiler) on PATH); "
      "fcn_jax will use XLA's"]
  script = '''
import jax, jax.numpy as jnp
from jax import lax
from fcn_jax import lowering
x, k = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
f = lambda x: lowering.conv(x, k, (2, 2), ((1, 1), (1, 1)))
print(lowering.resolve('auto'), lowering.resolve('onednn'))
print('fcn_onednn' in jax.jit(f).lower(x).as_text())
print(float(abs(f(x) - lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)),
                                                dimension_numbers=lowering.DIMS)).max()))
'''
  run = subprocess.run([sys.executable, '-c', script], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  assert run.stdout.split() == ['cpu', 'cpu', 'False', '0.0']
  warnings = [l for l in run.stderr.splitlines() if 'oneDNN' in l]
  assert len(warnings) == 1 and 'no C++ compiler' in warnings[0]
  assert not list(tmp_path.rglob('*.so'))


def test_onednn_policy_is_refused_off_the_cpu(monkeypatch):
  from fcn_jax import errors  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  with pytest.raises(errors.ConfigError, match="runs on the CPU only"):
    lowering.resolve('onednn')
  assert lowering.resolve('auto') == 'xla'
