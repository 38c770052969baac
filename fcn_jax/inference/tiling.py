"""The algebra of exact tiling: for a model's geometry, where tiles start, how much context
(halo) each carries, which outputs it keeps, and the valid input region of every layer inside
a tile, so that the assembled output equals the whole-image one (`axis_tiling`, `plan`).
Models whose outputs cannot be assembled from tiles are refused with a `TilingError`.
"""

import dataclasses
import math
from fractions import Fraction

from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry


def _leaf_origin(node: geometry.Node, origin: int, a: int) -> int:
  """Absolute origin, on the node's output grid, of a tile whose input starts at `origin`."""
  if reason := node.tiling_refusal():
    raise errors.TilingError(reason)
  out = Fraction(origin) / node.grid_step(a)
  if out.denominator != 1:
    raise errors.TilingError(f'{node.name}: tile origin {origin} is not aligned to stride '
                             f'{node.grid_step(a)}')
  return int(out)


def plan(node: geometry.Node, n: int, tile: int, origin: int, a: int,
         extents: dict[int, list[int]]) -> tuple[int, int]:
  """Walks the geometry for one axis of one tile.

  `n` is the whole-image size at the node's input, `origin` the tile's absolute
  origin there and `tile` its size. Records, for every layer, its valid input
  positions `[lo, hi)` in tile coordinates (`extents[key] += [lo, hi]`) and
  returns the whole-image output size and the tile's origin on the output grid.
  """
  if isinstance(node, geometry.Chain):
    for child in node.nodes:
      n_out, origin_out = plan(child, n, tile, origin, a, extents)
      tile = child.axis(tile, a)[0]
      n, origin = n_out, origin_out
    return n, origin
  if isinstance(node, geometry.Merge):
    whole = node.offsets(n, a)[1]
    local = node.offsets(tile, a)[1]
    if whole != local:
      raise errors.TilingError(
          f'{node.name}: crop offsets depend on the input size ({whole} for the '
          f'image, {local} for a tile)')
    outs = [plan(b, n, tile, origin, a, extents) for b in node.branches]
    n_out, ref_origin = outs[node.reference]
    if node.combine == 'crop':
      return node.axis(n, a)[0], origin
    return node.axis(n, a)[0], ref_origin
  key = getattr(node, 'key', 0)
  if key:
    extents.setdefault(key, []).extend([-origin, n - origin])
    _check_mirror_sources(node, -origin, n - origin, tile, a)
  return node.axis(n, a)[0], _leaf_origin(node, origin, a)


def _check_mirror_sources(node: geometry.Node, lo: int, hi: int, tile: int, a: int):
  """A tile that holds positions outside the image at a reflect/replicate layer must also
  hold the in-image positions those are rebuilt from (the image rows `[lo, hi)` of a tile
  of `tile` rows at this layer)."""
  if (mirror := node.mirror_padding(a)) is None:
    return
  fill, pad_lo, pad_hi = mirror
  reach = (lambda outside, pad: min(outside, pad)) if fill == 'reflect' else (lambda *_: 0)
  inside_lo, inside_hi = max(lo, 0), min(hi, tile)
  if ((lo > 0 and pad_lo and not lo + reach(lo, pad_lo) < inside_hi) or
      (hi < tile and pad_hi and not hi - 1 - reach(tile - hi, pad_hi) >= inside_lo)):
    raise errors.TilingError(
        f'{node.name}: a tile of {tile} positions along axis {a} at this layer '
        f'does not hold the image positions its {fill} padding copies at the image '
        f'border; use a larger tile')


def alignment(node: geometry.Node, a: int) -> int:
  """The origin step that keeps every layer's grid aligned: lcm of the cumulative strides."""
  period = 1

  def walk(node, jump):
    nonlocal period
    if isinstance(node, geometry.Chain):
      for child in node.nodes:
        jump = walk(child, jump)
      return jump
    if isinstance(node, geometry.Merge):
      return [walk(b, jump) for b in node.branches][node.reference]
    jump = jump * node.grid_step(a)
    period = math.lcm(period, jump.numerator)
    return jump

  walk(node, Fraction(1))
  return period


def wraps(g: geometry.Geometry, size) -> bool:
  """Whether tiles of this model read the image cyclically (its layers pad circularly).

  Circular padding makes the whole-image run see the image as a torus: a layer's padding
  repeats its own input from the opposite border. A tile reproduces that exactly when it
  reads its halo around the image's borders (wrapped) and every layer keeps the wrapped
  image periodic: it pads circularly or not at all, and maps input size `m` to exactly
  `m / stride` (`Node.periodic`). Then every tile position holds what the whole-image run
  holds there, padding included, and no layer needs its border rebuilt. Returns False for
  a net without circular padding; raises a `TilingError` saying what breaks the
  periodicity for one whose layers do not all keep it at this image `size`.
  """
  if not any(getattr(leaf, 'fill', None) == 'circular' for leaf in geometry.iter_leaves(g.node)):
    return False
  for a, n in enumerate(size[:2]):
    if problem := _breaks_periodicity(g.node, n, a, alignment(g.node, a)):
      raise errors.TilingError(
          f'{g.name} pads circularly, which tiles exactly only when every layer keeps the '
          f'image periodic, but along axis {a} at size {n} {problem}')
  return True


def _breaks_periodicity(node: geometry.Node, n: int, a: int, multiple: int) -> str | None:
  """Why `node` does not map an input repeating with period `n` to an output repeating
  with its own size along axis `a` (None when it does); `multiple` is the image side that
  keeps every stride aligned, for the advice. Walks like `plan`."""
  if isinstance(node, geometry.Chain):
    for child in node.nodes:
      if problem := _breaks_periodicity(child, n, a, multiple):
        return problem
      n = child.axis(n, a)[0]
    return None
  if isinstance(node, geometry.Merge):
    for branch in node.branches:
      if problem := _breaks_periodicity(branch, n, a, multiple):
        return problem
    if any(node.offsets(n, a)[1]):
      return f'{node.name} crops its branches to align them'
    return None
  if not node.periodic(a):
    fill = getattr(node, 'fill', None)
    how = f'pads with {fill!r}' if fill else 'reads past its input\'s border'
    return (f'{node.name} {how}: a net that mixes circular padding with other borders can '
            f'only be run whole or blended (predict --blend)')
  out = node.axis(n, a)[0]
  if out != n / node.grid_step(a):
    return (f'{node.name} maps {n} positions to {out}, not {n}/{node.grid_step(a)}: use '
            f'an image whose sides are multiples of {multiple}')
  return None


def layer_keys(node: geometry.Node) -> list[int]:
  """Keys of the layers in the order `plan` visits them."""
  if children := node.children():
    return [k for _, child in children for k in layer_keys(child)]
  key = getattr(node, 'key', 0)
  return [key] if key else []


@dataclasses.dataclass(frozen=True)
class AxisTiling:
  """Tiles along one axis: window `size`, origins `k*step - halo`, `count` tiles.

  Tile k keeps outputs `[k*kept, (k+1)*kept)` of the whole-image output.
  """
  size: int
  step: int
  halo: int
  count: int
  kept: int
  out_size: int


def axis_tiling(g: geometry.Geometry, n: int, a: int, tile: int) -> AxisTiling:
  """Window size, step and halo for tiles of about `tile` input pixels along axis `a`."""
  for leaf in geometry.iter_leaves(g.node):
    if reason := leaf.tiling_refusal():
      raise errors.TilingError(f'{g.name}: {reason}')
  out_size, field = g.axis(n, a)
  jump = field.jump
  if jump.denominator != 1:
    raise errors.TilingError(f'{g.name}: fractional total stride {jump} cannot be tiled')
  jump = int(jump)
  period = math.lcm(alignment(g.node, a), jump)
  step = max(1, math.ceil(tile / period)) * period
  halo = math.ceil(max(Fraction(0), -field.start) / period) * period
  needed = math.ceil(step + halo - jump + field.start + field.size)
  kept = step // jump
  size = needed
  # The affine field is a lower bound: a tile can also lose outputs at its own edges
  # (a transposed conv's cropping, ceil-mode pools, up-sampling's edge taps), so grow
  # the halo and the window until an interior tile computes every output it keeps
  # from real context.
  while True:
    if size > needed + 4096:
      raise errors.TilingError(f'{g.name}: no exact tile size near {needed} along axis {a}')
    start_ok, end_ok = _keeps_exact(g.node, n, size, step, halo, kept, a)
    if not start_ok:
      halo, size = halo + period, size + period
    elif not (end_ok and g.accepts(size, a)):
      size += 1
    else:
      break
  return AxisTiling(size, step, halo, max(1, math.ceil(out_size / kept)), kept, out_size)


def _keeps_exact(node: geometry.Node, n: int, size: int, step: int, halo: int, kept: int,
                 a: int) -> tuple[bool, bool]:
  """Whether an interior tile (origin `step - halo`) computes its kept outputs exactly,
  judged separately at the tile's start and end.

  Kept outputs are exact when, at every layer, they read only positions that the
  tile holds: nothing from the tile's own padding or edge clamping.
  """
  try:
    _, origin_out = plan(node, max(n, 2 * step + size), size, step - halo, a, {})
    out_size = node.axis(size, a)[0]
  except errors.GeometryError:
    return True, False  # too small a window: grow it
  first = kept - origin_out
  last = first + kept - 1
  if first < 0:
    return False, True
  if last >= out_size:
    return True, False
  return _reads_inside(node, first, last, size, a)


def _reads_inside(node: geometry.Node, first: int, last: int, n: int,
                  a: int) -> tuple[bool, bool]:
  """Whether outputs `first..last` of `node` (input size `n`) read in-range positions only,
  at the start and at the end of the range."""
  if isinstance(node, geometry.Chain):
    sizes = [n]
    for child in node.nodes[:-1]:
      sizes.append(child.axis(sizes[-1], a)[0])
    ok = (True, True)
    for child, size in zip(reversed(node.nodes), reversed(sizes)):
      ok = tuple(x and y for x, y in zip(ok, _reads_inside(child, first, last, size, a)))
      first, last = child.back(first, last, size, a)
    return ok
  if isinstance(node, geometry.Merge):
    _, offsets, _ = node.offsets(n, a)
    oks = [_reads_inside(branch, first + o, last + o, n, a)
           for b, (branch, o) in enumerate(zip(node.branches, offsets))
           if node.combine != 'crop' or b != node.reference]
    return all(ok[0] for ok in oks), all(ok[1] for ok in oks)
  lo, hi = node.back(first, last, n, a)
  return first >= 0 and lo >= 0, last < node.axis(n, a)[0] and hi <= n - 1


def check_tile(model: nnx.Module, tile: int) -> None:
  """Refuses a tile smaller than the context (halo) each tile must carry: such tiles would
  mostly recompute context."""
  g = geometry.of(model)
  for a in range(2):
    n = g.first_valid(max(4 * tile, 1), +1, a)
    halo = axis_tiling(g, n, a, tile).halo if n else 0
    if tile < halo:
      raise errors.TilingError(f'tile {tile} is smaller than the {halo}-pixel halo of context that '
                               f'{g.name} needs around each tile; use a tile of at least {halo} '
                               f'(better {4 * halo})')
