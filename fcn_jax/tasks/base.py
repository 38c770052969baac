"""What every task provides (`Task`), and what tasks share: the ignore label, confusion counts.

A task is what a model is trained to output. It owns, in one place:

* its **targets**: `target_maker(g, size)` gives a NumPy function from an example's fields
  (`inputs`, e.g. the mask) to the arrays a batch carries (`target`, and `weight` for U-Net
  weight maps) at the model's output resolution, derived from its geometry `g`. It is the
  only implementation: the tf.data training pipeline runs it through `tf.numpy_function`
  (with `target_specs` giving the static shapes), evaluation calls it directly;
* its **loss** on a batch of logits;
* its **metrics**: `metrics(num_classes)` gives an accumulator to `add` each image's logits
  and target to, then read `result()` (metrics, chance level) and `interval()` (the
  `headline` metric with its 95 % bootstrap interval over the images);
* its **pictures**: `panels` (target and prediction, for `examples.png`) and `overlay`
  (the output blended over the image, for `fcn_jax.predict`).

Tasks are frozen dataclasses: hashable, so one can be a static argument of a jitted step.
"""

import abc
from typing import Any, Callable, ClassVar

import jax
import numpy as np
from matplotlib import colormaps

from fcn_jax import geometry
from fcn_jax import stats

# The label of unlabelled pixels in every mask, defined here only: losses and metrics skip
# it, the datasets write it, heat-map fractions leave it out of a cell's pixels.
IGNORE = 255

Fields = dict[str, np.ndarray]  # an example's fields: 'mask', 'centres', 'label', 'weight'
Spec = tuple[tuple[int, ...], np.dtype]  # the static shape and dtype of a target array


class Task(abc.ABC):
  """The contract of a task (see the module docstring)."""

  name: ClassVar[str]  # the value of config.data.task
  headline: ClassVar[str]  # the metric reported with an interval

  @abc.abstractmethod
  def inputs(self) -> tuple[str, ...]:
    """The example fields the targets are made from."""

  @abc.abstractmethod
  def target_specs(self, g: geometry.Geometry, size: tuple[int, int]) -> dict[str, Spec]:
    """Shape and dtype of each array `target_maker(g, size)` returns, in that order."""

  @abc.abstractmethod
  def target_maker(self, g: geometry.Geometry,
                   size: tuple[int, int]) -> Callable[[Fields], Fields]:
    """A function from the fields of an example of input `size` to its target arrays
    (the work that depends only on `g` and `size` is done once, here)."""

  def targets(self, g: geometry.Geometry, size: tuple[int, int], fields: Fields) -> Fields:
    """The target arrays of one example of input `size` (see `target_maker`)."""
    return self.target_maker(g, size)(fields)

  @abc.abstractmethod
  def loss(self, logits: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
    """The mean loss over the labelled outputs of a batch."""

  @abc.abstractmethod
  def metrics(self, num_classes: int) -> 'Metrics':
    """An empty accumulator of this task's metrics."""

  def holds_positives(self, target: np.ndarray) -> bool:
    """Whether an evaluation target shows something to find (the example to plot)."""
    del target
    return True

  def panels(self, target: np.ndarray, logits: np.ndarray) -> tuple[Any, Any, dict] | None:
    """(target image, prediction image, `imshow` keywords) of one image, or None."""
    del target, logits
    return None

  @abc.abstractmethod
  def overlay(self, image: np.ndarray, logits: np.ndarray) -> np.ndarray | None:
    """uint8 RGB: the output blended over the image, or None when it has no spatial axes."""


class Metrics(abc.ABC):
  """Counts over images (e.g. of one size): `add` each image, then read the metrics."""

  per_image: list[np.ndarray]  # additive counts per image, what `interval` resamples
  positives: int | None = None  # heat maps: positive target cells seen

  @abc.abstractmethod
  def add(self, logits: np.ndarray, target: np.ndarray) -> None:
    """Counts one image's logits against its target."""

  @abc.abstractmethod
  def result(self) -> tuple[dict[str, float], float]:
    """The metrics and the score of a trivial predictor (chance)."""

  @abc.abstractmethod
  def interval(self) -> stats.Interval:
    """The task's headline metric with its 95 % bootstrap interval over the images."""


class Confusion(Metrics):
  """A confusion matrix over labelled outputs (rows: truth; `IGNORE` skipped), for tasks that
  pick one of K classes per output; per image: (correct, labelled)."""

  def __init__(self, num_classes: int, summary: Callable[[np.ndarray], dict[str, float]]):
    self.k, self.summary = num_classes, summary
    self.confusion = np.zeros((num_classes, num_classes), np.int64)
    self.per_image = []

  def add(self, logits: np.ndarray, target: np.ndarray) -> None:
    predicted = np.argmax(logits, axis=-1)
    target = np.asarray(target)
    valid = target != IGNORE
    truth, predicted = target[valid].astype(np.int64), predicted[valid]
    np.add.at(self.confusion, (truth, predicted), 1)
    self.per_image.append(np.array([int((truth == predicted).sum()), truth.size]))

  def result(self) -> tuple[dict[str, float], float]:
    """`summary(confusion)`; chance: the most frequent true class's share."""
    total = max(self.confusion.sum(), 1)
    return self.summary(self.confusion), float(self.confusion.sum(1).max() / total)

  def interval(self) -> stats.Interval:
    return stats.interval(np.stack(self.per_image), stats.accuracy)


def class_colours(logits: np.ndarray) -> np.ndarray:
  """`(H', W', 3)` colours of the most likely class of each output (tab10, cycled)."""
  return colormaps['tab10'](np.argmax(logits, axis=-1) % 10)[..., :3]


def blend(image: np.ndarray, colours: np.ndarray) -> np.ndarray:
  """uint8 RGB: `colours` (an output grid, stretched nearest-neighbour over the image)
  half-blended over the image (uint8, or floats in [0, 1])."""
  h, w = image.shape[:2]
  rows = np.minimum(np.arange(h) * colours.shape[0] // h, colours.shape[0] - 1)
  cols = np.minimum(np.arange(w) * colours.shape[1] // w, colours.shape[1] - 1)
  out = np.empty((h, w, 3), np.uint8)
  for top in range(0, h, 256):  # by blocks of rows: a large image needs no float copy of it
    block = image[top:top + 256].astype(np.float32)
    if image.dtype == np.uint8:
      block /= 255.0
    rgb = np.repeat(block, 3, axis=-1) if block.shape[-1] == 1 else block[..., :3]
    blended = 0.5 * rgb + 0.5 * colours[rows[top:top + 256]][:, cols].astype(np.float32)
    out[top:top + 256] = (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)
  return out
