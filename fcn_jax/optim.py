"""The optax optimiser and learning-rate schedule a config asks for."""

import ml_collections
import optax

from fcn_jax import errors


def learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
  """The learning rate at each step of `config.optimizer`, over `config.num_train_steps`.

  Every schedule first rises linearly from 0 to `learning_rate` over `warmup_steps` (0: no
  warm-up), then 'constant' stays there, 'cosine' decays to 0 at step `num_train_steps`, and
  'step' multiplies it by `decay_factor` from each step `int(b * num_train_steps)` on, for `b`
  in `decay_boundaries` (steps counted from 0, warm-up included).
  """
  o, steps = config.optimizer, config.num_train_steps
  warmup = max(int(o.warmup_steps), 0)
  if o.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, warmup,
                                              max(steps, warmup + 1))
  if o.schedule == 'constant':
    after = optax.constant_schedule(o.learning_rate)
  elif o.schedule == 'step':
    boundaries = sorted(int(b * steps) for b in o.decay_boundaries)
    if boundaries and boundaries[0] <= warmup:
      raise errors.ConfigError(
          f'optimizer.decay_boundaries {tuple(o.decay_boundaries)} put a decay at step '
          f'{boundaries[0]}, inside the {warmup} warm-up steps: use later boundaries or fewer '
          'warm-up steps')
    # join_schedules hands the second schedule the steps counted from the end of the warm-up.
    scales: dict[int, float] = {}
    for b in boundaries:
      scales[b - warmup] = scales.get(b - warmup, 1.0) * o.decay_factor
    after = optax.piecewise_constant_schedule(o.learning_rate, scales)
  else:
    raise errors.ConfigError(f"optimizer.schedule must be 'constant', 'cosine' or 'step', got "
                             f'{o.schedule!r}')
  if not warmup:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, o.learning_rate, warmup), after],
                              [warmup])


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optax optimiser of `config.optimizer` on the schedule of `learning_rate(config)`.

  Gradients are clipped to global norm `grad_clip_norm` (0: off) first; `weight_decay` is
  decoupled for 'adamw' and added to the gradient (L2) for 'sgd'; 'sgd' with `momentum` uses
  Nesterov momentum.
  """
  o = config.optimizer
  schedule = learning_rate(config)
  if o.name == 'sgd':
    tx = optax.sgd(schedule, momentum=o.momentum or None, nesterov=bool(o.momentum))
  elif o.name == 'adam':
    tx = optax.adam(schedule)
  elif o.name == 'adamw':
    tx = optax.adamw(schedule, weight_decay=o.weight_decay)
  else:
    raise errors.ConfigError(f"optimizer.name must be 'sgd', 'adam' or 'adamw', got {o.name!r}")
  chain = []
  if o.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(o.grad_clip_norm))
  if o.weight_decay and o.name == 'sgd':
    chain.append(optax.add_decayed_weights(o.weight_decay))
  return optax.chain(*chain, tx)
