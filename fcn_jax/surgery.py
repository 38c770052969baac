"""Net surgery: turn a trained flatten + dense classifier into a fully convolutional net.

A dense layer on the flattened `(h, w, c)` feature map is a `h x w` VALID
convolution: `convolutionalize(classifier)` copies the conv half as it is, the
first dense kernel `(h*w*c, hidden)` reshaped to `(h, w, c, hidden)` (the
classifier flattens row-major over H, W, C) and the later dense kernels as 1x1
convolutions. On the training size the result gives the classifier's logits
as a `(N, 1, 1, K)` map; on a larger image, output `(i, j)` is the classifier
run on the window of the training size at `(i*J, j*J)` (`J` = total stride) —
exactly when the conv half pads nothing (`padding='valid'`), and up to the
effect of the padding at window edges otherwise (the windows then see real
neighbours where the classifier saw zeros). This is OverFeat's dense
evaluation: every window's features are computed once.

`copy_weights` is the general helper: it copies named arrays into named
parameters, reshaping where told, and reports every mismatch at once.
"""

from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import layers


def copy_weights(pairs: Mapping[str, tuple[nnx.Variable, Any]]) -> None:
  """`pairs[name] = (target parameter, source array)`: copies every source into its target.

  Raises one `ValueError` listing every name whose shapes differ, before
  copying anything (so a failed surgery leaves the target untouched).
  """
  mismatches = [f'{name}: target {tuple(target[...].shape)} vs source {tuple(np.shape(source))}'
                for name, (target, source) in pairs.items()
                if tuple(target[...].shape) != tuple(np.shape(source))]
  if mismatches:
    raise errors.ConfigError('cannot copy weights, shapes differ:\n  ' + '\n  '.join(mismatches))
  for target, source in pairs.values():
    target[...] = jnp.asarray(source, target[...].dtype)


def _input_size(classifier: nnx.Module) -> tuple[int, int]:
  size = getattr(classifier, 'input_size', None)
  for part in ('features', 'fc1', 'fc2'):
    if not hasattr(classifier, part):
      raise errors.ConfigError(
          f'{type(classifier).__name__} is not a flatten + dense classifier (it '
          f'has no {part!r}); convolutionalize expects '
          'fcn_jax.models.dense_classifier')
  if size is None or len(size) != 2:
    raise errors.ConfigError(
        f'{type(classifier).__name__} does not record the input size its dense '
        'layers were built for (input_size); without it the first dense kernel '
        'cannot be reshaped into a convolution')
  return tuple(int(n) for n in size)


def convolutionalize(classifier: nnx.Module, activation: Callable[..., Any] | None = None,
                     ) -> layers.Sequential:
  """The all-conv equivalent of a `dense_classifier`: features, `h x w` conv, 1x1 conv.

  `activation` (default: the classifier's own) is applied between the two
  converted dense layers, as in the classifier.
  """
  size = _input_size(classifier)
  features = nnx.clone(classifier.features)
  h, w = geometry.of(features).output_size(size)
  convs = [layer for layer in features.layers if hasattr(layer, 'out_channels')]
  c = convs[-1].out_channels if convs else None
  fc1, fc2 = classifier.fc1, classifier.fc2
  if c is None or h * w * c != fc1.in_features:
    raise errors.ConfigError(
        f'{type(classifier).__name__}: the conv half gives {h}x{w}x{c} features at '
        f'{size[0]}x{size[1]}, but fc1 takes {fc1.in_features} inputs')
  rngs = nnx.Rngs(0)  # every parameter is overwritten below
  conv1 = layers.Conv(c, fc1.out_features, (h, w), padding='valid', rngs=rngs)
  conv2 = layers.pointwise(fc2.in_features, fc2.out_features, rngs=rngs)
  copy_weights({
      'fc1.kernel -> conv1.kernel': (conv1.kernel, fc1.kernel[...].reshape(
          h, w, c, fc1.out_features)),
      'fc1.bias -> conv1.bias': (conv1.bias, fc1.bias[...]),
      'fc2.kernel -> conv2.kernel': (conv2.kernel, fc2.kernel[...].reshape(
          1, 1, fc2.in_features, fc2.out_features)),
      'fc2.bias -> conv2.bias': (conv2.bias, fc2.bias[...]),
  })
  act = activation or getattr(classifier, 'activation', None) or layers.activation('relu')
  name = f'{geometry.of(classifier).name}_fcn'
  return layers.Sequential(*features.layers, conv1, act, conv2, name=name)
