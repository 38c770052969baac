r"""U-Net (same padding) on Oxford-IIIT Pet segmentation: a tfds catalog dataset, online only.

  python -m fcn_jax.train --config=configs/pets_unet.py --workdir=/tmp/pets_unet

Offline this stops at once with a message naming the offline datasets. The
trimap's uncertain border is ignored in the loss (fcn_jax.data.catalog).
"""

import ml_collections
from ml_collections import config_dict

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'unet'
  config.model.in_channels = 3  # RGB
  config.model.num_classes = 2  # background, pet
  config.model.depth = 2 if args.runlocal else 4  # levels (pools + 1)
  config.model.width = 4 if args.runlocal else 32  # top-level channels
  config.model.padding = 'same'  # output = input size (multiples of 2**(depth-1))
  config.model.upsample = 'bilinear'  # 'transpose' | 'bilinear'
  config.model.norm = 'group'  # None | 'batch' | 'group'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  config.data.name = 'oxford_iiit_pet'
  config.data.task = 'segmentation'  # per-pixel softmax cross-entropy
  config.data.patch_size = 64 if args.runlocal else 192  # training crops
  config.data.small_images = 'pad'
  config.data.augment.rot90 = False  # pets stand upright
  config.data.validation_split = None  # oxford_iiit_pet has train and test only
  config.data.eval_split = 'test'
  config.batch_size = 2 if args.runlocal else 16
  config.num_train_steps = 3 if args.runlocal else 5000

  config.eval_sizes = ((192, 192), (256, 320))
  return config
