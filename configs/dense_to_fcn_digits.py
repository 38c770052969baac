r"""The standard classifier (conv + flatten + dense) on 28x28 digits, to convolutionalize.

  python -m fcn_jax.train --config=configs/dense_to_fcn_digits.py --workdir=/tmp/dense_digits
  python -m fcn_jax.shapes --config=configs/dense_to_fcn_digits.py
"""

import ml_collections

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'dense_classifier'
  config.model.in_channels = 1  # grey-scale digits
  config.model.input_size = (28, 28)  # the only size the flatten+dense head accepts
  config.model.features = (8, 16, 32)  # channels of the stride-2 conv blocks
  config.model.hidden = 128  # width of the first dense layer
  config.model.num_classes = 10  # digits 0-9
  config.model.kernel_size = 3  # conv kernel size
  config.model.downsample = 'stride'  # 'stride' | 'maxpool' | 'avgpool'
  # 'valid': convolutionalized, each output equals the classifier on its window exactly.
  config.model.padding = 'valid'  # 'same' | 'valid'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS
  common.digits_classification(config, args.runlocal)
  # Input sizes (H, W): only the training size works before surgery.
  config.eval_sizes = ((28, 28),)
  return config
