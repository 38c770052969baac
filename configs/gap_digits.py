r"""All-conv digit classifier with global average pooling (runs at any input size).

  python -m fcn_jax.shapes --config=configs/gap_digits.py
"""

import ml_collections


def get_config(arg=None):
  """`arg` is reserved for variants."""
  del arg
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict()
  config.model.name = 'gap_classifier'
  config.model.in_channels = 1  # grey-scale digits
  config.model.num_classes = 10  # digits 0-9
  config.model.features = (16, 32, 64)  # channels of the stride-2 conv blocks
  config.model.kernel_size = 3  # conv kernel size
  config.model.downsample = 'stride'  # 'stride' | 'maxpool' | 'avgpool'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  # Input sizes (H, W): the training size, a non-square one, and 2x / 3x.
  config.eval_sizes = ((28, 28), (28, 16), (56, 56), (84, 84))
  return config
