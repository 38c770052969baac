"""The border map (fcn_jax.inference.border): the fraction of each output's receptive field
outside the image, against a direct count over the field's pixels."""

import numpy as np
from flax import nnx

from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import models


def test_border_map_counts_the_field_pixels_outside_the_image():
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  size = (40, 57)
  border = inference.border_map(model, size)
  g = geometry.of(model)
  assert border.shape == g.output_size(size)
  fields = g.field(size)
  for i, j in [(0, 0), (0, 3), (2, 2), (4, 7), (border.shape[0] - 1, border.shape[1] - 1)]:
    (r0, r1), (c0, c1) = fields[0].span(i), fields[1].span(j)
    rows, cols = np.arange(r0, r1 + 1), np.arange(c0, c1 + 1)
    inside = np.outer((rows >= 0) & (rows < size[0]), (cols >= 0) & (cols < size[1]))
    np.testing.assert_allclose(border[i, j], 1 - inside.mean(), rtol=1e-6)
  assert border[2, 2] == 0 and border[0, 0] > border[0, 3] > 0  # the corner sees most padding


def test_a_net_without_padding_has_no_border():
  model = models.get_model(dict(name='patch_net', padding='valid'), rngs=nnx.Rngs(0))
  assert not inference.border_map(model, (64, 48)).any()
