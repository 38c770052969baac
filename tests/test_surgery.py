"""Surgery: a dense classifier and its convolutionalized net compute the same function."""

import numpy as np
import pytest
from flax import nnx

from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import surgery


def _classifier(size, features, kernel, downsample, padding, seed=0):
  return models.get_model(dict(name='dense_classifier', in_channels=2, input_size=size,
                               features=features, hidden=12, num_classes=5, kernel_size=kernel,
                               downsample=downsample, padding=padding), rngs=nnx.Rngs(seed))


CASES = [  # size, features, kernel, downsample, padding, seed
    ((28, 28), (8, 16, 32), 3, 'stride', 'valid', 0),
    ((17, 23), (3, 5), 5, 'maxpool', 'same', 1),
    ((20, 13), (4, 6), 1, 'avgpool', 'valid', 2),
    ((16, 16), (2, 3, 4), 3, 'stride', 'same', 3),
    ((15, 19), (4,), 3, 'maxpool', 'valid', 4),
]


@pytest.mark.parametrize('size,features,kernel,downsample,padding,seed', CASES)
def test_equal_logits_at_the_training_size(size, features, kernel, downsample, padding, seed):
  classifier = _classifier(size, features, kernel, downsample, padding, seed)
  fcn = surgery.convolutionalize(classifier)
  x = np.random.default_rng(seed).normal(size=(3, *size, 2)).astype(np.float32)
  out = inference.predict(fcn, x)
  assert out.shape == (3, 1, 1, 5)
  np.testing.assert_allclose(out[:, 0, 0], inference.predict(classifier, x), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize('size,features,kernel,downsample,padding,seed',
                         [c for c in CASES if c[4] == 'valid'])
def test_each_output_is_the_classifier_on_its_window(size, features, kernel, downsample, padding,
                                                     seed):
  classifier = _classifier(size, features, kernel, downsample, padding, seed)
  fcn = surgery.convolutionalize(classifier)
  big = (size[0] + 13 + seed, size[1] + 21)
  x = np.random.default_rng(seed).normal(size=(1, *big, 2)).astype(np.float32)
  out = inference.predict(fcn, x)[0]
  stride = [int(s) for s in geometry.of(fcn).stride]
  assert out.shape[:2] == geometry.of(fcn).output_size(big)
  assert out.shape[0] > 1 and out.shape[1] > 1
  windows = [(i, j) for i in range(out.shape[0]) for j in range(out.shape[1])]
  # The last windows may reach past the image into rows the classifier never reads (its
  # stride leaves them over): pad with NaN, which would show if they were read.
  x = np.pad(x, ((0, 0), (0, size[0]), (0, size[1]), (0, 0)), constant_values=np.nan)
  crops = np.concatenate([x[:, i * stride[0]:i * stride[0] + size[0],
                            j * stride[1]:j * stride[1] + size[1]] for i, j in windows])
  want = inference.predict(classifier, crops)
  got = np.stack([out[i, j] for i, j in windows])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_refuses_models_that_are_not_dense_classifiers():
  gap = models.get_model(dict(name='gap_classifier'), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='not a flatten \\+ dense classifier'):
    surgery.convolutionalize(gap)
  classifier = _classifier((16, 16), (4,), 3, 'stride', 'valid')
  del classifier.input_size
  with pytest.raises(ValueError, match='does not record the input size'):
    surgery.convolutionalize(classifier)


def test_copy_weights_reports_every_mismatch_and_copies_nothing():
  a = nnx.Param(np.zeros((2, 3), np.float32))
  b = nnx.Param(np.zeros((4,), np.float32))
  with pytest.raises(ValueError, match=r'(?s)a: target \(2, 3\) vs source \(3, 2\).*'
                                       r'b: target \(4,\) vs source \(5,\)'):
    surgery.copy_weights({'a': (a, np.ones((3, 2))), 'b': (b, np.ones(5)),
                          'ok': (nnx.Param(np.zeros(1, np.float32)), np.ones(1))})
  assert not np.asarray(a[...]).any() and not np.asarray(b[...]).any()
