r"""An all-conv classifier with global average pooling on your own folders of images.

  python -m fcn_jax.train --config=configs/folder_classification.py \
      --config.data.images=DIR --config.data.num_classes=3 --workdir=/tmp/my_classes

`DIR` holds one folder of images per class (their names, sorted, are the classes). The
net trains on random `data.patch_size` crops and is evaluated on whole images of any
size (global average pooling). Args: `runlocal`.
"""

import ml_collections

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  common.folder_data(config, 'classification')
  config.data.patch_size = 32 if args.runlocal else 64  # training crops
  config.model = ml_collections.ConfigDict()
  config.model.name = 'gap_classifier'
  config.model.in_channels = config.data.get_ref('channels')
  config.model.num_classes = config.data.get_ref('num_classes')
  config.model.features = (8, 16) if args.runlocal else (16, 32, 64)
  config.model.kernel_size = 3
  config.model.downsample = 'stride'
  config.model.activation = 'relu'
  config.batch_size = 4 if args.runlocal else 32
  config.num_train_steps = 3 if args.runlocal else 1500
  config.eval_sizes = ((64, 64), (128, 96))
  return config
