"""Tasks: what a model is trained to output, each in one module with its targets, loss,
metrics and pictures (the contract: `fcn_jax.tasks.base`).

  task = tasks.from_config(config.data, config.loss)   # data.task, data.heatmap, ...
  task.loss(logits, batch); task.metrics(num_classes); task.overlay(image, logits)

* `heatmap` (`Heatmap`): a sigmoid output per cell, F1 of the cells;
* `segmentation` (`Segmentation`): a class per pixel, Long et al.'s four metrics;
* `classification` (`Classification`): a class per image, accuracy.

`IGNORE` is the label of unlabelled pixels everywhere.
"""

import ml_collections

from fcn_jax import errors
from fcn_jax.tasks.base import IGNORE
from fcn_jax.tasks.base import Metrics
from fcn_jax.tasks.base import Task
from fcn_jax.tasks.classification import Classification
from fcn_jax.tasks.heatmap import Heatmap
from fcn_jax.tasks.segmentation import Segmentation

NAMES = (Heatmap.name, Classification.name, Segmentation.name)

__all__ = ['IGNORE', 'NAMES', 'Classification', 'Heatmap', 'Metrics', 'Segmentation', 'Task',
           'from_config']


def from_config(data: ml_collections.ConfigDict,
                loss: ml_collections.ConfigDict | None = None) -> Task:
  """The task of a run: `data.task` with its settings (`data.heatmap`, `data.target_class`,
  `data.weight_map`, and the run's `loss.class_weights`)."""
  if data.task == Heatmap.name:
    return Heatmap(kind=data.get('heatmap', 'fraction'), target_class=data.get('target_class', 1))
  if data.task == Classification.name:
    return Classification()
  if data.task == Segmentation.name:
    class_weights = (loss or {}).get('class_weights')
    weight_map = data.get('weight_map')
    return Segmentation(
        class_weights=tuple(float(w) for w in class_weights) if class_weights else None,
        weight_map=(float(weight_map.w0), float(weight_map.sigma)) if weight_map else None)
  raise errors.ConfigError(f'data.task must be one of {NAMES}, got {data.task!r}')
