r"""U-Net (same padding) on your own folder of images and masks (fcn_jax.data.folder).

  python -m fcn_jax.data.folder example --out=/tmp/my_data   # or use your own folders
  python -m fcn_jax.train --config=configs/folder_segmentation.py \
      --config.data.images=/tmp/my_data/images --config.data.masks=/tmp/my_data/masks \
      --config.data.num_classes=4 --workdir=/tmp/my_run

Masks are class indices by default (grey or palette PNGs; 255 = unlabelled); set
`data.mask_format` to 'colour' (with `data.colours`) or 'binary' (0/255) otherwise, and
`data.num_classes` to your number of classes (background included). The model's input
channels and classes follow `data.channels` and `data.num_classes`. Batch norm (not group
norm) keeps the net exactly tileable, so `fcn_jax.predict` runs it on images of any size.

Args: `runlocal` (a few steps, for smoke tests).
"""

import ml_collections

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  common.folder_data(config, 'segmentation')
  config.data.patch_size = 64 if args.runlocal else 96  # training crops
  config.data.augment.colour = 0.0

  config.model = ml_collections.ConfigDict()
  config.model.name = 'unet'
  config.model.in_channels = config.data.get_ref('channels')
  config.model.num_classes = config.data.get_ref('num_classes')
  config.model.depth = 2 if args.runlocal else 3  # levels (pools + 1)
  config.model.width = 4 if args.runlocal else 16  # top-level channels
  config.model.padding = 'same'  # output = input size (multiples of 2**(depth-1))
  config.model.upsample = 'bilinear'  # 'transpose' | 'bilinear'
  config.model.norm = 'batch'  # exactly tileable in inference (group norm is not)
  config.model.activation = 'relu'

  config.batch_size = 2 if args.runlocal else 8
  config.num_train_steps = 3 if args.runlocal else 1500
  config.eval_sizes = ((96, 96), (192, 192))
  return config
