"""A trained model from its workdir: `load_trained(workdir, step)` rebuilds the model from
the run's `config.json` and restores the latest (or a given) orbax checkpoint.
"""

import json
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from fcn_jax import checkpoints
from fcn_jax import errors
from fcn_jax import layers
from fcn_jax import models
from fcn_jax import optim


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a training run wrote to `workdir/config.json`."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise errors.InputError(
        f'{workdir!r} holds no config.json: give the --workdir of a training run')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_trained(workdir: str, step: int | None = None) -> tuple[nnx.Module, Any]:
  """The model of a training run with the parameters of checkpoint `step` (default: latest)."""
  config = load_config(workdir)
  model = layers.set_lowering(models.get_model(config.model, rngs=nnx.Rngs(0)),
                              config.get('lowering', 'auto'))
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
  steps = manager.all_steps() if os.path.isdir(directory) else []
  if not steps:
    raise errors.InputError(f'no checkpoint in {directory}: train first (python -m fcn_jax.train '
                            f'--workdir={workdir} ...)')
  if step is not None and step not in steps:
    raise errors.InputError(f'no checkpoint for step {step} in {directory}; steps there: {steps}')
  # The run saved {'model', 'optimizer'}: restore both, keep the model. Without a given step,
  # a damaged newest checkpoint falls back to the previous one (with a warning).
  _, restored = checkpoints.restore(
      manager, {'model': nnx.state(model), 'optimizer': _optimizer_template(model, config)}, step)
  nnx.update(model, restored['model'])
  model.eval()
  return model, config


def _optimizer_template(model: nnx.Module, config: ml_collections.ConfigDict):
  """The optimiser state's structure, needed to read a checkpoint that holds it."""
  return nnx.state(nnx.Optimizer(model, optim.make_optimizer(config), wrt=nnx.Param))
