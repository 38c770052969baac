"""Learning-rate schedules and optimisers against values worked out by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from fcn_jax import errors
from fcn_jax import optim


def _config(**optimizer):
  config = default.get_config()
  config.num_train_steps = 100
  config.optimizer.learning_rate = 1.0
  config.optimizer.warmup_steps = 10
  config.optimizer.update(optimizer)
  return config


def _rates(config, steps):
  schedule = optim.learning_rate(config)
  return [float(schedule(s)) for s in steps]


def test_step_schedule_decays_at_the_boundaries_it_names():
  config = _config(schedule='step', decay_boundaries=(0.5, 0.8), decay_factor=0.1)
  rates = _rates(config, [0, 5, 10, 11, 49, 50, 51, 79, 80, 99])
  np.testing.assert_allclose(rates, [0, 0.5, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_step_schedule_without_warmup_and_with_a_shared_boundary():
  config = _config(schedule='step', warmup_steps=0, decay_boundaries=(0.3, 0.3),
                   decay_factor=0.5)
  np.testing.assert_allclose(_rates(config, [0, 29, 30]), [1, 1, 0.25], rtol=1e-6)


def test_a_decay_inside_the_warmup_is_refused():
  config = _config(schedule='step', decay_boundaries=(0.05,))
  with pytest.raises(errors.ConfigError, match='inside the 10 warm-up steps'):
    optim.learning_rate(config)


def test_constant_and_cosine_schedules():
  np.testing.assert_allclose(_rates(_config(schedule='constant'), [0, 5, 10, 60, 99]),
                             [0, 0.5, 1, 1, 1], rtol=1e-6)
  # Cosine from the end of the warm-up (step 10) to 0 at step 100: half-way at step 55.
  np.testing.assert_allclose(_rates(_config(schedule='cosine'), [0, 5, 10, 55, 100]),
                             [0, 0.5, 1, 0.5, 0], rtol=1e-6, atol=1e-7)


def test_unknown_schedule_and_optimizer_are_config_errors():
  with pytest.raises(errors.ConfigError, match="schedule must be 'constant'"):
    optim.learning_rate(_config(schedule='linear'))
  with pytest.raises(errors.ConfigError, match="name must be 'sgd', 'adam' or 'adamw'"):
    optim.make_optimizer(_config(name='rmsprop'))


def _first_updates(config, grads, params, steps=2):
  """The updates of the first `steps` steps for constant gradients `grads`."""
  tx = optim.make_optimizer(config)
  state, out = tx.init(params), []
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
    out.append(np.asarray(updates))
  return out


def test_optimizers_take_the_steps_worked_out_by_hand():
  params, grads = jnp.array([1.0, -2.0]), jnp.array([0.3, -0.4])  # |grads| = 0.5
  base = dict(schedule='constant', warmup_steps=0, learning_rate=0.1, grad_clip_norm=0.0)
  # SGD, no momentum: -lr * g.
  sgd = _first_updates(_config(name='sgd', momentum=0.0, **base), grads, params)
  np.testing.assert_allclose(sgd[0], [-0.03, 0.04], rtol=1e-6)
  # Nesterov momentum 0.9: trace_1 = g, update_1 = -lr (g + 0.9 g); trace_2 = 1.9 g,
  # update_2 = -lr (g + 0.9 * 1.9 g).
  nesterov = _first_updates(_config(name='sgd', momentum=0.9, **base), grads, params)
  np.testing.assert_allclose(nesterov[0], -0.1 * 1.9 * np.array([0.3, -0.4]), rtol=1e-6)
  np.testing.assert_allclose(nesterov[1], -0.1 * 2.71 * np.array([0.3, -0.4]), rtol=1e-6)
  # SGD weight decay is L2: lambda * w added to the gradient.
  decayed = _first_updates(_config(name='sgd', momentum=0.0, weight_decay=0.5, **base),
                           grads, params, steps=1)
  np.testing.assert_allclose(decayed[0], -0.1 * (np.array([0.3, -0.4]) + 0.5 * np.array(
      [1.0, -2.0])), rtol=1e-6)
  # Adam's first step is -lr * g / (|g| + eps): -lr * sign(g).
  adam = _first_updates(_config(name='adam', **base), grads, params, steps=1)
  np.testing.assert_allclose(adam[0], [-0.1, 0.1], rtol=1e-5)
  # AdamW adds the decoupled decay -lr * wd * w.
  adamw = _first_updates(_config(name='adamw', weight_decay=0.5, **base), grads, params,
                         steps=1)
  np.testing.assert_allclose(adamw[0], [-0.1 - 0.05, 0.1 + 0.1], rtol=1e-5)
  # Clipping to global norm 0.25 halves the gradient before SGD.
  clipped = _first_updates(_config(name='sgd', momentum=0.0, **{**base, 'grad_clip_norm': 0.25}),
                           grads, params, steps=1)
  np.testing.assert_allclose(clipped[0], [-0.015, 0.02], rtol=1e-6)
