"""Classification: one class per image (softmax over K outputs).

* targets: the image's label, int32 `()`;
* loss: softmax cross-entropy, mean over the batch;
* metrics: accuracy; chance = the most frequent class's share. A classifier made
  fully convolutional (`fcn_jax.surgery`) and run on a larger image gives a map of
  class scores: its overlay colours each output by its most likely class.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax

from fcn_jax.tasks import base


def _accuracy(confusion: np.ndarray) -> dict[str, float]:
  return {'accuracy': float(np.trace(confusion) / max(confusion.sum(), 1))}


@dataclasses.dataclass(frozen=True)
class Classification(base.Task):
  """Image-level classes."""

  name = 'classification'
  headline = 'accuracy'

  def inputs(self) -> tuple[str, ...]:
    return ('label',)

  def target_specs(self, g, size):
    del g, size
    return {'target': ((), np.dtype(np.int32))}

  def target_maker(self, g, size):
    del g, size
    return lambda fields: {'target': np.asarray(fields['label'], np.int32)}

  def loss(self, logits, batch):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch['target']))

  def metrics(self, num_classes: int) -> base.Confusion:
    return base.Confusion(num_classes, _accuracy)

  def overlay(self, image, logits):
    if logits.ndim != 3:  # one label for the whole image
      return None
    return base.blend(image, base.class_colours(logits))
