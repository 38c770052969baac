r"""Encoder-decoder (same-size output) with a choice of up-sampling, for shape segmentation.

  python -m fcn_jax.shapes --config=configs/encoder_decoder_shapes.py
  python -m fcn_jax.shapes --config=configs/encoder_decoder_shapes.py:upsample=unpool  # SegNet
  python -m fcn_jax.shapes --config=configs/encoder_decoder_shapes.py:gated

Args: `upsample` ('nearest' | 'bilinear' | 'unpool'), `gated` (GatedConv everywhere).
"""

import ml_collections

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, upsample='nearest', gated=False)
  config = ml_collections.ConfigDict()
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

  # Input sizes (H, W): multiples of 2**len(features).
  config.eval_sizes = ((64, 64), (128, 128), (320, 640))
  return config
