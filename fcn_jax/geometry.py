"""Shape and receptive-field algebra for fully convolutional networks.

Pure Python (exact rational arithmetic): nothing here traces or compiles.

Every layer reports a geometry `Node`; containers compose them (`Chain` for
sequences, `Merge` for skip connections). A node answers, for one spatial axis
and one input size `n`:

* the output size (or raises `GeometryError` when `n` is too small or when the
  branches of a merge do not align), and
* a `Field`: output index `i` sees input positions
  `[jump * i + start, jump * i + start + size - 1]` (positions outside
  `[0, n)` are padding). `size` is the receptive field, `jump` the effective
  stride, `-start` the effective padding, `start + (size - 1) / 2` the centre
  of output 0's field. After up-sampling `jump` is a fraction and the field is
  the tightest box holding every input that can reach an output (the exact set
  depends on the output's phase).

The two spatial axes are independent; `Geometry` (what `of(model)` returns)
wraps a node into the 2-D questions researchers ask: output size, receptive
field, stride, minimum and valid input sizes, and a clear `ValueError` for an
input the model cannot take.

The arithmetic, for a window of kernel `k`, dilation `d`, stride `s` and
padding `(lo, hi)`:  `out = floor((n + lo + hi - d*(k-1) - 1) / s) + 1`, and
composing a layer after a chain with field `(r, j, b)`:
`r' = r + j*(k_eff - 1)`, `j' = j*s`, `b' = b - j*lo`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from fractions import Fraction
from typing import Any, Callable, Iterator, Sequence

from fcn_jax import errors

Pair = tuple[int, int]
Number = int | Fraction



def _frac(x: Number) -> Fraction:
  return Fraction(x)


@dataclasses.dataclass(frozen=True)
class Field:
  """Input positions seen by one output position along one axis.

  Output index `i` sees `[jump*i + start, jump*i + start + size - 1]`.
  """
  size: Fraction = Fraction(1)
  jump: Fraction = Fraction(1)
  start: Fraction = Fraction(0)

  def then(self, layer: Field) -> Field:
    """The field of this chain followed by `layer` (whose field is in this chain's output grid)."""
    return Field(size=self.size + self.jump * (layer.size - 1),
                 jump=self.jump * layer.jump,
                 start=self.start + self.jump * layer.start)

  @property
  def centre(self) -> Fraction:
    """Centre of output 0's field, in input coordinates."""
    return self.start + (self.size - 1) / 2

  @property
  def padding(self) -> Fraction:
    """Effective padding: how far output 0's field reaches before input 0."""
    return -self.start

  def span(self, i: int) -> Pair:
    """Integer input positions `(first, last)` that output `i` can see."""
    lo = self.jump * i + self.start
    return math.ceil(lo), math.floor(lo + self.size - 1)


IDENTITY = Field()


# --------------------------------------------------------------------------
# Nodes.


class Node(abc.ABC):
  """Geometry of a layer or a block. Subclasses implement `axis`."""

  name: str  # set by subclasses (dataclass fields)

  @abc.abstractmethod
  def axis(self, n: int, a: int) -> tuple[int, Field]:
    """Output size and field along axis `a` (0 = height, 1 = width) for input size `n`."""

  def back(self, first: int, last: int, n: int, a: int) -> Pair:
    """Exact input positions `(first', last')` that outputs `first..last` read (input size `n`).

    Leaves are exact with their own field (integer rounding per layer);
    containers override this to round layer by layer, which is tighter than
    the composed `Field` after up-sampling. Empty when `first' > last'`.
    """
    _, field = self.axis(n, a)
    return field.span(first)[0], field.span(last)[1]

  def channels(self, c: int | None) -> int | None:
    """Output channels for `c` input channels (None when unknown)."""
    return c

  @property
  def params(self) -> int:
    """Number of trainable parameters (of this node only, children included)."""
    return sum(child.params for _, child in self.children())

  def children(self) -> Sequence[tuple[str, Node]]:
    return ()

  def with_name(self, name: str) -> Node:
    return dataclasses.replace(self, name=name)

  # What exact tiling (`fcn_jax.inference.tiling`) asks of a layer. The defaults are those
  # of a layer whose output sees the whole input (global pooling, dense layers).
  def tiling_refusal(self) -> str | None:
    """Why this layer's outputs cannot be assembled from tiles, or None when they can."""
    return f'{type(self).__name__} {self.name!r} sees the whole input: no exact tiling'

  def grid_step(self, a: int) -> Fraction:
    """Input positions per output position along axis `a` (the stride; a fraction after
    up-sampling): the factor by which this layer changes the sampling step."""
    return Fraction(1)

  def mirror_padding(self, a: int) -> tuple[str, int, int] | None:
    """`(fill, lo, hi)` when the layer fills its border by copying its input ('reflect',
    'replicate'): a tile must then hold the positions copied. None otherwise."""
    return None

  def periodic(self, a: int) -> bool:
    """Whether the layer, given an input that repeats with its size along axis `a`, reads
    nothing but that repetition (circular padding, or none): then, where its output size is
    the input size over `grid_step`, its output repeats with its own size. Circularly padded
    nets tile exactly when every layer is (`tiling.wraps`)."""
    return False


class _Weights:
  """What a layer with its own weights reports: `out_channels` (None: as its input) and
  `n_params`, fields of the dataclasses that mix this in."""

  def channels(self, c):
    return c if self.out_channels is None else self.out_channels

  @property
  def params(self):
    return self.n_params


@dataclasses.dataclass(frozen=True)
class Pointwise(_Weights, Node):
  """Keeps the spatial grid: activations, normalisation, 1x1 convs (give `out_channels`)."""
  name: str = 'pointwise'
  out_channels: int | None = None
  n_params: int = 0
  local: bool = True  # False for layers with statistics over all positions (GroupNorm)

  def axis(self, n, a):
    if n < 1:
      raise errors.GeometryError(f'{self.name}: input size {n} is empty')
    return n, IDENTITY

  def tiling_refusal(self):
    return None if self.local else (f'{self.name} mixes statistics over the whole image: no '
                                    'exact tiling')

  def periodic(self, a):
    return self.local


@dataclasses.dataclass(frozen=True)
class Window(_Weights, Node):
  """A sliding window (convolution or pooling).

  `padding` is `((top, bottom), (left, right))`. `pad_limit='reflect'` says the
  padding must be smaller than the input, `'circular'` that it must not exceed
  it. `exact` rejects sizes where the last stride step leaves input unused
  (U-Net's rule that every 2x2 pooling sees an even size); `ceil` adds a last
  partial window over them instead (Caffe's pooling, used by Long et al.).
  """
  name: str
  kernel: Pair
  stride: Pair = (1, 1)
  dilation: Pair = (1, 1)
  padding: tuple[Pair, Pair] = ((0, 0), (0, 0))
  out_channels: int | None = None
  n_params: int = 0
  pad_limit: str | None = None  # None | 'reflect' | 'circular'
  exact: bool = False  # the windows must cover the input exactly (no rows left over)
  ceil: bool = False  # ceil-mode pooling: a last, partial window covers left-over rows
  fill: str = 'zeros'  # what the padding holds: zeros | -inf | reflect | replicate | circular
  key: int = dataclasses.field(default=0, compare=False)  # id() of the layer (exact tiling)

  def axis(self, n, a):
    k, s, d = self.kernel[a], self.stride[a], self.dilation[a]
    lo, hi = self.padding[a]
    k_eff = d * (k - 1) + 1
    if n + lo + hi < k_eff or n < 1:
      raise errors.GeometryError(
          f'{self.name}: input size {n} + padding {lo}+{hi} is smaller than the '
          f'{"dilated " if d > 1 else ""}window {k_eff}')
    if self.pad_limit == 'reflect' and max(lo, hi) >= n:
      raise errors.GeometryError(f'{self.name}: reflect padding {max(lo, hi)} needs input > '
                                 f'{max(lo, hi)}, got {n}')
    if self.pad_limit == 'circular' and max(lo, hi) > n:
      raise errors.GeometryError(f'{self.name}: circular padding {max(lo, hi)} needs input >= '
                                 f'{max(lo, hi)}, got {n}')
    out, left_over = divmod(n + lo + hi - k_eff, s)
    if self.exact and left_over:
      raise errors.GeometryError(
          f'{self.name}: input size {n} leaves {left_over} position(s) unused '
          f'by stride {s} (this layer requires an exact fit)')
    if self.ceil and left_over:
      # PyTorch/Caffe ceil mode: one more window, unless it would start in the bottom padding.
      out += (out + 1) * s < n + lo
    return out + 1, Field(size=_frac(k_eff), jump=_frac(s), start=_frac(-lo))

  def tiling_refusal(self):
    return None

  def grid_step(self, a):
    return _frac(self.stride[a])

  def mirror_padding(self, a):
    return (self.fill, *self.padding[a]) if self.fill in ('reflect', 'replicate') else None

  def periodic(self, a):
    return self.fill == 'circular' or self.padding[a] == (0, 0)


@dataclasses.dataclass(frozen=True)
class Transpose(_Weights, Node):
  """A transposed window (transposed convolution, max-unpooling).

  Output `o` receives input `i` where `o = s*i - lo + d*t`, `t < k`; output size
  `(n - 1)*s - lo - hi + d*(k - 1) + 1 + extra` (`extra` is PyTorch's
  `output_padding`).
  """
  name: str
  kernel: Pair
  stride: Pair = (1, 1)
  dilation: Pair = (1, 1)
  padding: tuple[Pair, Pair] = ((0, 0), (0, 0))
  extra: Pair = (0, 0)
  out_channels: int | None = None
  n_params: int = 0
  key: int = dataclasses.field(default=0, compare=False)  # id() of the layer (exact tiling)

  def axis(self, n, a):
    k, s, d = self.kernel[a], self.stride[a], self.dilation[a]
    lo, hi = self.padding[a]
    k_eff = d * (k - 1) + 1
    out = (n - 1) * s - lo - hi + k_eff + self.extra[a]
    if n < 1 or out < 1:
      raise errors.GeometryError(f'{self.name}: input size {n} gives output size {out} '
                                 f'after cropping {lo}+{hi}')
    s_ = _frac(s)
    return out, Field(size=(k_eff - 1) / s_ + 1, jump=1 / s_, start=(lo - (k_eff - 1)) / s_)

  def tiling_refusal(self):
    return None

  def grid_step(self, a):
    return 1 / _frac(self.stride[a])

  def periodic(self, a):
    return self.padding[a] == (0, 0)  # no cropping: every output gets all its taps


@dataclasses.dataclass(frozen=True)
class Resize(Node):
  """Nearest or bilinear (half-pixel centres) resizing by a factor or to a fixed size.

  Output `o` reads source coordinate `(o + 1/2) * n / out - 1/2` (PyTorch's
  `align_corners=False`); nearest reads `floor(o * n / out)`.
  """
  name: str
  method: str = 'nearest'
  factor: Pair | None = None
  size: Pair | None = None
  key: int = dataclasses.field(default=0, compare=False)  # id() of the layer (exact tiling)

  def axis(self, n, a):
    if n < 1:
      raise errors.GeometryError(f'{self.name}: input size {n} is empty')
    out = n * self.factor[a] if self.factor is not None else self.size[a]
    q = Fraction(n, out)  # input pixels per output pixel
    den = q.denominator
    if self.method == 'nearest':
      # floor(o*q) lies in [o*q - (den-1)/den, o*q].
      slack = Fraction(den - 1, den)
      return out, Field(size=1 + slack, jump=q, start=-slack)
    # Bilinear: floor(src) and floor(src)+1 where src = o*q + (q-1)/2, whose fractional
    # part is a multiple of 1/(2*den); the upper tap has zero weight when src is whole.
    src0 = (q - 1) / 2
    tick = Fraction(1, 2 * den)
    return out, Field(size=3 - 2 * tick, jump=q, start=src0 - 1 + tick)

  def tiling_refusal(self):
    return None if self.factor else f'{self.name}: resizing to a fixed size cannot be tiled'

  def grid_step(self, a):
    return 1 / _frac(self.factor[a]) if self.factor else Fraction(1)

  def mirror_padding(self, a):
    return ('replicate', 1, 1) if self.method == 'bilinear' else None  # clamps at the border

  def periodic(self, a):
    return self.method == 'nearest' and self.factor is not None  # bilinear clamps at the border


@dataclasses.dataclass(frozen=True)
class Global(Node):
  """Global pooling: one output that sees the whole input."""
  name: str = 'global_pool'

  def axis(self, n, a):
    if n < 1:
      raise errors.GeometryError(f'{self.name}: input size {n} is empty')
    return 1, Field(size=_frac(n), jump=_frac(n), start=Fraction(0))


@dataclasses.dataclass(frozen=True)
class Broadcast(_Weights, Node):
  """A global summary broadcast back over the input's grid (ASPP's image pooling): the output
  keeps the input's size, and every output position sees the whole input."""
  name: str = 'broadcast'
  out_channels: int | None = None
  n_params: int = 0

  def axis(self, n, a):
    if n < 1:
      raise errors.GeometryError(f'{self.name}: input size {n} is empty')
    # Output o sees [o - (n-1), o + n - 1]: all of the input for every o, centred on o
    # (so a Merge aligns it with pointwise branches).
    return n, Field(size=_frac(2 * n - 1), jump=Fraction(1), start=_frac(1 - n))


@dataclasses.dataclass(frozen=True)
class Multiple(Node):
  """Passes its input through, and accepts only sizes that are multiples of `multiple` (a net
  whose output is resized back by its stride, to the input's size only on such sizes)."""
  name: str
  multiple: int

  def axis(self, n, a):
    if n < 1 or n % self.multiple:
      raise errors.GeometryError(f'{self.name}: input size {n} is not a multiple of '
                                 f'{self.multiple}')
    return n, IDENTITY

  def tiling_refusal(self):
    return None

  def periodic(self, a):
    return True


@dataclasses.dataclass(frozen=True)
class Dense(Node):
  """Flatten + dense layer: takes exactly `size` and gives one output that sees it all."""
  name: str
  size: Pair
  out_channels: int | None = None
  n_params: int = 0

  def axis(self, n, a):
    if n != self.size[a]:
      raise errors.GeometryError(
          f'{self.name}: a flatten+dense layer built for {self.size[a]} '
          f'positions cannot take {n} (convolutionalize it to run at any size)')
    return 1, Field(size=_frac(n), jump=_frac(n), start=Fraction(0))

  def channels(self, c):
    return self.out_channels

  @property
  def params(self):
    return self.n_params


@dataclasses.dataclass(frozen=True)
class Chain(Node):
  """Nodes applied one after another."""
  name: str
  nodes: tuple[Node, ...]

  def axis(self, n, a):
    field = IDENTITY
    for node in self.nodes:
      n, layer_field = node.axis(n, a)
      field = field.then(layer_field)
    return n, field

  def back(self, first, last, n, a):
    sizes = [n]
    for node in self.nodes[:-1]:
      sizes.append(node.axis(sizes[-1], a)[0])
    for node, size in zip(reversed(self.nodes), reversed(sizes)):
      if first > last:
        break
      first, last = node.back(first, last, size, a)
    return first, last

  def channels(self, c):
    for node in self.nodes:
      c = node.channels(c)
    return c

  def tiling_refusal(self):
    return None  # a container tiles when its layers do

  def children(self):
    return [(node.name, node) for node in self.nodes]


def chain(name: str, *nodes: Node) -> Chain:
  """A `Chain`, flattening nested unnamed chains."""
  return Chain(name, tuple(nodes))


@dataclasses.dataclass(frozen=True)
class Merge(Node):
  """Branches applied to the same input and merged (skip connections).

  Every branch is aligned to branch `reference` by its field centres (the
  coordinate map of Long et al.'s crop layer): branch `b` is cropped by
  `offset_b = (centre_ref - centre_b) / jump` at the start, and to the
  reference's size. An input size is *misaligned* when an offset is not a
  whole number or a branch is too small to crop.

  `combine`: 'concat' (channels add up), 'add' (channels must match), or
  'crop' (the output is the one non-reference branch, cropped to the reference:
  used to crop a network's output to its input).
  """
  name: str
  branches: tuple[Node, ...]
  reference: int = 0
  combine: str = 'concat'

  def offsets(self, n: int, a: int) -> tuple[int, list[int], list[Field]]:
    """Reference output size, per-branch crop offsets, and per-branch fields."""
    results = [b.axis(n, a) for b in self.branches]
    sizes = [s for s, _ in results]
    fields = [f for _, f in results]
    ref_size, ref = sizes[self.reference], fields[self.reference]
    offsets = []
    for b, (size, field) in enumerate(zip(sizes, fields)):
      if field.jump != ref.jump:
        raise errors.GeometryError(
            f'{self.name}: branch {b} has stride {field.jump}, the reference '
            f'branch {ref.jump}; they cannot be merged')
      offset = (ref.centre - field.centre) / ref.jump
      if offset.denominator != 1 or offset < 0 or offset + ref_size > size:
        raise errors.GeometryError(
            f'{self.name}: input size {n} misaligns the branches (branch {b} has size {size} '
            f'and would need a crop offset of {offset} for a reference of size {ref_size})')
      offsets.append(int(offset))
    return ref_size, offsets, fields

  def align(self, size: Sequence[Any], outputs: Sequence[Any]) -> list[Any]:
    """The branches' NHWC `outputs` for input `size`, each cropped to align with the reference.

    With symbolic sizes (`jax.export`) the offsets are those of the smallest accepted
    size (they depend only on the branches' fields, the same for every size when
    the branches contain no global or fixed-size layers), and the crop takes the
    reference output's own (symbolic) size.
    """
    offsets = []
    for a in range(2):
      n = size[a] if isinstance(size[a], int) else self._some_accepted_size(a)
      offsets.append(self.offsets(n, a)[1])
    ref = outputs[self.reference].shape[1:3]
    return [out[:, offsets[0][b]:offsets[0][b] + ref[0], offsets[1][b]:offsets[1][b] + ref[1]]
            for b, out in enumerate(outputs)]

  def _some_accepted_size(self, a: int, limit: int = 4096) -> int:
    for n in range(1, limit):
      try:
        self.offsets(n, a)
        return n
      except errors.GeometryError:
        pass
    raise errors.GeometryError(f'{self.name}: no input size up to {limit} aligns the branches')

  def axis(self, n, a):
    ref_size, offsets, fields = self.offsets(n, a)
    jump = fields[self.reference].jump
    used = [(o, f) for b, (o, f) in enumerate(zip(offsets, fields))
            if self.combine != 'crop' or b != self.reference]
    first = min(f.start + jump * o for o, f in used)
    last = max(f.start + jump * o + f.size - 1 for o, f in used)
    return ref_size, Field(size=last - first + 1, jump=jump, start=first)

  def back(self, first, last, n, a):
    _, offsets, _ = self.offsets(n, a)
    spans = [branch.back(first + o, last + o, n, a)
             for b, (branch, o) in enumerate(zip(self.branches, offsets))
             if self.combine != 'crop' or b != self.reference]
    spans = [(lo, hi) for lo, hi in spans if lo <= hi]
    if not spans:
      return 1, 0
    return min(lo for lo, _ in spans), max(hi for _, hi in spans)

  def channels(self, c):
    cs = [b.channels(c) for b in self.branches]
    if self.combine == 'crop':
      return cs[1 - self.reference]
    if any(x is None for x in cs):
      return None
    if self.combine == 'add':
      if len(set(cs)) != 1:
        raise errors.GeometryError(f'{self.name}: cannot add branches with channels {cs}')
      return cs[0]
    return sum(cs)

  def tiling_refusal(self):
    return None  # a container tiles when its branches do (and its crops do not move)

  def children(self):
    return [(b.name or f'branch{i}', b) for i, b in enumerate(self.branches)]


# --------------------------------------------------------------------------
# The 2-D view.


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a per-layer table."""
  path: str
  shape: tuple[int, int, int | None]
  params: int
  field: tuple[Field, Field]


class Geometry:
  """The 2-D geometry of a model: what `of(model)` returns."""

  def __init__(self, node: Node, name: str, search_limit: int = 1 << 14):
    self.node = node
    self.name = name
    self.search_limit = search_limit

  def __repr__(self):
    return f'Geometry({self.name})'

  # -- sizes -------------------------------------------------------------
  def axis(self, n: int, a: int) -> tuple[int, Field]:
    """Output size and `Field` along axis `a` (0 = height, 1 = width) for input size `n`;
    raises `GeometryError` when the model cannot take `n` there."""
    return self.node.axis(int(n), a)

  def accepts(self, n: int, a: int) -> bool:
    """Whether the model takes input size `n` along axis `a`."""
    try:
      self.axis(n, a)
      return True
    except errors.GeometryError:
      return False

  def output_size(self, size: Sequence[int]) -> Pair:
    """Spatial output size `(H', W')` for input `(H, W)`; raises `ValueError` if invalid."""
    self.check(size)
    return tuple(self.axis(size[a], a)[0] for a in range(2))

  def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int | None]:
    """`(N, H', W', C')` for an NHWC input shape."""
    n, h, w, c = shape
    out_h, out_w = self.output_size((h, w))
    return (n, out_h, out_w, self.node.channels(c))

  def field(self, size: Sequence[int] | None = None) -> tuple[Field, Field]:
    """Per-axis field at input `size` (default: the minimum input size)."""
    size = self.min_input_size if size is None else size
    self.check(size)
    return tuple(self.axis(size[a], a)[1] for a in range(2))

  def span(self, size: Sequence[int], index: Pair) -> tuple[Pair, Pair]:
    """Exact input rows and columns `((first, last), (first, last))` that output `index` reads.

    Positions outside the image stand for padding. Exact also after
    up-sampling, where `field` gives the box covering every phase.
    """
    self.check(size)
    return tuple(self.node.back(index[a], index[a], int(size[a]), a) for a in range(2))

  def receptive_field_range(self, size: Sequence[int]) -> tuple[Pair, Pair]:
    """Per axis, the smallest and largest exact span over outputs (they differ by phase).

    Looks at up to 64 consecutive outputs around the middle of the output, enough
    to see every phase of the strides used here. Equals `receptive_field` for
    nets without up-sampling.
    """
    self.check(size)
    ranges = []
    for a in range(2):
      n = int(size[a])
      out = self.axis(n, a)[0]
      first = max(0, out // 2 - 32)
      lengths = [hi - lo + 1 for lo, hi in
                 (self.node.back(i, i, n, a) for i in range(first, min(out, first + 64)))]
      ranges.append((min(lengths), max(lengths)))
    return tuple(ranges)

  @property
  def receptive_field(self) -> tuple[Fraction, Fraction]:
    return tuple(f.size for f in self.field())

  @property
  def stride(self) -> tuple[Fraction, Fraction]:
    return tuple(f.jump for f in self.field())

  @property
  def offset(self) -> tuple[Fraction, Fraction]:
    """Centre of output (0, 0)'s field in input coordinates."""
    return tuple(f.centre for f in self.field())

  @property
  def padding(self) -> tuple[Fraction, Fraction]:
    """Effective padding (how far output (0, 0)'s field reaches before the image)."""
    return tuple(f.padding for f in self.field())

  @property
  def params(self) -> int:
    return self.node.params

  def valid_sizes(self, lo: int, hi: int, axis: int = 0) -> list[int]:
    """Input sizes in `[lo, hi]` the model accepts along `axis`."""
    return [n for n in range(max(lo, 1), hi + 1) if self.accepts(n, axis)]

  @property
  def min_input_size(self) -> Pair:
    return tuple(self.first_valid(1, +1, a) for a in range(2))

  def first_valid(self, n: int, step: int, a: int) -> int | None:
    """The first accepted size along axis `a` from `n` on, walking by `step` (+1 or -1); None
    when there is none before 1 or `search_limit`."""
    while 1 <= n <= self.search_limit:
      if self.accepts(n, a):
        return n
      n += step
    return None

  def nearest_valid_sizes(self, n: int, axis: int = 0) -> list[int]:
    """The closest accepted sizes below and above `n` (one or two values)."""
    found = {self.first_valid(n - 1, -1, axis), self.first_valid(n + 1, +1, axis)}
    return sorted(x for x in found if x is not None)

  def check(self, size: Sequence[int]) -> None:
    """Raises a `ValueError` naming the model, the size, the minimum and nearby valid sizes."""
    problems = []
    for a, axis_name in enumerate(('height', 'width')):
      n = int(size[a])
      try:
        self.axis(n, a)
      except errors.GeometryError as e:
        near = self.nearest_valid_sizes(n, a)
        problems.append(
            f'{axis_name} {n} is not accepted ({e}); minimum {axis_name} is '
            f'{self.first_valid(1, 1, a)}, nearest valid: {near}')
    if problems:
      raise errors.GeometryError(
          f'{self.name} cannot take an input of size {tuple(int(s) for s in size)}: '
          + '; '.join(problems))

  # -- per-layer table ---------------------------------------------------
  def rows(self, shape: Sequence[int]) -> list[Row]:
    """Per-layer rows (depth-first) for an `(H, W, C)` input, fields relative to the input."""
    self.check(shape[:2])
    rows: list[Row] = []
    _walk(self.node, '', (int(shape[0]), int(shape[1])), shape[2],
          (IDENTITY, IDENTITY), rows)
    return rows


def _walk(node: Node, prefix: str, size: Pair, c, field, rows: list[Row]):
  """Appends a row per leaf of `node` (and per merge) to `rows`; returns (size, c, field)."""
  path = f'{prefix}/{node.name}' if prefix else node.name
  if isinstance(node, Chain):
    for child in node.nodes:
      size, c, field = _walk(child, path, size, c, field, rows)
    return size, c, field
  if isinstance(node, Merge):
    for i, branch in enumerate(node.branches):
      _walk(branch, f'{path}[{i}]', size, c, field, rows)
  results = [node.axis(size[a], a) for a in range(2)]
  out_size = tuple(r[0] for r in results)
  field = tuple(field[a].then(results[a][1]) for a in range(2))
  out_c = node.channels(c)
  rows.append(Row(path, (*out_size, out_c), node.params if not node.children() else 0, field))
  return out_size, out_c, field


# --------------------------------------------------------------------------
# Models.


def of(model: Any) -> Geometry:
  """The geometry of a layer or model (anything with a `geometry` Node property)."""
  if isinstance(model, Geometry):
    return model
  node = model if isinstance(model, Node) else getattr(model, 'geometry', None)
  if node is None:
    raise TypeError(f'{type(model).__name__} does not report its geometry '
                    '(give it a `geometry` property returning a fcn_jax.geometry.Node)')
  return Geometry(node, name=getattr(model, 'name', None) or type(model).__name__)


def node_of(layer: Any, name: str | None = None) -> Node:
  """The geometry node of a layer; plain callables (activations) are pointwise."""
  node = getattr(layer, 'geometry', None)
  if node is None:  # activations, normalisation, dropout: pointwise
    from flax import nnx  # pylint: disable=g-import-not-at-top
    node = Pointwise(name=getattr(layer, '__name__', type(layer).__name__),
                     n_params=count_params(layer),
                     local=not isinstance(layer, (nnx.GroupNorm, nnx.LayerNorm)))
  return node.with_name(name) if name else node


def count_params(module: Any) -> int:
  """Number of `nnx.Param` entries of a module (0 for plain functions), also of abstract ones."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  if not isinstance(module, nnx.Module):
    return 0
  leaves = [v for _, v in nnx.iter_graph(module) if isinstance(v, nnx.Param)]
  return sum(math.prod(v.shape) for v in leaves)


def check(model: Any, shape: Sequence[int]) -> None:
  """Raises `ValueError` unless an NHWC `shape` is a valid input of `model`."""
  if len(shape) != 4:
    raise errors.GeometryError(
        f'{type(model).__name__} expects NHWC input (4 dimensions), got shape '
        f'{tuple(shape)}')
  if not all(isinstance(d, int) for d in shape[1:3]):
    return  # symbolic sizes (jax.export): checked by the exported function's shape constraints
  of(model).check(shape[1:3])


# --------------------------------------------------------------------------
# Empirical probe.


def probe(apply: Callable[[Any], Any], size: Pair, channels: int,
          out_indices: Sequence[Pair], samples: int = 4, seed: int = 0
          ) -> list[tuple[Pair, Pair] | None]:
  """Measures which input rows/columns reach each of some output pixels.

  For each output pixel in `out_indices`, takes the gradient of a random
  combination of its channels with respect to `samples` random inputs and
  returns the bounding box `((row_first, row_last), (col_first, col_last))` of
  the input positions where any gradient is non-zero (None if no input reaches
  the pixel). For nets with max-pooling or ReLU the measured box can be smaller
  than the algebraic field (the gradient flows only through maxima and active
  units); it can never be larger. One compilation for all pixels.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  key_x, key_w = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(key_x, (samples, size[0], size[1], channels), jnp.float32)
  index = np.asarray(out_indices, np.int32).reshape(-1, 2)

  @jax.jit
  def gradients(x):
    y, vjp = jax.vjp(apply, x)
    y4 = y[:, None, None, :] if y.ndim == 2 else y  # globally pooled (N, C)
    weights = jax.random.normal(key_w, (y4.shape[-1],), y4.dtype)

    def one(ij):
      cotangent = jnp.zeros(y4.shape, y4.dtype).at[:, ij[0], ij[1], :].set(weights)
      return vjp(cotangent.reshape(y.shape))[0]

    return jax.lax.map(one, jnp.asarray(index))

  hits = np.abs(np.asarray(gradients(x))).sum(axis=(1, 4)) > 0  # (K, H, W)
  boxes = []
  for hit in hits:
    rows, cols = np.nonzero(hit.any(axis=1))[0], np.nonzero(hit.any(axis=0))[0]
    boxes.append(None if rows.size == 0 else
                 ((int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))))
  return boxes


def iter_leaves(node: Node) -> Iterator[Node]:
  """The leaf nodes of a geometry tree, depth first."""
  kids = node.children()
  if not kids:
    yield node
  for _, child in kids:
    yield from iter_leaves(child)
