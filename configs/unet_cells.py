r"""U-Net (valid convolutions, centre-cropped skips, border weights) for cell segmentation.

  python -m fcn_jax.train --config=configs/unet_cells.py --workdir=/tmp/unet_cells
  python -m fcn_jax.shapes --config=configs/unet_cells.py
  python -m fcn_jax.shapes --config=configs/unet_cells.py:paper  # 572x572 -> 388x388, 31M params

Args: `runlocal`, `paper` (depth 5, 64 base channels, as Ronneberger et al.).
"""

import ml_collections
from ml_collections import config_dict

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False, paper=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'unet'
  config.model.in_channels = 1  # grey-scale microscopy
  config.model.num_classes = 2  # background, cell
  config.model.depth = 5 if args.paper else (2 if args.runlocal else 4)  # levels (pools + 1)
  config.model.width = 64 if args.paper else (4 if args.runlocal else 16)  # top-level channels
  config.model.padding = 'valid'  # 'valid' (original; output smaller) | 'same'
  config.model.upsample = 'transpose'  # 'transpose' (2x2 up-conv) | 'bilinear' (resize + conv)
  config.model.norm = config_dict.placeholder(str)  # None | 'batch' | 'group'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  config.data.name = 'fcn_cells/tiny' if args.runlocal else 'fcn_cells'
  config.data.task = 'segmentation'  # per-pixel softmax cross-entropy
  config.data.patch_size = 124  # a valid U-Net input (output 36x36 at depth 4)
  config.data.small_images = 'pad'
  config.data.weight_map = ml_collections.ConfigDict()
  config.data.weight_map.w0 = 10.0  # separation weight between touching cells
  config.data.weight_map.sigma = 5.0  # its reach, in pixels
  config.data.augment.colour = 0.0
  config.batch_size = 2 if args.runlocal else 8
  config.num_train_steps = 3 if args.runlocal else 600

  # Input sizes (H, W); valid ones satisfy every 2x2 pooling (see geometry.valid_sizes).
  config.eval_sizes = ((572, 572),) if args.paper else ((124, 124), (252, 252), (508, 380))
  return config
