r"""Network in Network on digits: mlpconv blocks and a 1x1-conv + global-average head.

  python -m fcn_jax.shapes --config=configs/nin_digits.py
"""

import ml_collections


def get_config(arg=None):
  """`arg` is reserved for variants."""
  del arg
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict()
  config.model.name = 'nin'
  config.model.in_channels = 1  # grey-scale digits
  config.model.num_classes = 10  # digits 0-9
  config.model.kernel_sizes = (5, 5, 3)  # first conv of each mlpconv block
  config.model.widths = ((32, 32, 32), (64, 64, 64), (64, 64))  # conv widths per block
  config.model.dropout = 0.0  # dropout after each pooling (0 = off)
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  # Input sizes (H, W) at which shapes and evaluation report the model.
  config.eval_sizes = ((28, 28), (28, 16), (56, 56))
  return config
