"""The border map: how much of each output's receptive field lies outside the image.

`border_map(model, (H, W))` is, per output position, the fraction of its receptive field
(the box `geometry.field` gives, per axis) that falls outside the image, where the net saw
padding instead of pixels: 0 in the interior, growing towards the border (up to 1 - 1/4
at a corner of a net with centred fields). Outputs with a large fraction are those a net
trained on interior patches never saw; `predict --border_map` writes the map beside the
prediction. For nets that up-sample, the box covers every output phase, so the fraction
is an upper bound there.
"""

from typing import Sequence

import numpy as np
from flax import nnx

from fcn_jax import geometry


def border_map(model: nnx.Module, size: Sequence[int]) -> np.ndarray:
  """float32 `(H', W')`: the fraction of each output's receptive field outside an `(H, W)`
  image."""
  g = geometry.of(model)
  fields = g.field(size)
  out = g.output_size(size)
  inside = []
  for a in range(2):
    n = int(size[a])
    spans = np.array([fields[a].span(i) for i in range(out[a])], np.int64)
    lo, hi = spans[:, 0], spans[:, 1]
    seen = np.clip(np.minimum(hi, n - 1) - np.maximum(lo, 0) + 1, 0, None)
    inside.append(seen / (hi - lo + 1))
  return (1 - np.outer(*inside)).astype(np.float32)
