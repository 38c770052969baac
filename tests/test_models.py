"""Every model: output shape == geometry, probe within the algebra, clear errors, equivariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fcn_jax import geometry
from fcn_jax import models

# Tiny versions of every architecture, with the input sizes each must handle.
CASES = {
    'patch_net': (dict(name='patch_net'), 3, [(64, 64), (640, 320), (37, 21), (8, 8)]),
    'patch_net_valid_pool': (dict(name='patch_net', padding='valid', downsample='maxpool'), 3,
                             [(64, 64), (45, 70)]),
    'dense_classifier': (dict(name='dense_classifier', input_size=(32, 32)), 3, [(32, 32)]),
    'gap_classifier': (dict(name='gap_classifier', features=(8, 16)), 1,
                       [(28, 28), (28, 16), (56, 56), (13, 9)]),
    'nin': (dict(name='nin', widths=((8, 8, 8), (8, 8, 8), (8, 8))), 1, [(28, 28), (28, 16)]),
    'encoder_decoder': (dict(name='encoder_decoder'), 3, [(64, 64), (64, 48), (12, 20)]),
    'encoder_decoder_bilinear_gated': (
        dict(name='encoder_decoder', upsample='bilinear', gated=True), 3, [(32, 16)]),
    'segnet_lite': (dict(name='encoder_decoder', upsample='unpool', features=(4, 8, 8)), 3,
                    [(64, 64), (24, 40)]),
    'unet_valid': (dict(name='unet', depth=3, width=4), 1, [(92, 92), (60, 76)]),
    'unet_same_bilinear_group': (
        dict(name='unet', depth=3, width=4, padding='same', upsample='bilinear', norm='group'), 1,
        [(32, 48), (4, 12)]),
    'unet_batchnorm': (dict(name='unet', depth=2, width=4, norm='batch'), 1, [(40, 44)]),
    'patch_net_batchnorm': (dict(name='patch_net', norm='batch'), 3, [(64, 64), (37, 53)]),
    'fcn32s': (dict(name='fcn', variant='fcn32s', widths=(4, 4, 8, 8, 8), fc_width=8,
                    num_classes=3), 3, [(1, 1), (37, 50)]),
    'fcn16s': (dict(name='fcn', variant='fcn16s', widths=(4, 4, 8, 8, 8), fc_width=8,
                    num_classes=3), 3, [(33, 17)]),
    'fcn8s': (dict(name='fcn', variant='fcn8s', widths=(4, 4, 8, 8, 8), fc_width=8,
                   num_classes=3), 3, [(1, 1), (32, 32), (45, 30), (64, 97)]),
    'fcn_resnet18_os32': (dict(name='resnet', depth=18, output_stride=32, base_width=4,
                               num_classes=3), 3, [(32, 32), (64, 96)]),
    'fcn_resnet50_os8': (dict(name='resnet', depth=50, output_stride=8, base_width=4,
                              num_classes=3), 3, [(8, 8), (40, 56)]),
    'deeplabv3_resnet34_os16': (dict(name='resnet', depth=34, output_stride=16, head='aspp',
                                     base_width=4, aspp_width=8, aspp_rates=(2, 3, 4),
                                     num_classes=3), 3, [(16, 16), (48, 32)]),
}


def build(config):
  model = models.get_model(config, rngs=nnx.Rngs(0))
  model.eval()  # dropout off, batch norm from running statistics
  return model


@pytest.mark.parametrize('case', sorted(CASES))
def test_output_shape_matches_geometry(case):
  config, channels, sizes = CASES[case]
  model = build(config)
  g = geometry.of(model)
  for size in sizes:
    out = jax.eval_shape(model, jax.ShapeDtypeStruct((2, *size, channels), jnp.float32))
    want = g.output_size(size)
    got = out.shape[1:3] if len(out.shape) == 4 else (1, 1)  # (N, K) after global pooling
    assert got == want, (case, size)
  y = model(jnp.ones((1, *sizes[0], channels)))
  assert np.isfinite(np.asarray(y)).all()


@pytest.mark.parametrize('case', sorted(CASES))
def test_too_small_input_raises_clear_error(case):
  config, channels, sizes = CASES[case]
  model = build(config)
  g = geometry.of(model)
  too_small = (g.min_input_size[0] - 1, sizes[0][1])
  with pytest.raises(ValueError, match=rf'{g.name} cannot take an input of size '
                     rf'\({too_small[0]}, {too_small[1]}\).*minimum height is '
                     rf'{g.min_input_size[0]}'):
    model(jnp.zeros((1, *too_small, channels)))


def _interior_outputs(g, size):
  """A few output positions whose fields lie inside the image."""
  out = g.output_size(size)
  fields = g.field(size)
  picks = []
  for i in range(out[0]):
    for j in range(out[1]):
      spans = [fields[0].span(i), fields[1].span(j)]
      if all(lo >= 0 and hi < n for (lo, hi), n in zip(spans, size)):
        picks.append((i, j))
  return picks[len(picks) // 2:len(picks) // 2 + 3] or [(out[0] // 2, out[1] // 2)]


PROBE_CASES = {
    # case: (config overrides, input size, whether the probe must equal the algebra)
    'patch_net': (dict(name='patch_net', activation='identity'), (48, 48), True),
    'gap_classifier': (dict(name='gap_classifier', activation='identity'), (20, 24), True),
    'nin': (dict(name='nin', widths=((4, 4, 4), (4, 4, 4), (4, 4)), activation='identity'),
            (28, 28), False),
    'encoder_decoder': (dict(name='encoder_decoder', activation='identity'), (64, 64), False),
    'unet_valid': (dict(name='unet', depth=3, width=2, activation='identity'), (92, 92), False),
    'fcn8s': (CASES['fcn8s'][0], (64, 64), False),
}


@pytest.mark.parametrize('case', sorted(PROBE_CASES))
def test_probe_agrees_with_algebraic_receptive_field(case):
  config, size, exact = PROBE_CASES[case]
  model = build(config)
  g = geometry.of(model)
  channels = config.get('in_channels', CASES.get(case, (None, 3 if case == 'patch_net' else 1))[1])
  picks = _interior_outputs(g, size)
  fields = g.field(size)
  for (i, j), measured in zip(picks, geometry.probe(model, size, channels, picks, samples=4)):
    assert measured is not None
    boxes = (fields[0].span(i), fields[1].span(j))
    for m, (lo, hi), box, n in zip(measured, g.span(size, (i, j)), boxes, size):
      lo, hi = max(lo, 0), min(hi, n - 1)
      assert box[0] <= lo <= m[0] and m[1] <= hi <= box[1], (case, (i, j), measured)
      if exact:
        assert m == (lo, hi)


def test_valid_padding_is_translation_equivariant_by_the_total_stride():
  model = build(dict(name='patch_net', padding='valid'))
  g = geometry.of(model)
  assert g.stride == (8, 8)
  x = jax.random.normal(jax.random.key(0), (1, 72, 80, 3))
  full = model(x)
  shifted = model(x[:, 8:, 16:])  # shift by one and two strides
  np.testing.assert_allclose(shifted, full[:, 1:, 2:], rtol=1e-5, atol=1e-5)


def test_same_zero_padding_is_equivariant_only_away_from_the_border():
  model = build(dict(name='patch_net'))
  x = jax.random.normal(jax.random.key(0), (1, 72, 72, 3))
  full, shifted = np.asarray(model(x)), np.asarray(model(x[:, 8:, 8:]))
  np.testing.assert_allclose(shifted[:, 1:-1, 1:-1], full[:, 2:-1, 2:-1], rtol=1e-5, atol=1e-5)
  assert not np.allclose(shifted[:, 0], full[:, 1, 1:], atol=1e-5)  # padded where full saw data


def test_fcn_crop_offsets_match_long_et_al():
  """Full-width FCNs built abstractly (no weights): Caffe's crop offsets fall out of the geometry."""
  offsets = {}
  for variant in ('fcn32s', 'fcn16s', 'fcn8s'):
    model = nnx.eval_shape(lambda v=variant: models.get_model(
        dict(name='fcn', variant=v), rngs=nnx.Rngs(0)))
    offsets[variant] = model.crop_offsets((500, 500))
    assert geometry.of(model).output_size((500, 500)) == (500, 500)
    assert geometry.of(model).valid_sizes(1, 300) == list(range(1, 301))
  assert offsets['fcn32s'] == {'final': (19, 19)}
  assert offsets['fcn16s'] == {'final': (27, 27), 'score_pool4': (5, 5)}
  assert offsets['fcn8s'] == {'final': (31, 31), 'score_pool4': (5, 5), 'score_pool3': (9, 9)}


def test_unet_paper_geometry():
  model = nnx.eval_shape(lambda: models.get_model(dict(name='unet'), rngs=nnx.Rngs(0)))
  g = geometry.of(model)
  assert g.output_size((572, 572)) == (388, 388)
  assert g.valid_sizes(540, 600) == [540, 556, 572, 588]
  with pytest.raises(ValueError, match=r'unet cannot take .*\(573, 572\).*nearest valid: '
                     r'\[572, 588\]'):
    g.check((573, 572))


def test_dense_classifier_refuses_other_sizes_and_gap_does_not():
  dense = build(dict(name='dense_classifier', input_size=(28, 28), in_channels=1))
  with pytest.raises(ValueError, match=r'dense_classifier cannot take an input of size '
                     r'\(28, 16\).*flatten\+dense layer'):
    dense(jnp.zeros((1, 28, 16, 1)))
  gap = build(dict(name='gap_classifier'))
  assert gap(jnp.zeros((1, 28, 16, 1))).shape == (1, 10)


def test_nin_reports_head_parameters_against_a_dense_head():
  model = build(dict(name='nin'))
  [note] = model.shape_notes((28, 28))
  assert '650 parameters' in note and '31,370' in note


@pytest.mark.parametrize('config', [
    dict(name='resnet', depth=18, output_stride=32, base_width=4),
    dict(name='resnet', depth=34, output_stride=16, base_width=4, head='aspp', aspp_width=4,
         aspp_rates=(2, 3, 4)),
    dict(name='resnet', depth=50, output_stride=8, base_width=4),
    dict(name='resnet', depth=101, output_stride=16, base_width=2, head='aspp', aspp_width=4,
         aspp_pooling=False)])
def test_resnet_geometry_matches_eval_shape_on_random_sizes(config):
  model = build(config)
  g = geometry.of(model)
  stride = config['output_stride']
  rng = np.random.default_rng(stride)
  for _ in range(3):
    size = tuple(int(n) * stride for n in rng.integers(1, 160 // stride + 1, size=2))
    out = jax.eval_shape(model, jax.ShapeDtypeStruct((1, *size, 3), jnp.float32))
    assert g.output_size(size) == out.shape[1:3] == size
  with pytest.raises(ValueError, match=f'not a multiple of {stride}'):
    model(jnp.zeros((1, stride + 2, stride, 3)))
