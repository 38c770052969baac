r"""Network in Network on digits: mlpconv blocks and a 1x1-conv + global-average head.

  python -m fcn_jax.train --config=configs/nin_digits.py --workdir=/tmp/nin_digits
  python -m fcn_jax.shapes --config=configs/nin_digits.py
"""

import ml_collections

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'nin'
  config.model.in_channels = 1  # grey-scale digits
  config.model.num_classes = 10  # digits 0-9
  config.model.kernel_sizes = (5, 5, 3)  # first conv of each mlpconv block
  config.model.widths = ((32, 32, 32), (64, 64, 64), (64, 64))  # conv widths per block
  config.model.dropout = 0.0  # dropout after each pooling (0 = off)
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS
  common.digits_classification(config, args.runlocal)
  # Input sizes (H, W) at which shapes and evaluation report the model.
  config.eval_sizes = ((28, 28), (28, 16), (56, 56))
  return config
