r"""The standard classifier (conv + flatten + dense) on 28x28 digits, to convolutionalize.

  python -m fcn_jax.shapes --config=configs/dense_to_fcn_digits.py
"""

import ml_collections


def get_config(arg=None):
  """`arg` is reserved for variants."""
  del arg
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict()
  config.model.name = 'dense_classifier'
  config.model.in_channels = 1  # grey-scale digits
  config.model.input_size = (28, 28)  # the only size the flatten+dense head accepts
  config.model.features = (8, 16, 32)  # channels of the stride-2 conv blocks
  config.model.hidden = 128  # width of the first dense layer
  config.model.num_classes = 10  # digits 0-9
  config.model.kernel_size = 3  # conv kernel size
  config.model.downsample = 'stride'  # 'stride' | 'maxpool' | 'avgpool'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS

  # Input sizes (H, W): only the training size works before surgery.
  config.eval_sizes = ((28, 28),)
  return config
