r"""All-conv digit classifier with global average pooling (runs at any input size).

  python -m fcn_jax.train --config=configs/gap_digits.py --workdir=/tmp/gap_digits
  python -m fcn_jax.shapes --config=configs/gap_digits.py
"""

import ml_collections

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'gap_classifier'
  config.model.in_channels = 1  # grey-scale digits
  config.model.num_classes = 10  # digits 0-9
  config.model.features = (16, 32, 64)  # channels of the stride-2 conv blocks
  config.model.kernel_size = 3  # conv kernel size
  config.model.downsample = 'stride'  # 'stride' | 'maxpool' | 'avgpool'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS
  common.digits_classification(config, args.runlocal)
  # Input sizes (H, W): the training size, a non-square one, and 2x / 3x.
  config.eval_sizes = ((28, 28), (28, 16), (56, 56), (84, 84))
  return config
