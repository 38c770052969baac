"""Inference: a trained model from its workdir, and whole-image prediction at any valid size.

`load_trained(workdir)` rebuilds the model from the run's `config.json` and
restores the latest (or a given) orbax checkpoint; `predict(model, image)`
checks the size against the model's geometry first (a clear `ValueError`, never
an XLA shape error) and runs one jitted forward pass (one compilation per
distinct input shape).

Exact tiled and out-of-core inference (tiles with receptive-field halos, so
that images larger than memory give the same output as a whole-image run) are
not here yet; see the README.
"""

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from fcn_jax import geometry
from fcn_jax import models
from fcn_jax import optim


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a training run wrote to `workdir/config.json`."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise ValueError(f'{workdir!r} holds no config.json: give the --workdir of a training run')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_trained(workdir: str, step: int | None = None) -> tuple[nnx.Module, Any]:
  """The model of a training run with the parameters of checkpoint `step` (default: latest)."""
  config = load_config(workdir)
  model = models.get_model(config.model, rngs=nnx.Rngs(0))
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
  steps = manager.all_steps() if os.path.isdir(directory) else []
  if not steps:
    raise ValueError(f'no checkpoint in {directory}: train first (python -m fcn_jax.train '
                     f'--workdir={workdir} ...)')
  step = max(steps) if step is None else step
  if step not in steps:
    raise ValueError(f'no checkpoint for step {step} in {directory}; steps there: {steps}')
  # The run saved {'model', 'optimizer'}: restore both, keep the model.
  restored = manager.restore(step, args=ocp.args.StandardRestore(
      {'model': nnx.state(model), 'optimizer': _optimizer_template(model, config)}))
  nnx.update(model, restored['model'])
  model.eval()
  return model, config


def _optimizer_template(model: nnx.Module, config: ml_collections.ConfigDict):
  """The optimiser state's structure, needed to read a checkpoint that holds it."""
  return nnx.state(nnx.Optimizer(model, optim.make_optimizer(config), wrt=nnx.Param))


@nnx.jit
def _forward(model, images):
  return model(images)


def predict(model: nnx.Module, image: np.ndarray) -> np.ndarray:
  """Logits for one `(H, W, C)` image (or an `(N, H, W, C)` batch), as NumPy."""
  batch = image[None] if image.ndim == 3 else image
  geometry.check(model, batch.shape)
  out = np.asarray(jax.device_get(_forward(model, batch.astype(np.float32))))
  return out[0] if image.ndim == 3 else out
