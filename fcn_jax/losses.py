"""Task losses on logits: heat maps (sigmoid BCE), classification and segmentation (softmax CE).

Each returns the mean loss over the labelled outputs of the batch.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from fcn_jax import errors

# The segmentation label of unlabelled pixels, defined here only: the loss and the metrics skip
# it, the datasets write it (`fcn_jax.data.catalog.IGNORE` is this value).
IGNORE = 255


def heatmap_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
  """Sigmoid cross-entropy against soft targets in [0, 1] (e.g. the fraction of a cell)."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target.astype(logits.dtype)))


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def segmentation_loss(logits: jax.Array, labels: jax.Array, weight: jax.Array | None = None,
                      class_weights: Sequence[float] | None = None,
                      ignore_label: int = IGNORE) -> jax.Array:
  """Per-pixel softmax CE; `ignore_label` pixels do not count.

  `class_weights` (one per class) and `weight` (a per-pixel map, e.g. U-Net's
  border weights) multiply each pixel's loss; the mean is over labelled pixels.
  """
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  w = valid.astype(jnp.float32)
  if class_weights is not None:
    w = w * jnp.asarray(class_weights, jnp.float32)[safe]
  if weight is not None:
    w = w * weight
  return jnp.sum(losses * w) / jnp.maximum(jnp.sum(valid), 1)


def task_loss(task: str, logits: jax.Array, batch: dict, class_weights=None) -> jax.Array:
  """The loss of `task` ('heatmap' | 'classification' | 'segmentation') on a batch."""
  if task == 'heatmap':
    return heatmap_loss(logits, batch['target'])
  if task == 'classification':
    return classification_loss(logits, batch['target'])
  if task == 'segmentation':
    return segmentation_loss(logits, batch['target'], batch.get('weight'), class_weights)
  raise errors.ConfigError(
      f"task must be 'heatmap', 'classification' or 'segmentation', got {task!r}")
