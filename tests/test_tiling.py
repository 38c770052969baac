"""Exact tiled inference: tiled == whole image, for every kind of model, at awkward sizes."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import layers
from fcn_jax import models
from fcn_jax.inference import tiled
from tests import test_geometry

# (model config, input channels, image sizes, tile size)
CASES = {
    'patch_net_zeros': (dict(name='patch_net'), 3, [(67, 101), (5, 7), (33, 32)], 32),
    'patch_net_reflect_dilated': (dict(name='patch_net', padding_mode='reflect', kernel_size=5),
                                  3, [(131, 90), (41, 40)], 32),
    'patch_net_replicate_maxpool': (
        dict(name='patch_net', padding_mode='replicate', downsample='maxpool'), 3,
        [(150, 70), (97, 61)], 24),
    'patch_net_valid_avgpool': (dict(name='patch_net', padding='valid', downsample='avgpool'), 3,
                                [(89, 113)], 32),
    'patch_net_batchnorm': (dict(name='patch_net', norm='batch', kernel_size=5), 3,
                            [(99, 70)], 32),
    'encoder_decoder_bilinear': (dict(name='encoder_decoder', upsample='bilinear'), 3,
                                 [(96, 160), (20, 28)], 32),
    'segnet_unpool': (dict(name='encoder_decoder', upsample='unpool'), 3, [(64, 200)], 32),
    'gated': (dict(name='encoder_decoder', gated=True, padding_mode='reflect'), 3, [(52, 76)], 16),
    'unet_valid': (dict(name='unet', depth=3, width=4), 1, [(188, 124), (92, 108)], 32),
    'unet_same_bilinear': (dict(name='unet', depth=3, width=4, padding='same',
                                upsample='bilinear'), 1, [(96, 100), (36, 4)], 32),
    'fcn8s': (dict(name='fcn', widths=(4, 4, 8, 8, 8), fc_width=8, num_classes=3), 3,
              [(67, 89), (1, 1)], 32),
    # FCN-ResNet-50 at output stride 8 (dilated layers 3 and 4), batch norm in eval mode;
    # DeepLabv3 without its image-pooling branch (the branch sees the whole image).
    'fcn_resnet50_os8': (dict(name='resnet', depth=50, output_stride=8, base_width=4,
                              num_classes=3), 3, [(96, 136), (8, 16)], 32),
    'deeplabv3_resnet50_no_pooling': (
        dict(name='resnet', depth=50, output_stride=8, head='aspp', aspp_pooling=False,
             base_width=4, aspp_width=8, aspp_rates=(2, 3, 4), num_classes=3), 3,
        [(64, 72)], 32),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_tiled_equals_whole_image(case):
  config, channels, sizes, tile = CASES[case]
  model = models.get_model(config, rngs=nnx.Rngs(0))
  model.eval()
  rng = np.random.default_rng(0)
  for _, norm in nnx.iter_graph(model):  # batch norm with statistics a trained net could have
    if isinstance(norm, nnx.BatchNorm):
      norm.mean[...] = jnp.asarray(rng.normal(0, 0.5, norm.mean.shape), jnp.float32)
      norm.var[...] = jnp.asarray(rng.uniform(0.2, 2.0, norm.var.shape), jnp.float32)
  before = inference.compilations()
  for size in sizes:
    image = rng.random((*size, channels), dtype=np.float32)
    whole = inference.predict(model, image)
    tiled = inference.predict_tiled(model, image, tile=tile, batch=4)
    assert tiled.shape == whole.shape
    assert np.abs(whole).max() > 0
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max())
  # One compilation for the model, whatever the image sizes.
  assert inference.compilations() - before == 1


def test_tile_sizes_and_many_tiles():
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  g = geometry.of(model)
  image = np.random.default_rng(1).random((200, 136, 3), dtype=np.float32)
  whole = inference.predict(model, image)
  layout = [inference.axis_tiling(g, n, a, 24) for a, n in enumerate(image.shape[:2])]
  assert layout[0].count * layout[1].count > 20  # really tiled
  assert layout[0].step % 8 == 0 and layout[0].halo % 8 == 0  # aligned to the stride
  for tile in (8, 24, 64, 199, 200, 201):  # one tile size below/at/above the image
    np.testing.assert_allclose(inference.predict_tiled(model, image, tile=tile, batch=3), whole,
                               rtol=1e-5, atol=1e-6)


def test_models_that_see_the_whole_image_are_refused():
  gap = models.get_model(dict(name='gap_classifier'), rngs=nnx.Rngs(0))
  with pytest.raises(errors.TilingError, match='sees the whole input'):
    inference.predict_tiled(gap, np.zeros((28, 28, 1), np.float32))
  group = models.get_model(dict(name='unet', depth=2, width=4, padding='same', norm='group'),
                           rngs=nnx.Rngs(0))
  with pytest.raises(errors.TilingError, match='GroupNorm'):
    inference.predict_tiled(group, np.zeros((32, 32, 1), np.float32))
  deeplab = models.get_model(dict(name='resnet', depth=18, output_stride=16, head='aspp',
                                  base_width=4, aspp_width=4, aspp_rates=(2, 3, 4)),
                             rngs=nnx.Rngs(0))
  with pytest.raises(errors.TilingError, match="image_pooling' sees the whole input"):
    inference.predict_tiled(deeplab, np.zeros((32, 32, 3), np.float32))


class _ConvThen(nnx.Module):
  """A user's model: a conv, then `layer` (for the refusals below)."""

  def __init__(self, layer):
    self.conv, self.layer = layers.Conv(3, 4, 3, rngs=nnx.Rngs(0)), layer

  @property
  def geometry(self):
    return geometry.chain('conv_then', self.conv.geometry, geometry.node_of(self.layer))

  def __call__(self, x):
    return self.layer(self.conv(x))


def _circular_net():
  """Circular 'same' convs, a pool, a residual block, nearest up-sampling and a 2x2
  transposed conv: every layer keeps an image of a multiple of 4 periodic."""
  rngs = nnx.Rngs(0)
  conv = lambda cin, cout, **kw: layers.Conv(cin, cout, 3, padding_mode='circular', rngs=rngs,
                                             **kw)
  return layers.Sequential(
      conv(3, 4), jax.nn.relu, conv(4, 4, stride=2, dilation=1), layers.AvgPool(2, 2),
      layers.residual(layers.Sequential(conv(4, 4, dilation=2), jax.nn.relu)),
      layers.Upsample(2, method='nearest'), layers.ConvTranspose(4, 2, 2, stride=2, rngs=rngs),
      name='circular_net')


@pytest.mark.parametrize('size,tile', [((96, 200), 32), ((40, 64), 128), ((32, 8), 16)])
def test_circular_padding_tiles_exactly_by_wrapping_the_halo(size, tile):
  """A 360-degree panorama's net: tiles at the borders read their halo from the opposite
  border, so tiled output equals the whole-image run's, which pads circularly at every
  layer. Sizes where one tile is larger than the image (wrapping more than once) too."""
  image = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
  for model in (_circular_net(),
                models.get_model(dict(name='patch_net', padding_mode='circular'),
                                 rngs=nnx.Rngs(0))):
    whole = inference.predict(model, image)
    np.testing.assert_allclose(inference.predict_tiled(model, image, tile=tile, batch=3), whole,
                               rtol=1e-5, atol=1e-6)
  # Without the wrapped halo the border outputs differ: the test can tell.
  zero_padded = models.get_model(dict(name='patch_net', padding_mode='zeros'), rngs=nnx.Rngs(0))
  assert np.abs(inference.predict(zero_padded, image) - whole).max() > 1e-3


def test_circular_padding_tiles_out_of_core(tmp_path):
  model = _circular_net()
  image = (np.random.default_rng(3).random((64, 120, 3)) * 255).astype(np.uint8)
  np.save(tmp_path / 'pano.npy', image)
  out = inference.predict_to_file(model, inference.open_image(str(tmp_path / 'pano.npy')),
                                  str(tmp_path / 'out.npy'), tile=32, batch=2, progress=False)
  np.testing.assert_allclose(np.load(out), inference.predict(model, image.astype(np.float32) / 255),
                             rtol=1e-5, atol=1e-6)


def test_circular_padding_that_cannot_stay_periodic_is_refused_in_one_line():
  model = models.get_model(dict(name='patch_net', padding_mode='circular'), rngs=nnx.Rngs(0))
  with pytest.raises(errors.TilingError, match=r'at size 100 .*maps 25 positions to 13.*'
                     r'multiples of 8$'):
    inference.predict_tiled(model, np.zeros((100, 64, 3), np.float32), tile=32)
  rngs = nnx.Rngs(0)
  mixed = layers.Sequential(layers.Conv(3, 2, 3, padding_mode='circular', rngs=rngs),
                            layers.Conv(2, 2, 3, rngs=rngs), name='mixed')
  with pytest.raises(errors.TilingError, match="pads with 'zeros': a net that mixes circular"):
    inference.predict_tiled(mixed, np.zeros((64, 64, 3), np.float32), tile=32)


@pytest.mark.parametrize('case', ['dense', 'layer_norm', 'group_norm', 'fixed_resize'])
def test_every_untileable_model_is_refused_with_a_tiling_error(case):
  model, match = {
      'dense': (models.get_model(dict(name='dense_classifier', in_channels=3),
                                 rngs=nnx.Rngs(0)), 'sees the whole input'),
      'layer_norm': (_ConvThen(nnx.LayerNorm(4, rngs=nnx.Rngs(0))), 'LayerNorm mixes statistics'),
      'group_norm': (_ConvThen(nnx.GroupNorm(4, num_groups=2, rngs=nnx.Rngs(0))),
                     'GroupNorm mixes statistics'),
      'fixed_resize': (_ConvThen(layers.Upsample(factor=None, size=(16, 16))),
                       'resizing to a fixed size'),
  }[case]
  with pytest.raises(errors.TilingError, match=match):
    inference.predict_tiled(model, np.zeros((64, 64, 3), np.float32), tile=16)


def test_out_of_core_from_a_memmap_resumes_after_interruption(tmp_path, monkeypatch):
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  image = (np.random.default_rng(2).random((300, 410, 3)) * 255).astype(np.uint8)
  np.save(tmp_path / 'big.npy', image)
  whole = inference.predict(model, image.astype(np.float32) / 255)
  source = inference.open_image(str(tmp_path / 'big.npy'))
  assert isinstance(source, np.memmap)
  output = str(tmp_path / 'out.npy')

  forward, calls, crashed = tiled._tiled_forward, [], []

  def crash_on_third_batch(*args):
    calls.append(1)
    if len(calls) == 3 and not crashed:
      crashed.append(1)
      raise InterruptedError('killed')
    return forward(*args)

  monkeypatch.setattr(tiled, '_tiled_forward', crash_on_third_batch)
  with pytest.raises(InterruptedError):
    inference.predict_to_file(model, source, output, tile=64, batch=4, progress=False)
  assert not (tmp_path / 'out.npy').exists()  # no file under the final name until complete
  calls.clear()
  inference.predict_to_file(model, source, output, tile=64, batch=4, progress=False)
  g = geometry.of(model)
  total = np.prod([inference.axis_tiling(g, n, a, 64).count for a, n in enumerate((300, 410))])
  assert len(calls) == int(np.ceil((total - 8) / 4))  # the 8 finished tiles are not redone
  np.testing.assert_allclose(np.load(output), whole, rtol=1e-5, atol=1e-6)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['big.npy', 'out.npy',
                                                       'out.npy.source.json']


@hypothesis.settings(max_examples=40, deadline=None)
# Regressions: a tile wholly past the image (a conv padding beyond it), and a transposed
# conv whose cropping at the tile's end loses an output that bilinear up-sampling reads.
@hypothesis.example(specs=[('avgpool', 1, 2), ('conv', 1, 1, 1, 1, 1)], extra=(0, 4), tile=8,
                    mode='zeros')
@hypothesis.example(specs=[('avgpool', 1, 2), ('avgpool', 1, 3), ('convT', 2, 2, 1),
                           ('upsample', 3, 'bilinear')], extra=(0, 12), tile=8, mode='zeros')
@hypothesis.example(specs=[('conv_same', 3, 2, 1), ('avgpool', 2, 2), ('skip', 3, 1, 1, 1, 'add'),
                           ('convT', 2, 2, 0), ('upsample', 2, 'nearest')], extra=(13, 37),
                    tile=8, mode='circular')
@hypothesis.given(specs=st.lists(test_geometry.LAYER, min_size=1, max_size=4),
                  extra=st.tuples(st.integers(0, 40), st.integers(0, 40)),
                  tile=st.sampled_from([8, 16, 24]),
                  mode=st.sampled_from(['zeros', 'reflect', 'replicate', 'circular']))
def test_random_stacks_tile_exactly(specs, extra, tile, mode):
  """Random convs (stride, dilation, asymmetric or 'same' padding in every mode), pools,
  transposed convs, up-sampling; circularly padded stacks tile exactly, or are refused where
  a layer does not keep the image periodic."""
  model = test_geometry.build(specs, padding_mode=mode)
  g = geometry.of(model)
  hypothesis.assume(None not in g.min_input_size)  # a skip that aligns at no size is refused
  size = tuple(g.min_input_size[a] + extra[a] for a in range(2))
  hypothesis.assume(all(g.accepts(n, a) for a, n in enumerate(size)))
  hypothesis.assume(all(f.jump.denominator == 1 for f in g.field(size)))
  image = np.random.default_rng(0).random((*size, 2), dtype=np.float32)
  whole = inference.predict(model, image)
  try:
    tiled = inference.predict_tiled(model, image, tile=tile, batch=2)
  except errors.TilingError as e:
    if 'pads circularly' in str(e):  # a layer breaks the periodicity at this size
      assert mode == 'circular', e
      return
    # Tiles too small to hold a reflect/replicate layer's mirror sources at the image border
    # (when its padding is as wide as its window) are refused; one tile per axis works.
    assert 'use a larger tile' in str(e) and mode != 'zeros', e
    tiled = inference.predict_tiled(model, image, tile=max(size) + 64, batch=2)
  np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5 * max(np.abs(whole).max(), 1e-6))


def test_out_of_core_zarr_in_and_out(tmp_path):
  import zarr  # pylint: disable=g-import-not-at-top
  image = (np.random.default_rng(4).random((96, 136)) * 255).astype(np.uint8)  # 2-D: grey
  source = zarr.create_array(store=str(tmp_path / 'in.zarr'), shape=image.shape,
                             chunks=(32, 32), dtype='uint8')
  source[:] = image
  model = models.get_model(dict(name='encoder_decoder', in_channels=1), rngs=nnx.Rngs(0))
  whole = inference.predict(model, image[..., None].astype(np.float32) / 255)
  out = inference.predict_to_file(model, inference.open_image(str(tmp_path / 'in.zarr')),
                                  str(tmp_path / 'out.zarr'), tile=32, batch=4, progress=False)
  np.testing.assert_allclose(zarr.open_array(out)[:], whole, rtol=1e-5, atol=1e-6)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['in.zarr', 'out.zarr',
                                                       'out.zarr.source.json']


def test_tiling_leaves_no_state_on_the_model_and_compiles_once():
  """The per-layer tile borders exist only inside the jitted tiled pass (no global, nothing
  set on the caller's model), and a second image of another size reuses the compilation."""
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  before = inference.compilations()
  for size in ((72, 96), (120, 80)):
    image = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
    np.testing.assert_allclose(inference.predict_tiled(model, image, tile=32, batch=2),
                               inference.predict(model, image), rtol=1e-5, atol=1e-6)
  assert inference.compilations() - before == 1
  assert not any(hasattr(m, 'tile_extents') for _, m in nnx.iter_graph(model))
