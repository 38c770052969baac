"""Layer numerics against a direct NumPy reference and (where set up) PyTorch CPU.

PyTorch runs in its own Python (`benchmarks.peers.TorchWorker`, the `torch_worker` fixture):
arrays go there in NCHW and come back as NumPy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fcn_jax import geometry
from fcn_jax import layers
from tests import reference



def _nchw(x):
  return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))


def _nhwc(x):
  return np.asarray(x).transpose(0, 2, 3, 1)

TOL = dict(rtol=1e-4, atol=1e-4)
MODES = ('zeros', 'reflect', 'replicate', 'circular')


def _random_conv_case(seed):
  """A random conv configuration and an input large enough for it."""
  rng = np.random.default_rng(seed)
  k = tuple(rng.integers(1, 5, size=2))
  s = tuple(rng.integers(1, 4, size=2))
  d = tuple(rng.integers(1, 3, size=2))
  groups = int(rng.choice([1, 2]))
  c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
  mode = MODES[seed % 4]
  if seed % 3 == 0 and all((di * (ki - 1)) % 2 == 0 for ki, di in zip(k, d)):
    padding = 'same'
  else:
    padding = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(2))
  pads = layers.resolve_padding(padding, k, d)
  min_size = max(max(p) for p in pads) + 1
  size = tuple(int(rng.integers(max(min_size, 1), 12)) + d_ * (k_ - 1) for k_, d_ in zip(k, d))
  x = rng.standard_normal((2, *size, c_in)).astype(np.float32)
  return dict(k=k, s=s, d=d, groups=groups, c_in=c_in, c_out=c_out, mode=mode, padding=padding,
              pads=pads, x=x)


def _make_conv(case):
  return layers.Conv(case['c_in'], case['c_out'], case['k'], stride=case['s'],
                     dilation=case['d'], groups=case['groups'], padding=case['padding'],
                     padding_mode=case['mode'], rngs=nnx.Rngs(0))


def _randomise(module, seed=1):
  """Gives every parameter (bias included) random values so no term hides behind zeros."""
  rng = np.random.default_rng(seed)
  for _, param in nnx.iter_graph(module):
    if isinstance(param, nnx.Param):
      param[...] = jnp.asarray(rng.standard_normal(param.shape).astype(np.float32))
  return module


@pytest.mark.parametrize('seed', range(24))
def test_conv_matches_numpy(seed):
  case = _random_conv_case(seed)
  conv = _randomise(_make_conv(case))
  got = conv(jnp.asarray(case['x']))
  want = reference.conv2d(case['x'], np.asarray(conv.kernel[...]), np.asarray(conv.bias[...]),
                          case['s'], case['d'], case['pads'], case['mode'], case['groups'])
  np.testing.assert_allclose(got, want, **TOL)
  assert got.shape[1:3] == geometry.of(conv).output_size(case['x'].shape[1:3])


@pytest.mark.parametrize('seed', range(24))
def test_conv_matches_torch(seed, torch_peer):
  case = _random_conv_case(seed)
  conv = _randomise(_make_conv(case))
  (top, bottom), (left, right) = case['pads']
  mode = 'constant' if case['mode'] == 'zeros' else case['mode']
  x = torch_peer.call('pad', _nchw(case['x']), (left, right, top, bottom), mode=mode)
  w = np.ascontiguousarray(np.asarray(conv.kernel[...]).transpose(3, 2, 0, 1))
  want = torch_peer.call('conv2d', x, w, np.asarray(conv.bias[...]), stride=case['s'],
                         dilation=case['d'], groups=case['groups'])
  got = conv(jnp.asarray(case['x']))
  np.testing.assert_allclose(got, _nhwc(want), **TOL)


def _random_transpose_case(seed):
  rng = np.random.default_rng(100 + seed)
  k = int(rng.integers(1, 5))
  s = int(rng.integers(1, 4))
  d = int(rng.integers(1, 3))
  p = int(rng.integers(0, d * (k - 1) + 1))
  op = int(rng.integers(0, max(s, d)))
  x = rng.standard_normal((2, int(rng.integers(1, 7)), int(rng.integers(1, 7)),
                           int(rng.integers(1, 4)))).astype(np.float32)
  return k, s, d, p, op, x


@pytest.mark.parametrize('seed', range(16))
def test_conv_transpose_matches_numpy_and_torch(seed, torch_worker):
  k, s, d, p, op, x = _random_transpose_case(seed)
  if (x.shape[1] - 1) * s - 2 * p + d * (k - 1) + 1 + op < 1:
    pytest.skip('empty output')
  layer = _randomise(layers.ConvTranspose(x.shape[-1], 3, k, stride=s, padding=p,
                                          output_padding=op, dilation=d, rngs=nnx.Rngs(0)))
  kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
  got = layer(jnp.asarray(x))
  want = reference.conv_transpose2d(x, kernel, bias, (s, s), ((p, p), (p, p)), (op, op), (d, d))
  np.testing.assert_allclose(got, want, **TOL)
  assert got.shape[1:3] == geometry.of(layer).output_size(x.shape[1:3])
  if torch_worker is not None:
    want_t = torch_worker.call('conv_transpose2d', _nchw(x),
                               np.ascontiguousarray(kernel.transpose(2, 3, 0, 1)), bias,
                               stride=s, padding=p, output_padding=op, dilation=d)
    np.testing.assert_allclose(got, _nhwc(want_t), **TOL)


def test_bilinear_conv_transpose_interpolates_like_upsample():
  """Long et al.'s bilinear init equals half-pixel bilinear resizing away from the border."""
  x = np.random.default_rng(0).standard_normal((1, 9, 7, 2)).astype(np.float32)
  for f in (2, 3, 4):
    k = 2 * f - f % 2
    up = layers.ConvTranspose(2, 2, k, stride=f, padding=f // 2, init='bilinear',
                              use_bias=False, rngs=nnx.Rngs(0))
    got = np.asarray(up(jnp.asarray(x)))
    want = reference.resize(x, (9 * f, 7 * f), 'bilinear')
    assert got.shape == want.shape
    np.testing.assert_allclose(got[:, f:-f, f:-f], want[:, f:-f, f:-f], **TOL)


@pytest.mark.parametrize('method', ['nearest', 'bilinear'])
@pytest.mark.parametrize('seed', range(6))
def test_upsample_matches_numpy_and_torch(method, seed, torch_worker):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((2, int(rng.integers(1, 9)), int(rng.integers(1, 9)), 3)
                          ).astype(np.float32)
  factor = tuple(int(f) for f in rng.integers(1, 4, size=2))
  got = layers.Upsample(factor, method=method)(jnp.asarray(x))
  size = (x.shape[1] * factor[0], x.shape[2] * factor[1])
  np.testing.assert_allclose(got, reference.resize(x, size, method), **TOL)
  target = tuple(int(t) for t in rng.integers(1, 20, size=2))
  got_sized = layers.Upsample(None, size=target, method=method)(jnp.asarray(x))
  np.testing.assert_allclose(got_sized, reference.resize(x, target, method), **TOL)
  if torch_worker is not None:
    kw = {'align_corners': False} if method == 'bilinear' else {}
    want = torch_worker.call('interpolate', _nchw(x), scale_factor=factor, mode=method, **kw)
    np.testing.assert_allclose(got, _nhwc(want), **TOL)
    if method == 'bilinear':  # torch's float 'nearest' with a size can round differently
      want = torch_worker.call('interpolate', _nchw(x), size=target, mode=method,
                               align_corners=False)
      np.testing.assert_allclose(got_sized, _nhwc(want), **TOL)


def _random_pool_case(seed):
  rng = np.random.default_rng(200 + seed)
  k = tuple(int(v) for v in rng.integers(1, 4, size=2))
  s = tuple(int(v) for v in rng.integers(1, 4, size=2))
  p = tuple(int(rng.integers(0, ki // 2 + 1)) for ki in k)
  size = tuple(int(rng.integers(ki, 10)) for ki in k)
  x = rng.standard_normal((2, *size, 3)).astype(np.float32)
  return k, s, p, x


@pytest.mark.parametrize('seed', range(12))
def test_pools_and_unpool_match_numpy_and_torch(seed, torch_worker):
  k, s, p, x = _random_pool_case(seed)
  pads = ((p[0], p[0]), (p[1], p[1]))
  values, switches = layers.MaxPool(k, s, p, return_switches=True)(jnp.asarray(x))
  want_v, want_s = reference.max_pool(x, k, s, pads)
  np.testing.assert_allclose(values, want_v, **TOL)
  np.testing.assert_array_equal(switches, want_s)
  np.testing.assert_allclose(layers.MaxPool(k, s, p)(jnp.asarray(x)), want_v, **TOL)
  avg = layers.AvgPool(k, s, p)(jnp.asarray(x))
  np.testing.assert_allclose(avg, reference.avg_pool(x, k, s, pads), **TOL)
  # Unpool back to the pooled input's size (output_padding picks it among the s candidates).
  base = layers.MaxUnpool(k, s, p)
  base_size = geometry.of(base).output_size(values.shape[1:3])
  extra = tuple(n - b for n, b in zip(x.shape[1:3], base_size))
  unpooled = layers.MaxUnpool(k, s, p, output_padding=extra)(values, switches)
  np.testing.assert_allclose(unpooled, reference.max_unpool(want_v, want_s, x.shape[1:3]), **TOL)
  if torch_worker is not None:
    tv, ts = torch_worker.call('max_pool2d', _nchw(x), k, s, p, return_indices=True)
    np.testing.assert_allclose(values, _nhwc(tv), **TOL)
    np.testing.assert_array_equal(switches, _nhwc(ts))
    ta = torch_worker.call('avg_pool2d', _nchw(x), k, s, p)
    np.testing.assert_allclose(avg, _nhwc(ta), **TOL)
    tu = torch_worker.call('max_unpool2d', tv, ts, k, s, p, output_size=x.shape[1:3])
    np.testing.assert_allclose(unpooled, _nhwc(tu), **TOL)


@pytest.mark.parametrize('size', [(7, 8), (9, 5), (4, 4)])
@pytest.mark.parametrize('window,stride,pad', [(2, 2, 0), (3, 2, 1), (3, 3, 0)])
def test_ceil_mode_max_pool_matches_torch(size, window, stride, pad, torch_peer):
  x = np.random.default_rng(0).standard_normal((1, *size, 2)).astype(np.float32)
  values, switches = layers.MaxPool(window, stride, pad, ceil_mode=True,
                                    return_switches=True)(jnp.asarray(x))
  tv, ts = torch_peer.call('max_pool2d', _nchw(x), window, stride, pad, ceil_mode=True,
                           return_indices=True)
  np.testing.assert_allclose(values, _nhwc(tv), **TOL)
  np.testing.assert_array_equal(switches, _nhwc(ts))
  plain = layers.MaxPool(window, stride, pad, ceil_mode=True)(jnp.asarray(x))
  np.testing.assert_allclose(plain, _nhwc(tv), **TOL)


def test_max_pool_gradient_goes_to_the_first_maximum_as_in_pytorch():
  x = jnp.asarray([[0., 2., 2., 1.], [2., 1., 1., 1.], [3., 3., 0., 0.], [3., 3., 0., 0.]])
  grad = jax.grad(lambda x: layers.MaxPool(2)(x).sum())(x[None, :, :, None])
  np.testing.assert_array_equal(grad[0, :, :, 0], [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0],
                                                   [0, 0, 0, 0]])


def test_unpool_restores_odd_size_with_output_padding():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 7, 5, 2)), jnp.float32)
  values, switches = layers.MaxPool(2, return_switches=True)(x)
  restored = layers.MaxUnpool(2, output_padding=1)(values, switches)
  assert restored.shape == x.shape
  # every pooled maximum is back at its place
  np.testing.assert_allclose(np.sort(restored[restored != 0]), np.sort(values.ravel()))


def test_global_pools():
  x = np.random.default_rng(0).standard_normal((2, 5, 3, 4)).astype(np.float32)
  np.testing.assert_allclose(layers.GlobalAvgPool()(jnp.asarray(x)), x.mean(axis=(1, 2)), **TOL)
  np.testing.assert_allclose(layers.GlobalMaxPool()(jnp.asarray(x)), x.max(axis=(1, 2)), **TOL)
  assert layers.GlobalAvgPool(keepdims=True)(jnp.asarray(x)).shape == (2, 1, 1, 4)


def test_gated_conv_is_feature_times_gate():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 6, 6, 3)), jnp.float32)
  gated = _randomise(layers.GatedConv(3, 4, 3, rngs=nnx.Rngs(0)))
  both = np.asarray(gated.conv(x))
  want = jax.nn.elu(both[..., :4]) * jax.nn.sigmoid(both[..., 4:])
  np.testing.assert_allclose(gated(x), want, **TOL)
  assert geometry.of(gated).output_shape(x.shape) == (1, 6, 6, 4)


def test_pointwise_head_is_a_dense_layer_per_pixel():
  rngs = nnx.Rngs(0)
  head = _randomise(layers.pointwise_head([5, 7, 2], rngs=rngs))
  x = np.random.default_rng(1).standard_normal((2, 4, 3, 5)).astype(np.float32)
  dense1, dense2 = head.layers[0], head.layers[2]
  h = np.maximum(x @ np.asarray(dense1.kernel[...])[0, 0] + np.asarray(dense1.bias[...]), 0)
  want = h @ np.asarray(dense2.kernel[...])[0, 0] + np.asarray(dense2.bias[...])
  np.testing.assert_allclose(head(jnp.asarray(x)), want, **TOL)


@pytest.mark.parametrize('bad', [
    dict(padding='same', kernel_size=2),
    dict(padding='full'),
    dict(padding_mode='mirror'),
    dict(groups=2),
])
def test_conv_rejects_bad_arguments_with_clear_message(bad):
  kwargs = dict(kernel_size=3)
  kwargs.update(bad)
  with pytest.raises(ValueError, match=r'padding|groups'):
    layers.Conv(3, 4, rngs=nnx.Rngs(0), **kwargs)


def test_too_small_input_names_layer_size_and_valid_sizes():
  conv = layers.Conv(3, 4, 5, padding='valid', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'Conv cannot take an input of size \(3, 9\).*minimum '
                     r'height is 5, nearest valid: \[5\]'):
    conv(jnp.zeros((1, 3, 9, 3)))
  reflect = layers.Conv(3, 4, 5, padding_mode='reflect', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='reflect padding 2'):
    reflect(jnp.zeros((1, 2, 9, 3)))


def test_wrong_channel_count_is_a_clear_error():
  conv = layers.Conv(3, 4, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'Conv expects 3 input channels \(NHWC\), got an input of '
                     r'shape \(1, 8, 8, 1\)'):
    conv(jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match='expects NHWC input'):
    conv(jnp.zeros((8, 8, 3)))
