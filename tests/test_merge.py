"""Skip connections as modules (`layers.Merge`, `layers.residual`): a user's own model with
skips or residual blocks gets its geometry, exact tiling and export from one declaration."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import layers


class ResidualNet(nnx.Module):
  """What a user might write: a stem, two residual blocks (one of 'valid' convs, whose
  shortcut must be cropped; one strided, with a strided 1x1 shortcut) and a 1x1 head. No
  geometry is written here: it comes from the layers."""
  name = 'residual_net'

  def __init__(self, rngs: nnx.Rngs):
    c = 8
    self.body = layers.Sequential(
        layers.Conv(3, c, 3, padding='same', rngs=rngs), nnx.relu,
        layers.residual(layers.Sequential(
            layers.Conv(c, c, 3, padding='valid', rngs=rngs), nnx.relu,
            layers.Conv(c, c, 3, padding='valid', rngs=rngs), name='valid_block')),
        layers.residual(
            layers.Sequential(layers.Conv(c, c, 3, stride=2, padding='same', rngs=rngs), nnx.relu,
                              layers.Conv(c, c, 3, padding='same', rngs=rngs), name='down_block'),
            shortcut=layers.Conv(c, c, 1, stride=2, rngs=rngs)),
        nnx.relu, layers.pointwise(c, 2, rngs=rngs), name='body')

  @property
  def geometry(self):
    return self.body.geometry

  def __call__(self, x):
    return self.body(x)


def _by_hand(model: ResidualNet, x: jnp.ndarray) -> jnp.ndarray:
  """The same forward pass with the crop written out: 'valid' 3x3 twice trims 2 per side."""
  stem, relu, valid, down, _, head = model.body.layers
  h = relu(stem(x))
  body = valid.branches[1]
  h = h[:, 2:-2, 2:-2] + body(h)
  shortcut, body = down.branches
  h = shortcut(h) + body(h)
  return head(nnx.relu(h))


def test_residual_model_forward_geometry_tiling_and_export():
  model = ResidualNet(nnx.Rngs(0))
  image = np.random.default_rng(0).random((83, 70, 3), dtype=np.float32)
  whole = inference.predict(model, image)
  np.testing.assert_allclose(whole, np.asarray(_by_hand(model, jnp.asarray(image[None])))[0],
                             rtol=1e-5, atol=1e-5)
  g = geometry.of(model)
  # 3x3 same, two 3x3 valid (field 1+2+2+2 = 7), then stride 2 with two 3x3 (7 + 2 + 2*2 = 13).
  assert g.receptive_field == (13, 13) and g.stride == (2, 2)
  assert g.output_size((83, 70)) == whole.shape[:2] == (40, 33)
  assert g.params == sum(int(np.prod(v.shape)) for _, v in nnx.iter_graph(model)
                         if isinstance(v, nnx.Param))
  tiled = inference.predict_tiled(model, image, tile=24, batch=3)
  np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max())
  run = inference.load_exported(inference.export(model, 3))
  for size in ((83, 70), (30, 41)):
    x = np.random.default_rng(1).random((2, *size, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(run(x)), np.asarray(model(jnp.asarray(x))),
                               rtol=1e-5, atol=1e-5)


def test_merge_concat_crops_to_the_reference_and_crop_returns_the_other_branch():
  rngs = nnx.Rngs(0)
  valid = layers.Conv(2, 3, 5, padding='valid', rngs=rngs)
  x = jnp.asarray(np.random.default_rng(0).random((1, 20, 17, 2), dtype=np.float32))
  concat = layers.Merge(layers.identity, valid, reference=1, combine='concat')
  out = concat(x)
  assert out.shape == (1, 16, 13, 5)
  np.testing.assert_array_equal(out[..., :2], x[:, 2:-2, 2:-2])  # centred crop of the skip
  np.testing.assert_array_equal(out[..., 2:], valid(x))
  crop = layers.Merge(valid, layers.Conv(2, 3, 5, padding=2, rngs=rngs), reference=0,
                      combine='crop')
  assert crop(x).shape == (1, 16, 13, 3)
  with pytest.raises(errors.GeometryError, match='stride'):
    layers.Merge(layers.identity, layers.Conv(2, 2, 3, stride=2, padding='same', rngs=rngs),
                 combine='add')(x)


@pytest.mark.parametrize('kwargs, message', [
    (dict(combine='sum'), "combine must be"),
    (dict(reference=2), 'reference'),
])
def test_merge_refuses_a_bad_declaration(kwargs, message):
  with pytest.raises(errors.ConfigError, match=message):
    layers.Merge(layers.identity, layers.identity, **kwargs)


def test_geometry_visits_each_layer_once(monkeypatch):
  """A container's geometry is rebuilt on every access (every predict call checks the size),
  so each layer's node must be built once per build, not once per level of nesting above it
  (a depth-5 U-Net took 0.7 s per size check when each level built its children twice)."""
  from fcn_jax import models  # pylint: disable=g-import-not-at-top
  model = models.get_model(dict(name='unet', depth=5, width=2), rngs=nnx.Rngs(0))
  convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, layers.Conv)]
  built = []
  original = layers.Conv.geometry
  monkeypatch.setattr(layers.Conv, 'geometry',
                      property(lambda self: built.append(self) or original.fget(self)))
  geometry.of(model).node  # pylint: disable=expression-not-assigned
  assert len(built) == len(convs) == 19  # 2 per level down (5), 2 per level up (4), the head
