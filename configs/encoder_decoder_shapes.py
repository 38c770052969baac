r"""Encoder-decoder (same-size output) with a choice of up-sampling, for shape segmentation.

  python -m fcn_jax.train --config=configs/encoder_decoder_shapes.py --workdir=/tmp/encdec
  python -m fcn_jax.shapes --config=configs/encoder_decoder_shapes.py:upsample=unpool  # SegNet
  python -m fcn_jax.shapes --config=configs/encoder_decoder_shapes.py:gated

Args: `runlocal`, `upsample` ('nearest' | 'bilinear' | 'unpool'), `gated` (GatedConv).
"""

import ml_collections
from ml_collections import config_dict

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False, upsample='nearest', gated=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'encoder_decoder'
  config.model.in_channels = 3  # RGB
  config.model.out_channels = 4  # per-pixel logits: background + 3 shapes
  config.model.features = (16, 32, 64)  # channels per down level (each pools by 2)
  config.model.kernel_size = 3  # conv kernel size
  config.model.upsample = args.upsample  # 'nearest' | 'bilinear' | 'unpool' (SegNet switches)
  config.model.gated = args.gated  # GatedConv instead of Conv
  config.model.padding_mode = 'zeros'  # 'zeros' | 'reflect' | 'replicate' | 'circular'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  config.data.task = 'segmentation'  # per-pixel softmax cross-entropy
  config.num_train_steps = 3 if args.runlocal else 1000

  # Input sizes (H, W): multiples of 2**len(features).
  config.eval_sizes = ((64, 64), (128, 128), (320, 640))
  return config
