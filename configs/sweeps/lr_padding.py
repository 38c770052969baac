"""Learning rate x padding mode for the main job (patch_net on fcn_shapes), a 3x2 grid.

  python -m fcn_jax.sweep --sweep=configs/sweeps/lr_padding.py --workdir=/tmp/sweep_lr_padding

Each trial is the default config shortened to 400 steps; the objective is the
mean cell F1 over the validation split's sizes (the sizes of the test split).
"""


def get_sweep():
  return dict(
      base='configs/default.py',
      overrides={'num_train_steps': 400, 'checkpoint_every': 400,
                 'optimizer.warmup_steps': 40},
      params={'optimizer.learning_rate': [1e-3, 3e-3, 1e-2],
              'model.padding_mode': ['zeros', 'reflect']},
      metric='mean:f1',
      direction='maximize',
      sampler='grid',
  )
