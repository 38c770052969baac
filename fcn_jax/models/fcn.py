"""fcn: Long et al.'s FCN-32s / FCN-16s / FCN-8s on a VGG-16-style backbone.

VGG's five conv blocks (3x3 convs, 2x2 ceil-mode max-pools; the first conv pads by
`first_padding`, 100 in the paper, so that any input of at least 1 pixel
reaches fc6), fc6 as a 7x7 VALID conv and fc7 as a 1x1 conv, `score_fr` (1x1
to the classes), then:

* 32s: one transposed conv up by 32;
* 16s: up by 2, add `score_pool4` (1x1 on pool4), up by 16;
* 8s: as 16s, then up by 2, add `score_pool3`, up by 8.

Up-sampling is by transposed convs of kernel `2f` and stride `f` initialised as
bilinear interpolation (trainable). Every fusion crops the skip scores to align
with the up-sampled ones, and the output is cropped to the input: each is a
`layers.Merge`, whose offsets come from the geometry, not hard-coded, so the
output has exactly the input's size for any input size. `parts()` names the
layers by their role (blocks, classifier, score_pool, up2, final_up). `widths` and
`fc_width` shrink the net for tests; the defaults are the paper's. torchvision's `vgg16`
weights load with `fcn_jax.weights.load_torchvision` (`config.model.pretrained`), with
`input_norm='imagenet'` (or 'caffe' for the original Caffe weights). `grow_from` initialises
a finer variant from a trained coarser one (the paper's staged training; `config.model.init_from`
names the coarser run's workdir).
"""

from typing import Sequence

import jax
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import layers

VARIANTS = {'fcn32s': 0, 'fcn16s': 1, 'fcn8s': 2}  # number of skip fusions
REPEATS = (2, 2, 3, 3, 3)  # convs per VGG-16 block


def upsampler(channels: int, factor: int, rngs: nnx.Rngs) -> layers.ConvTranspose:
  return layers.ConvTranspose(channels, channels, 2 * factor, stride=factor, init='bilinear',
                              use_bias=False, rngs=rngs)


class Model(nnx.Module):
  """FCN-32s/16s/8s; returns per-pixel logits `(N, H, W, num_classes)` for any `(H, W)`."""

  def __init__(self, in_channels: int = 3, num_classes: int = 21, variant: str = 'fcn8s',
               widths: Sequence[int] = (64, 128, 256, 512, 512), fc_width: int = 4096,
               first_padding: int = 100, dropout: float = 0.5, input_norm: str | None = None, *,
               rngs: nnx.Rngs):
    if variant not in VARIANTS:
      raise errors.ConfigError(f'variant must be one of {sorted(VARIANTS)}, got {variant!r}')
    if len(widths) != 5:
      raise errors.ConfigError(f'widths needs one entry per VGG block (5), got {widths}')
    self.name = variant
    self.normalize = layers.Normalize(input_norm)  # of pretrained weights (fcn_jax.weights)
    self.first_skip = 5 - VARIANTS[variant]  # blocks before the first skip source
    blocks, c = [], in_channels
    for b, (repeats, width) in enumerate(zip(REPEATS, widths)):
      stack = []
      for i in range(repeats):
        pad = first_padding if b == 0 and i == 0 else 1
        stack += [layers.Conv(c, width, 3, padding=pad, rngs=rngs), jax.nn.relu]
        c = width
      stack.append(layers.MaxPool(2, ceil_mode=True))  # Caffe's pooling, as in the paper
      blocks.append(layers.Sequential(*stack, name=f'block{b + 1}'))
    classifier = [layers.Conv(c, fc_width, 7, padding='valid', rngs=rngs), jax.nn.relu]
    classifier += [nnx.Dropout(dropout, rngs=rngs)] if dropout else []
    classifier += [layers.pointwise(fc_width, fc_width, rngs=rngs), jax.nn.relu]
    classifier += [nnx.Dropout(dropout, rngs=rngs)] if dropout else []
    classifier += [layers.pointwise(fc_width, num_classes, rngs=rngs)]
    classifier = layers.Sequential(*classifier, name='fc6-fc7-score_fr')
    # Skip scores (zero-initialised as in the paper) and the x2 up-samplers that precede
    # each fusion, indexed by the block whose input they read (3: pool3, 4: pool4).
    zeros = nnx.initializers.zeros_init()
    score_pool = [layers.pointwise(widths[b - 1], num_classes, kernel_init=zeros, rngs=rngs)
                  for b in range(self.first_skip, 5)]
    up2 = [upsampler(num_classes, 2, rngs) for _ in range(self.first_skip, 5)]
    final_up = upsampler(num_classes, 2 ** self.first_skip, rngs)
    # The graph, from the deepest fusion up: each fusion adds the skip scores of block b's
    # input to the up-sampled scores of the blocks below, cropped to align (layers.Merge).
    scores = classifier
    for b in reversed(range(self.first_skip, 5)):
      k = b - self.first_skip
      deeper = layers.Sequential(blocks[b], scores, up2[k], name=f'block{b + 1}+')
      scores = layers.Merge(score_pool[k], deeper, reference=1, combine='add',
                            name=f'fuse_pool{b}')
    scores = layers.Sequential(*blocks[:self.first_skip], scores, final_up, name='scores')
    # The output: the scores cropped to the input's size.
    self.net = layers.Merge(layers.identity, scores, reference=0, combine='crop', name=variant)

  @property
  def geometry(self) -> geometry.Node:
    return self.net.geometry

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.net(self.normalize(x))  # the outer Merge (named after the variant) checks the input size

  def parts(self) -> dict[str, object]:
    """The layers by their role in the paper: `blocks` (5 VGG blocks), `classifier`
    (fc6-fc7-score_fr), `score_pool`, `up2` and `fusions` (the `layers.Merge`) of each fusion
    in the order of `range(first_skip, 5)` (pool3 before pool4), and `final_up`."""
    scores = self.net.branches[1]
    blocks = list(scores.layers[:self.first_skip])
    fused, score_pool, up2, fusions = scores.layers[self.first_skip], [], [], []
    while isinstance(fused, layers.Merge):
      fusions.append(fused)
      score_pool.append(fused.branches[0])
      block, fused, up = fused.branches[1].layers
      blocks.append(block)
      up2.append(up)
    return dict(blocks=blocks, classifier=fused, score_pool=score_pool, up2=up2,
                final_up=scores.layers[-1], fusions=fusions)

  def grow_from(self, coarser: 'Model') -> None:
    """Initialises this net from a trained coarser variant, as Long et al. train FCN-16s
    from FCN-32s and FCN-8s from FCN-16s: the VGG blocks, fc6-fc7-score_fr, and the coarser
    net's skip scores and x2 up-samplers are copied; the new skip's scores stay
    zero-initialised and the new up-samplers bilinear. So at step 0 the new fusion adds
    nothing: its output is the coarser net's scores up-sampled by 2. (The whole output is
    not the coarser net's: the new path's x2-then-x16 bilinear up-sampling is not the
    coarser x32 one, whose trained kernel has no place in the finer net; as in the paper.)
    """
    if VARIANTS[self.name] <= VARIANTS[coarser.name]:
      raise errors.ConfigError(f'{self.name} grows from a coarser FCN (fewer skips), not from '
                               f'{coarser.name}')
    mine, theirs = self.parts(), coarser.parts()
    pairs = list(zip(mine['blocks'], theirs['blocks'])) + [(mine['classifier'],
                                                            theirs['classifier'])]
    # Skip scores and up-samplers by the block they read (range(first_skip, 5)).
    offset = coarser.first_skip - self.first_skip
    pairs += list(zip(mine['score_pool'][offset:], theirs['score_pool']))
    pairs += list(zip(mine['up2'][offset:], theirs['up2']))
    copies = []
    for target, source in pairs:
      want, have = nnx.state(target, nnx.Param), nnx.state(source, nnx.Param)
      shapes = [jax.tree.map(lambda v: v.shape, s) for s in (want, have)]
      if shapes[0] != shapes[1]:
        raise errors.ConfigError(f'{coarser.name} does not fit {self.name}: the coarser run '
                                 'has other widths, fc_width, classes or input channels')
      copies.append((target, have))
    for target, state in copies:  # only once every part fits
      nnx.update(target, state)

  def crop_offsets(self, size: Sequence[int]) -> dict[str, tuple[int, int]]:
    """Crop offsets (rows, cols) of every fusion and of the final crop, for an input `size`."""
    n, node, parts = tuple(size), self.geometry, self.parts()
    offsets = {'final': tuple(node.offsets(n[a], a)[1][1] for a in range(2))}
    h = n
    for block in parts['blocks'][:self.first_skip]:
      h = geometry.of(block).output_size(h)
    for b, fusion in zip(range(self.first_skip, 5), parts['fusions']):
      offsets[f'score_pool{b}'] = tuple(fusion.geometry.offsets(h[a], a)[1][0] for a in range(2))
      h = geometry.of(parts['blocks'][b]).output_size(h)
    return offsets
