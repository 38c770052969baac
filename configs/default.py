r"""Default: the patch heat-map network (patch_net) on 64x64 patches.

  python -m fcn_jax.shapes --config=configs/default.py --size=64,64 --size=640,320
"""

import ml_collections


def get_config(arg=None):
  """`arg` is reserved for variants (e.g. 'runlocal')."""
  del arg
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict()
  config.model.name = 'patch_net'  # a name from fcn_jax.models.MODELS
  config.model.in_channels = 3  # image channels
  config.model.features = (8, 16, 32)  # channels of the stride-2 conv blocks (each halves H, W)
  config.model.head = (10, 1)  # widths of the 1x1-conv per-pixel classifier; last = outputs
  config.model.kernel_size = 3  # conv kernel size (odd, so 'same' padding is symmetric)
  config.model.downsample = 'stride'  # 'stride' (stride-2 convs) | 'maxpool' | 'avgpool'
  config.model.padding = 'same'  # 'same' (symmetric d*(k-1)/2) | 'valid'
  config.model.padding_mode = 'zeros'  # 'zeros' | 'reflect' | 'replicate' | 'circular'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  # Input sizes (H, W) at which shapes and evaluation report the model's output.
  config.eval_sizes = ((64, 64), (128, 128), (640, 320))
  return config
