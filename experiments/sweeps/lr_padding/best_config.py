"""Best trial 0 of sweep lr_padding: mean:f1 = 0.534.

  python -m fcn_jax.train --config=/tmp/exp/sweep_lr_padding/best_config.py --workdir=/tmp/best
"""

import importlib

VALUES = {'num_train_steps': 400, 'checkpoint_every': 400, 'optimizer.warmup_steps': 40, 'model.padding_mode': 'zeros', 'optimizer.learning_rate': 0.001}


def get_config(arg=None):
  del arg
  config = importlib.import_module('configs.default').get_config(None)
  config.update_from_flattened_dict(VALUES)
  return config
