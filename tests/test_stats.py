"""fcn_jax.stats on constructed data whose answers are known."""

import numpy as np
import pytest

from fcn_jax import stats


def _images(rng, units: int, recall: float = 0.7, false_rate: float = 0.1) -> np.ndarray:
  """(tp, fp, fn) per image: Poisson(30) positives found with `recall`, Poisson(30 *
  false_rate) false positives. Pooled F1 tends to 2R / (2R + f + 1 - R)."""
  positives = rng.poisson(30, units)
  tp = rng.binomial(positives, recall)
  return np.stack([tp, rng.poisson(30 * false_rate, units), positives - tp], axis=1)


def _true_f1(recall=0.7, false_rate=0.1):
  return 2 * recall / (2 * recall + false_rate + 1 - recall)


def test_metrics_pool_counts():
  assert stats.f1(np.array([8, 2, 2])) == pytest.approx(0.8)
  assert stats.f1(np.array([0, 0, 0])) == 0
  assert stats.accuracy(np.array([[3, 4], [1, 4]])).tolist() == [0.75, 0.25]
  counts = stats.binary_counts(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]]))
  assert counts.tolist() == [[1, 1, 1]]
  with pytest.raises(ValueError, match='differ in shape'):
    stats.binary_counts(np.zeros((2, 4)), np.zeros((2, 5)))


def test_interval_estimate_is_the_pooled_metric_and_covers_the_truth():
  rng = np.random.default_rng(0)
  counts = _images(rng, 60)
  found = stats.interval(counts)
  assert found.estimate == pytest.approx(stats.f1(counts.sum(0)))
  assert found.low < found.estimate < found.high
  covered = 0
  for _ in range(200):
    i = stats.interval(_images(rng, 40), resamples=1000, seed=int(rng.integers(1 << 30)))
    covered += i.low <= _true_f1() <= i.high
  assert covered >= 180, covered  # nominal 95 %


def test_paired_difference_of_one_distribution_covers_zero():
  rng = np.random.default_rng(1)
  covers = 0
  for _ in range(200):
    a, b = _images(rng, 40), _images(rng, 40)
    covers += not stats.difference(a, b, resamples=1000,
                                   seed=int(rng.integers(1 << 30))).excludes_zero()
  assert covers >= 180, covers


def test_shifted_distribution_is_detected_in_its_direction():
  rng = np.random.default_rng(2)
  lower = 0
  for _ in range(200):
    a, b = _images(rng, 40, recall=0.5), _images(rng, 40, recall=0.7)
    diff = stats.difference(a, b, resamples=1000, seed=int(rng.integers(1 << 30)))
    lower += diff.high < 0
  assert lower >= 180, lower


def test_pairing_removes_the_variance_that_images_share():
  rng = np.random.default_rng(3)
  a = _images(rng, 50)
  b = a.copy()
  b[:, 0] -= 1  # one true positive fewer on every image
  b[:, 2] += 1
  paired = stats.difference(a, b)
  unpaired = stats.difference(a, b, paired=False)
  assert paired.low > 0  # the same images: the drop is certain
  assert unpaired.high - unpaired.low > 3 * (paired.high - paired.low)
  assert stats.difference(a, a) == stats.Interval(0.0, 0.0, 0.0)
  with pytest.raises(ValueError, match='same seeds and images'):
    stats.difference(a, a[:40])


def test_seeds_are_resampled():
  # Every image alike within a seed, the seeds far apart: only seed resampling gives width.
  good = np.tile([9, 1, 1], (20, 1))
  bad = np.tile([5, 5, 5], (20, 1))
  one_seed = stats.interval(good)
  assert one_seed.low == one_seed.high == pytest.approx(0.9)
  two = stats.interval(np.stack([good, bad]))
  assert two.estimate == pytest.approx(stats.f1(good.sum(0) + bad.sum(0)))
  assert two.low <= 0.5 + 1e-9 and two.high >= 0.9 - 1e-9
  with pytest.raises(ValueError, match='units'):
    stats.interval(np.zeros((2, 0, 3)))


def test_collapse_detector():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 10, 500)
  assert stats.collapsed(np.full(500, 3))  # one label for everything
  assert stats.collapsed(np.tile(rng.normal(size=10), (500, 1)), num_classes=10)  # same argmax
  assert stats.collapsed(-np.abs(rng.normal(size=(4, 8, 8, 1))))  # heat map never positive
  chance = rng.integers(0, 10, 500)
  assert stats.collapsed(chance, labels, num_classes=10, tolerance=0.05)
  trained = np.where(rng.random(500) < 0.8, labels, chance)
  assert not stats.collapsed(trained, labels, num_classes=10)
  assert not stats.collapsed(rng.normal(size=(4, 8, 8, 1)))
  with pytest.raises(ValueError, match='do not match'):
    stats.collapsed(trained, labels[:10], num_classes=10)


@pytest.mark.parametrize('diff, failed, word', [
    (stats.Interval(0.01, -0.02, 0.025), False, 'equivalent'),
    (stats.Interval(0.01, 0.005, 0.02), False, 'equivalent'),  # real but inside the margin
    (stats.Interval(0.06, 0.02, 0.10), False, 'higher'),
    (stats.Interval(-0.06, -0.10, -0.02), False, 'lower'),
    (stats.Interval(0.01, -0.04, 0.06), False, 'inconclusive'),
    (stats.Interval(0.30, 0.25, 0.35), True, 'failed to train'),
])
def test_verdict_branches(diff, failed, word):
  assert stats.compare(diff, margin=0.03, failed=failed) == word
  text = stats.sentence('1024²', '64²', diff, margin=0.03, failed=failed)
  assert word in text
  if not failed:
    assert str(diff) in text
