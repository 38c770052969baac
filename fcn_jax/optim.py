"""The optax optimiser and learning-rate schedule a config asks for."""

import ml_collections
import optax


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optax optimiser and schedule of `config.optimizer`."""
  o, steps = config.optimizer, config.num_train_steps
  if o.schedule == 'constant':
    schedule = optax.constant_schedule(o.learning_rate)
  elif o.schedule == 'cosine':
    schedule = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, o.warmup_steps,
                                                  max(steps, o.warmup_steps + 1))
  elif o.schedule == 'step':
    boundaries = {int(b * steps): o.decay_factor for b in o.decay_boundaries}
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, o.learning_rate, max(o.warmup_steps, 1)),
         optax.piecewise_constant_schedule(o.learning_rate, boundaries)], [o.warmup_steps])
  else:
    raise ValueError(f"optimizer.schedule must be 'constant', 'cosine' or 'step', got "
                     f'{o.schedule!r}')
  if o.name == 'sgd':
    tx = optax.sgd(schedule, momentum=o.momentum or None, nesterov=bool(o.momentum))
  elif o.name == 'adam':
    tx = optax.adam(schedule)
  elif o.name == 'adamw':
    tx = optax.adamw(schedule, weight_decay=o.weight_decay)
  else:
    raise ValueError(f"optimizer.name must be 'sgd', 'adam' or 'adamw', got {o.name!r}")
  chain = []
  if o.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(o.grad_clip_norm))
  if o.weight_decay and o.name == 'sgd':
    chain.append(optax.add_decayed_weights(o.weight_decay))
  return optax.chain(*chain, tx)
