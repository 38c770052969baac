"""Task losses and heat-map metrics against plain NumPy loops over pixels and cells."""

import math

import jax.numpy as jnp
import numpy as np

from fcn_jax import evaluate
from fcn_jax import losses


def _log_softmax(z):
  z = z - z.max()
  return z - math.log(np.exp(z).sum())


def test_segmentation_loss_matches_a_loop_over_pixels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 3, (2, 3, 4))
  labels[0, 0, :2] = 255  # unlabelled pixels
  weight = rng.random((2, 3, 4)).astype(np.float32)
  class_weights = (0.5, 2.0, 1.0)
  total, labelled = 0.0, 0
  for n, i, j in np.ndindex(*labels.shape):
    if labels[n, i, j] == 255:
      continue
    labelled += 1
    c = labels[n, i, j]
    total += -_log_softmax(logits[n, i, j])[c] * class_weights[c] * weight[n, i, j]
  got = losses.segmentation_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weight),
                                 class_weights)
  np.testing.assert_allclose(float(got), total / labelled, rtol=1e-5)
  unweighted = sum(-_log_softmax(logits[p])[labels[p]] for p in np.ndindex(*labels.shape)
                   if labels[p] != 255) / labelled
  np.testing.assert_allclose(float(losses.segmentation_loss(jnp.asarray(logits),
                                                            jnp.asarray(labels))),
                             unweighted, rtol=1e-5)
  everything_ignored = np.full_like(labels, 255)
  assert float(losses.segmentation_loss(jnp.asarray(logits),
                                        jnp.asarray(everything_ignored))) == 0.0


def test_heatmap_loss_matches_a_loop_over_cells():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
  target = rng.random((2, 4, 4, 1)).astype(np.float32)  # soft targets (cell fractions)
  expected = np.mean([-(t * math.log(1 / (1 + math.exp(-z))) +
                        (1 - t) * math.log(1 - 1 / (1 + math.exp(-z))))
                      for z, t in zip(logits.ravel(), target.ravel())])
  np.testing.assert_allclose(float(losses.heatmap_loss(jnp.asarray(logits),
                                                       jnp.asarray(target))), expected,
                             rtol=1e-5)


def test_heatmap_f1_and_chance_match_counting_cells():
  rng = np.random.default_rng(2)
  acc = evaluate.Accumulator('heatmap', 1)
  tp = fp = fn = positives = cells = 0
  for _ in range(3):
    target = rng.random((5, 6, 1))
    logits = rng.normal(size=(5, 6, 1))
    acc.add(logits, target)
    for z, t in zip(logits.ravel(), target.ravel()):
      called, positive = 1 / (1 + math.exp(-z)) > 0.5, t > 0.5
      tp, fp, fn = tp + (called and positive), fp + (called and not positive), fn + (
          positive and not called)
      positives, cells = positives + positive, cells + 1
  metrics, chance = acc.result()
  np.testing.assert_allclose(metrics['precision'], tp / (tp + fp))
  np.testing.assert_allclose(metrics['recall'], tp / (tp + fn))
  np.testing.assert_allclose(metrics['f1'], 2 * tp / (2 * tp + fp + fn))
  p = positives / cells  # calling every cell positive: precision p, recall 1
  np.testing.assert_allclose(chance, 2 * p / (1 + p))
  assert acc.counts['positive'] == positives
