"""A 2x2 grid of 3-step runs (`configs/default.py:runlocal`): for tests and smoke checks."""


def get_sweep():
  return dict(
      base='configs/default.py:runlocal',
      params={'optimizer.learning_rate': [1e-3, 1e-2], 'model.padding_mode': ['zeros', 'reflect']},
      metric='mean:f1',
      direction='maximize',
      sampler='grid',
  )
