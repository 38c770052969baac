"""Shape and receptive-field algebra vs jax.eval_shape and the gradient probe."""

from fractions import Fraction

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import layers


def seed_stack(rngs):
  """The reference example: three stride-2 convs to 8, 16 and 32 channels."""
  return layers.Sequential(
      layers.Conv(3, 8, 3, stride=2, rngs=rngs), jax.nn.relu,
      layers.Conv(8, 16, 3, stride=2, rngs=rngs), jax.nn.relu,
      layers.Conv(16, 32, 3, stride=2, rngs=rngs), name='seed')


def vgg16_features(width=1):
  """VGG-16's conv stack (3x3 pad-1 convs, 2x2 stride-2 max pools); `width` divides channels."""
  rngs, stack, c = nnx.Rngs(0), [], 3
  for repeats, channels in [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]:
    for _ in range(repeats):
      stack += [layers.Conv(c, channels // width, 3, padding=1, rngs=rngs), jax.nn.relu]
      c = channels // width
    stack.append(layers.MaxPool(2))
  return layers.Sequential(*stack, name='vgg16')


def test_seed_example_shapes():
  model = seed_stack(nnx.Rngs(0))
  g = geometry.of(model)
  for size, want in [((64, 64), (8, 8)), ((128, 128), (16, 16)), ((640, 320), (80, 40))]:
    assert g.output_size(size) == want
    shape = jax.eval_shape(model, jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)).shape
    assert shape == (2, *want, 32) == g.output_shape((2, *size, 3))


def test_vgg16_pool5_textbook_figures():
  g = geometry.of(vgg16_features(width=64))
  assert g.receptive_field == (212, 212)
  assert g.stride == (32, 32)
  assert g.padding == (90, 90)
  assert g.min_input_size == (32, 32)
  assert g.output_size((224, 224)) == (7, 7)
  full_width = nnx.eval_shape(lambda: vgg16_features(width=1))  # abstract: no weights allocated
  assert geometry.of(full_width).params == 14_714_688  # the published count


def test_fractional_stride_after_upsampling():
  stack = layers.Sequential(layers.Conv(1, 1, 3, stride=4, rngs=nnx.Rngs(0)),
                            layers.Upsample(2))
  g = geometry.of(stack)
  assert g.stride == (Fraction(2), Fraction(2))
  up = geometry.of(layers.Upsample(4, method='bilinear'))
  assert up.stride == (Fraction(1, 4),) * 2
  assert up.offset == (Fraction(-3, 8),) * 2  # (o + 1/2)/4 - 1/2 at o = 0


def _unet_geometry(depth, width=64):
  """U-Net (valid convs) as pure geometry nodes: the DAG case."""
  def double_conv(name, c):
    return geometry.chain(name, *[geometry.Window(f'conv{i}', (3, 3), out_channels=c)
                                  for i in range(2)])

  def level(d, c):
    if d == depth - 1:
      return double_conv(f'bottom{d}', c)
    down = geometry.chain(f'down{d}', geometry.Window('pool', (2, 2), (2, 2), exact=True), level(d + 1, 2 * c),
                          geometry.Transpose('upconv', (2, 2), (2, 2), out_channels=c))
    merge = geometry.Merge(f'skip{d}', (geometry.Pointwise('skip'), down), reference=1)
    return geometry.chain(f'level{d}', double_conv(f'enc{d}', c), merge, double_conv(f'dec{d}', c))

  return geometry.Geometry(level(0, width), name='unet')


def test_unet_valid_geometry_merges_with_centre_crops():
  g = _unet_geometry(depth=5)
  assert g.output_shape((1, 572, 572, 1)) == (1, 388, 388, 64)
  merge = g.node.nodes[1]
  _, offsets, _ = merge.offsets(568, 0)
  assert offsets == [88, 0]  # (568 - 392) / 2: the paper's centre crop
  valid = g.valid_sizes(500, 600)
  assert 572 in valid and 573 not in valid
  assert all((n - 572) % 16 == 0 for n in valid)
  assert g.min_input_size == (188, 188)
  with pytest.raises(ValueError, match=r'unet cannot take .*573.*nearest valid: \[572, 588\]'):
    g.check((573, 572))


# --------------------------------------------------------------------------
# Random stacks: algebra == eval_shape, probe within algebra (equal without max/up-sampling).

LAYER = st.one_of(
    st.tuples(st.just('conv'), st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
              st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just('conv_same'), st.sampled_from([1, 3, 5]), st.integers(1, 2),
              st.integers(1, 2)),  # padding='same': d * (k - 1) / 2 on each side
    st.tuples(st.just('avgpool'), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.just('maxpool'), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.just('convT'), st.integers(1, 4), st.integers(1, 3), st.integers(0, 1)),
    st.tuples(st.just('upsample'), st.integers(1, 3), st.sampled_from(['nearest', 'bilinear'])),
    # A skip connection (layers.Merge): the input (or a 1x1 conv of it) and a conv branch with
    # its own padding, the first cropped to align with the second, added or concatenated.
    st.tuples(st.just('skip'), st.integers(1, 4), st.integers(1, 2), st.integers(0, 2),
              st.integers(0, 2), st.sampled_from(['add', 'concat'])),
)


def build(specs, padding_mode='zeros'):
  rngs, stack = nnx.Rngs(0), []
  for spec in specs:
    kind = spec[0]
    if kind == 'conv':
      _, k, s, d, lo, hi = spec
      stack.append(layers.Conv(2, 2, k, stride=s, dilation=d, padding=((lo, hi), (hi, lo)),
                               padding_mode=padding_mode, rngs=rngs))
    elif kind == 'conv_same':
      _, k, s, d = spec
      stack.append(layers.Conv(2, 2, k, stride=s, dilation=d, padding='same',
                               padding_mode=padding_mode, rngs=rngs))
    elif kind in ('avgpool', 'maxpool'):
      _, k, s = spec
      stack.append((layers.AvgPool if kind == 'avgpool' else layers.MaxPool)(k, s))
    elif kind == 'skip':
      _, k, d, lo, hi, combine = spec
      width = 2 if combine == 'add' else 1  # 2 channels out either way
      conv = layers.Conv(2, width, k, dilation=d, padding=((lo, hi), (hi, lo)),
                         padding_mode=padding_mode, rngs=rngs)
      shortcut = layers.identity if combine == 'add' else layers.pointwise(2, 1, rngs=rngs)
      stack.append(layers.Merge(shortcut, conv, reference=1, combine=combine))
    elif kind == 'convT':
      _, k, s, p = spec
      stack.append(layers.ConvTranspose(2, 2, k, stride=s, padding=min(p, k - 1), rngs=rngs))
    else:
      _, f, method = spec
      stack.append(layers.Upsample(f, method=method))
  return layers.Sequential(*stack, name='random_stack')


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(specs=st.lists(LAYER, min_size=1, max_size=4), h=st.integers(1, 40),
                  w=st.integers(1, 40))
def test_random_stack_shapes_match_eval_shape(specs, h, w):
  model = build(specs)
  g = geometry.of(model)
  x = jax.ShapeDtypeStruct((1, h, w, 2), jnp.float32)
  try:
    want = g.output_shape(x.shape)
  except ValueError as e:
    assert 'random_stack cannot take an input of size' in str(e)
    with pytest.raises(ValueError, match='random_stack'):
      model(jnp.zeros(x.shape))
    return
  assert jax.eval_shape(model, x).shape == want


def _size_with_interior_output(g, a):
  """Smallest size whose middle output's field lies inside the image along axis `a`."""
  if g.min_input_size[a] is None:  # a skip that aligns at no size
    return None
  for n in range(g.min_input_size[a], 120):
    try:
      out, field = g.axis(n, a)
    except errors.GeometryError:
      continue
    first, last = field.span(out // 2)
    if first >= 0 and last <= n - 1:
      return n
  return None


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.example(specs=[('convT', 1, 3, 0), ('conv', 3, 1, 2, 0, 0)], extra=0)
@hypothesis.given(specs=st.lists(LAYER, min_size=1, max_size=4), extra=st.integers(0, 6))
def test_probe_agrees_with_algebra(specs, extra):
  model = build(specs)
  g = geometry.of(model)
  sizes = [_size_with_interior_output(g, a) for a in range(2)]
  hypothesis.assume(None not in sizes)
  size = tuple(n + extra for n in sizes)
  fields = g.field(size)
  out = g.output_size(size)
  no_max = all(s[0] != 'maxpool' for s in specs)
  # A transposed conv whose stride exceeds its kernel leaves holes (outputs no input reaches);
  # spans of ranges are unions, so after one the algebra is an upper bound only.
  holes = any(s[0] == 'convT' and s[1] < s[2] for s in specs)
  # Several outputs so that every phase of a fractional stride is seen.
  j = out[1] // 2
  indices = [(i, j) for i in range(out[0] // 2, min(out[0], out[0] // 2 + 4))]
  boxes = [(fields[0].span(i), fields[1].span(j)) for i, j in indices]
  spans = [g.span(size, ij) for ij in indices]
  inside = [all(first >= 0 and last < n for (first, last), n in zip(box, size)) for box in boxes]
  hypothesis.assume(any(inside))
  measured_all = geometry.probe(model, size, 2, indices, samples=4)
  for measured, span, box, ok in zip(measured_all, spans, boxes, inside):
    if not ok:
      continue
    if measured is None:  # a hole of a transposed conv whose stride exceeds its kernel
      assert holes and (len(specs) > 1 or any(first > last for first, last in span))
      continue
    for m, exact, bound in zip(measured, span, box):
      assert bound[0] <= exact[0] <= m[0] and m[1] <= exact[1] <= bound[1], (measured, span, box)
      if no_max and not holes:  # linear nets: the gradient reaches every input the algebra names
        assert m == exact, (measured, span)


def test_probe_finds_vgg_receptive_field():
  model = vgg16_features(width=64)
  [measured] = geometry.probe(model, (244, 244), 3, [(3, 3)], samples=8)
  field = geometry.of(model).field((244, 244))
  # Max pooling routes the gradient through maxima only: the box is inside the algebra's.
  for (m_first, m_last), f in zip(measured, field):
    first, last = f.span(3)
    assert first <= m_first and m_last <= last
    assert (m_last - m_first + 1) > 0.8 * float(f.size)
