r"""U-Net (valid convolutions, centre-cropped skips) for cell segmentation.

  python -m fcn_jax.shapes --config=configs/unet_cells.py
  python -m fcn_jax.shapes --config=configs/unet_cells.py:paper  # 572x572 -> 388x388, 31M params

Args: `paper` (depth 5, 64 base channels, as Ronneberger et al.).
"""

import ml_collections

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, paper=False)
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict()
  config.model.name = 'unet'
  config.model.in_channels = 1  # grey-scale microscopy
  config.model.num_classes = 2  # background, cell
  config.model.depth = 5 if args.paper else 4  # levels (pools = depth - 1)
  config.model.width = 64 if args.paper else 16  # channels at the top level (doubling per level)
  config.model.padding = 'valid'  # 'valid' (original; output smaller) | 'same'
  config.model.upsample = 'transpose'  # 'transpose' (2x2 up-conv) | 'bilinear' (resize + conv)
  config.model.norm = None  # None | 'batch' | 'group'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  # Input sizes (H, W); valid ones satisfy every 2x2 pooling (see geometry.valid_sizes).
  config.eval_sizes = ((572, 572),) if args.paper else ((124, 124), (252, 252), (508, 380))
  return config
