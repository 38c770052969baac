r"""Long et al.'s FCN-8s (or 16s / 32s) on a slim VGG-16 backbone, for shape segmentation.

  python -m fcn_jax.train --config=configs/fcn8s_shapes.py --workdir=/tmp/fcn8s
  python -m fcn_jax.train --config=configs/fcn8s_shapes.py:variant=fcn16s --workdir=/tmp/fcn16s
  python -m fcn_jax.shapes --config=configs/fcn8s_shapes.py:paper  # full VGG-16 widths, 134M

Args: `runlocal`, `variant` ('fcn8s' | 'fcn16s' | 'fcn32s'), `paper` (the paper's widths and
21 classes).
"""

import ml_collections
from ml_collections import config_dict

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False, variant='fcn8s', paper=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'fcn'
  config.model.variant = args.variant  # 'fcn8s' | 'fcn16s' | 'fcn32s'
  config.model.in_channels = 3  # RGB
  config.model.num_classes = 21 if args.paper else 4  # paper: VOC; here background + 3 shapes
  # Channels of the five VGG blocks and of fc6/fc7 (the paper: 64..512 and 4096).
  config.model.widths = ((64, 128, 256, 512, 512) if args.paper else
                         (4, 4, 8, 8, 8) if args.runlocal else (16, 32, 64, 64, 64))
  config.model.fc_width = 4096 if args.paper else (8 if args.runlocal else 128)
  config.model.first_padding = 100  # conv1_1 padding, so any input reaches fc6
  config.model.dropout = 0.5  # after fc6 and fc7
  # A finished run of the coarser variant (its workdir) to start from, as the paper trains
  # 16s from 32s and 8s from 16s (fcn.Model.grow_from); None: from scratch.
  config.model.init_from = config_dict.placeholder(str)

  config.data.task = 'segmentation'  # per-pixel softmax cross-entropy
  config.data.patch_size = 64 if args.runlocal else 96  # training crops; any size works
  config.batch_size = 2 if args.runlocal else 16
  config.num_train_steps = 3 if args.runlocal else 1000

  # Input sizes (H, W): any size works, the output is cropped to the input.
  config.eval_sizes = ((500, 500),) if args.paper else ((64, 64), (97, 130), (320, 640))
  return config
