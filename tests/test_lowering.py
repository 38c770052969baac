"""fcn_jax.lowering computes what XLA's own ops compute: values and both gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from fcn_jax import errors
from fcn_jax import layers
from fcn_jax import lowering
from fcn_jax import models
from fcn_jax import onednn


def _cases(seed, count):
  """Random (kernel, stride, padding, height, width, channels) with a non-empty output."""
  rng = np.random.default_rng(seed)
  cases = []
  while len(cases) < count:
    k = tuple(int(v) for v in rng.integers(1, 6, 2))
    s = tuple(int(v) for v in rng.integers(1, 4, 2))
    pad = tuple((int(rng.integers(0, kk)), int(rng.integers(0, kk))) for kk in k)
    h, w = (int(v) for v in rng.integers(2, 14, 2))
    if h + sum(pad[0]) >= k[0] and w + sum(pad[1]) >= k[1]:
      cases.append((k, s, pad, h, w, int(rng.integers(1, 6))))
  return cases


def _compare(ours, reference, *args):
  """Values and gradients (w.r.t. every argument) of `ours` and `reference` agree."""
  expected = reference(*args)
  got = ours(*args)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
  probe = jnp.asarray(np.random.default_rng(0).normal(size=expected.shape), expected.dtype)
  grads = jax.grad(lambda *a: (ours(*a) * probe).sum(), range(len(args)))(*args)
  expected_grads = jax.grad(lambda *a: (reference(*a) * probe).sum(), range(len(args)))(*args)
  for g, e in zip(grads, expected_grads):
    np.testing.assert_allclose(g, e, atol=1e-4, rtol=1e-4)


def _policy(policy, request):
  """`policy`, after skipping (or, in CI, failing) a oneDNN case where it cannot run."""
  if policy == 'onednn':
    request.getfixturevalue('onednn_extension')
  return policy


@pytest.mark.parametrize('policy', ['cpu', 'onednn'])
@pytest.mark.parametrize('case', _cases(0, 24) + [((3, 3), (2, 2), ((1, 1), (1, 1)), 16, 16, 3),
                                                    ((1, 1), (1, 1), ((0, 0), (0, 0)), 5, 7, 6)])
def test_conv_matches_xla(case, policy, request):
  policy = _policy(policy, request)
  (kh, kw), stride, padding, h, w, c = case
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, h, w, c)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kh, kw, c, 4)), jnp.float32)
  _compare(jax.jit(lambda x, k: lowering.conv(x, k, stride, padding, policy=policy)),
           lambda x, k: lax.conv_general_dilated(x, k, stride, padding,
                                                 dimension_numbers=lowering.DIMS), x, kernel)


@pytest.mark.parametrize('policy', ['cpu', 'onednn'])
@pytest.mark.parametrize('case', _cases(1, 24) + [((2, 2), (2, 2), ((0, 0), (0, 0)), 8, 8, 3),
                                                    ((4, 4), (2, 2), ((1, 1), (1, 1)), 5, 6, 2)])
def test_conv_transpose_matches_xla(case, policy, request):
  policy = _policy(policy, request)
  (kh, kw), stride, padding, h, w, c = case
  rng = np.random.default_rng(2)
  output_padding = tuple(int(rng.integers(0, s)) for s in stride)
  x = jnp.asarray(rng.normal(size=(2, h, w, c)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kh, kw, c, 3)), jnp.float32)

  def reference(x, k):  # PyTorch's conv_transpose2d as an input-dilated convolution
    pads = [(kk - 1 - lo, kk - 1 - hi + op) for (lo, hi), kk, op in
            zip(padding, (kh, kw), output_padding)]
    return lax.conv_general_dilated(x, k[::-1, ::-1], (1, 1), pads, lhs_dilation=stride,
                                    dimension_numbers=lowering.DIMS)

  if min(reference(x, kernel).shape[1:3]) <= 0:
    pytest.skip('padding crops the whole output')
  _compare(jax.jit(lambda x, k: lowering.conv_transpose(x, k, stride, padding, output_padding,
                                                        policy=policy)),
           reference, x, kernel)


def test_grouped_and_dilated_convs_use_xla():
  x = jnp.ones((1, 9, 9, 4))
  grouped = lowering.conv(x, jnp.ones((3, 3, 2, 4)), (2, 2), ((1, 1), (1, 1)), groups=2)
  dilated = lowering.conv(x, jnp.ones((3, 3, 4, 2)), (2, 2), ((2, 2), (2, 2)), dilation=(2, 2))
  assert grouped.shape == (1, 5, 5, 4) and dilated.shape == (1, 5, 5, 2)


def test_auto_applies_the_cpu_rewrites_on_the_cpu_backend_only(monkeypatch):
  monkeypatch.setattr(onednn, 'available', lambda: False)  # the CPU rules without oneDNN
  assert lowering.resolve('auto') == 'cpu'  # these tests run on XLA:CPU
  assert (lowering.resolve('xla'), lowering.resolve('cpu')) == ('xla', 'cpu')
  with pytest.raises(errors.ConfigError, match='lowering must be one of'):
    lowering.resolve('cudnn')
  x, kernel = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))

  def traced(policy):  # the jaxpr of the gradient: the rewrites are custom VJPs
    return str(jax.make_jaxpr(jax.grad(lambda k: lowering.conv(
        x, k, (2, 2), ((1, 1), (1, 1)), policy=policy).sum()))(kernel))

  assert 'custom_vjp' in traced('auto') and 'custom_vjp' in traced('cpu')
  assert 'custom_vjp' not in traced('xla')
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert lowering.resolve('auto') == 'xla'
  assert 'custom_vjp' not in traced('auto')  # on a GPU: XLA's (cuDNN's) own convolutions
  assert 'custom_vjp' in traced('cpu')


@pytest.mark.parametrize('config', [
    dict(name='patch_net', features=(4, 8), head=(6, 1), kernel_size=3),  # strided convs
    dict(name='unet', depth=2, width=4, padding='same'),  # transposed convs
])
def test_every_policy_gives_one_model_the_same_outputs_and_gradients(config, onednn_extension):
  images = jnp.asarray(np.random.default_rng(0).random((2, 16, 16, 3 if 'head' in config else 1)),
                       jnp.float32)
  results = {}
  for policy in ('xla', 'cpu', 'onednn'):
    model = layers.set_lowering(models.get_model(config, rngs=nnx.Rngs(0)), policy)
    assert {m.lowering for _, m in nnx.iter_graph(model)
            if isinstance(m, (layers.Conv, layers.ConvTranspose))} == {policy}
    loss = lambda m: (m(images) ** 2).mean()  # pylint: disable=unnecessary-lambda-assignment
    value, grads = nnx.value_and_grad(loss)(model)
    results[policy] = (value, jax.tree.leaves(nnx.state(grads, nnx.Param)))
  for policy in ('cpu', 'onednn'):
    np.testing.assert_allclose(results['xla'][0], results[policy][0], rtol=1e-5)
    for a, b in zip(results['xla'][1], results[policy][1]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
