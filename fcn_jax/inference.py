"""Inference: a trained model from its workdir, and whole-image prediction at any valid size.

`load_trained(workdir)` rebuilds the model from the run's `config.json` and
restores the latest (or a given) orbax checkpoint; `predict(model, image)`
checks the size against the model's geometry first (a clear `ValueError`, never
an XLA shape error) and runs one jitted forward pass (one compilation per
distinct input shape).

`predict_tiled(model, image, tile)` gives the same output from tiles of one
fixed shape (one compilation), and `predict_to_file` streams a memory-mapped
image larger than RAM into a `.npy` output, resumably (see `predict_tiled`).
"""

import dataclasses
import functools
import json
import math
import os
from fractions import Fraction
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from fcn_jax import checkpoints
from fcn_jax import errors
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax import layers
from fcn_jax import models
from fcn_jax import optim


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a training run wrote to `workdir/config.json`."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise errors.InputError(
        f'{workdir!r} holds no config.json: give the --workdir of a training run')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_trained(workdir: str, step: int | None = None) -> tuple[nnx.Module, Any]:
  """The model of a training run with the parameters of checkpoint `step` (default: latest)."""
  config = load_config(workdir)
  model = layers.set_lowering(models.get_model(config.model, rngs=nnx.Rngs(0)),
                              config.get('lowering', 'auto'))
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
  steps = manager.all_steps() if os.path.isdir(directory) else []
  if not steps:
    raise errors.InputError(f'no checkpoint in {directory}: train first (python -m fcn_jax.train '
                            f'--workdir={workdir} ...)')
  if step is not None and step not in steps:
    raise errors.InputError(f'no checkpoint for step {step} in {directory}; steps there: {steps}')
  # The run saved {'model', 'optimizer'}: restore both, keep the model. Without a given step,
  # a damaged newest checkpoint falls back to the previous one (with a warning).
  _, restored = checkpoints.restore(
      manager, {'model': nnx.state(model), 'optimizer': _optimizer_template(model, config)}, step)
  nnx.update(model, restored['model'])
  model.eval()
  return model, config


def _optimizer_template(model: nnx.Module, config: ml_collections.ConfigDict):
  """The optimiser state's structure, needed to read a checkpoint that holds it."""
  return nnx.state(nnx.Optimizer(model, optim.make_optimizer(config), wrt=nnx.Param))


@nnx.jit
def _forward(model, images):
  return model(images)


def predict(model: nnx.Module, image: np.ndarray) -> np.ndarray:
  """Logits for one `(H, W, C)` image (or an `(N, H, W, C)` batch), as NumPy: the whole image
  in one call (for images too large for memory, `predict_tiled`). The model runs in inference
  mode (dropout off, batch norm on running statistics) and is left in the mode it was in."""
  model = models.inference_view(model)
  batch = image[None] if image.ndim == 3 else image
  geometry.check(model, batch.shape)
  out = np.asarray(jax.device_get(_forward(model, np.asarray(batch, np.float32))))
  return out[0] if image.ndim == 3 else out


# --------------------------------------------------------------------------
# Exact tiled inference.



def _refusal(node: geometry.Node) -> str | None:
  """Why the outputs of a layer cannot be assembled from tiles, or None if they can."""
  if isinstance(node, geometry.Resize) and node.factor is None:
    return f'{node.name}: resizing to a fixed size cannot be tiled'
  if isinstance(node, geometry.Pointwise) and not node.local:
    return f'{node.name} mixes statistics over the whole image: no exact tiling'
  if not isinstance(node, (geometry.Window, geometry.Transpose, geometry.Resize,
                           geometry.Pointwise, geometry.Chain, geometry.Merge)):
    return f'{type(node).__name__} {node.name!r} sees the whole input: no exact tiling'
  return None


def _leaf_origin(node: geometry.Node, n: int, origin: int, a: int) -> int:
  """Absolute origin, on the node's output grid, of a tile whose input starts at `origin`."""
  if _refusal(node):
    raise errors.TilingError(_refusal(node))
  if isinstance(node, geometry.Window):
    step = node.stride[a]
    if origin % step:
      raise errors.TilingError(f'{node.name}: tile origin {origin} is not aligned to stride {step}')
    return origin // step
  if isinstance(node, geometry.Transpose):
    return origin * node.stride[a]
  if isinstance(node, geometry.Resize):
    return origin * node.factor[a]
  assert isinstance(node, geometry.Pointwise), node  # _refusal lets nothing else through
  return origin


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
  return node.axis(n, a)[0], _leaf_origin(node, n, origin, a)


def _check_mirror_sources(node: geometry.Node, lo: int, hi: int, tile: int, a: int):
  """A tile that holds positions outside the image at a reflect/replicate layer must also
  hold the in-image positions those are rebuilt from (the image rows `[lo, hi)` of a tile
  of `tile` rows at this layer)."""
  if isinstance(node, geometry.Window) and node.fill in ('reflect', 'replicate'):
    fill, (pad_lo, pad_hi) = node.fill, node.padding[a]
  elif isinstance(node, geometry.Resize) and node.method == 'bilinear':
    fill, pad_lo, pad_hi = 'replicate', 1, 1  # bilinear clamps at the border
  else:
    return
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
    if isinstance(node, geometry.Window):
      jump = jump * node.stride[a]
    elif isinstance(node, geometry.Transpose):
      jump = jump / node.stride[a]
    elif isinstance(node, geometry.Resize) and node.factor:
      jump = jump / node.factor[a]
    period = math.lcm(period, jump.numerator)
    return jump

  walk(node, Fraction(1))
  return period


def layer_keys(node: geometry.Node) -> list[int]:
  """Keys of the layers in the order `plan` visits them."""
  if isinstance(node, (geometry.Chain, geometry.Merge)):
    children = node.nodes if isinstance(node, geometry.Chain) else node.branches
    return [k for child in children for k in layer_keys(child)]
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
    if _refusal(leaf):
      raise errors.TilingError(f'{g.name}: {_refusal(leaf)}')
  out_size, field = g._axis(n, a)  # pylint: disable=protected-access
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
    elif not (end_ok and g._ok(size, a)):  # pylint: disable=protected-access
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
    n = g._first_valid(max(4 * tile, 1), +1, a)  # pylint: disable=protected-access
    halo = axis_tiling(g, n, a, tile).halo if n else 0
    if tile < halo:
      raise errors.TilingError(f'tile {tile} is smaller than the {halo}-pixel halo of context that '
                               f'{g.name} needs around each tile; use a tile of at least {halo} '
                               f'(better {4 * halo})')


_TRACES = {'tiled': 0}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _tiled_forward(graphdef, paths, state, windows, extents):
  # A plain jit of the split model (split once per call of `_tiles`): called once per
  # batch of tiles, it skips nnx.jit's per-call walk over the model. `paths[k]` is the NNX
  # path of the layer whose valid input region is `extents[:, k]`; each is given its own on
  # this merged copy of the model, which lives only in this trace.
  _TRACES['tiled'] += 1  # runs once per compilation
  model = nnx.merge(graphdef, state)
  modules = dict(nnx.iter_graph(model))
  for k, path in enumerate(paths):
    modules[path].tile_extents = extents[:, k]
  return model(windows)


def compilations() -> int:
  """How many times the tiled forward pass has been compiled in this process."""
  return _TRACES['tiled']


def _tiles(model: nnx.Module, image, tile: int | tuple[int, int], batch: int, skip=frozenset()):
  """Yields `(tile_indices, keep_slices, logits)` per batch of tiles not in `skip`.

  `image` is any `(H, W, C)` array-like (a NumPy array or a memory map); uint8
  pixels are scaled to [0, 1]. `tile` is a square tile's side or `(rows, cols)`.
  Only one batch of windows is in memory at a time. The model runs in inference mode.
  """
  model = models.inference_view(model)
  g = geometry.of(model)
  h, w = image.shape[:2]
  g.check((h, w))
  axes = [axis_tiling(g, n, a, t) for a, (n, t) in
          enumerate(zip((h, w), tile if isinstance(tile, tuple) else (tile, tile)))]
  keys = layer_keys(g.node)
  tiles = [(i, j) for i in range(axes[0].count) for j in range(axes[1].count)
           if (i, j) not in skip]
  scale = 1 / 255 if image.dtype == np.uint8 else None
  # The geometry names its layers by object (`key`); the jitted pass finds them by NNX path.
  path_of = {id(module): path for path, module in nnx.iter_graph(model)}
  paths = tuple(path_of[key] for key in keys)
  graphdef, state = nnx.split(model)
  for first in range(0, len(tiles), batch):
    chunk = tiles[first:first + batch]
    windows = np.zeros((batch, axes[0].size, axes[1].size, image.shape[2]), np.float32)
    extents = np.zeros((batch, len(keys), 4), np.int32)
    origins = []
    for b, tile_index in enumerate(chunk + [chunk[-1]] * (batch - len(chunk))):
      starts = [k * ax.step - ax.halo for k, ax in zip(tile_index, axes)]
      # A tile may lie wholly past the image (outputs of a net that pads beyond it).
      src = [slice(min(max(s, 0), n), max(min(s + ax.size, n), min(max(s, 0), n)))
             for s, ax, n in zip(starts, axes, (h, w))]
      dst = [slice(sl.start - s, sl.stop - s) for sl, s in zip(src, starts)]
      window = windows[b, dst[0], dst[1]]
      window[...] = image[src[0], src[1]]
      if scale:
        window *= scale
      if not np.isfinite(window).all():
        raise errors.InputError(f'the image holds NaN or infinite pixels in rows {src[0].start}-'
                                f'{src[0].stop - 1}, columns {src[1].start}-{src[1].stop - 1}')
      out_origin = []
      for a, (n, s, ax) in enumerate(zip((h, w), starts, axes)):
        per_layer: dict[int, list[int]] = {}
        out_origin.append(plan(g.node, n, ax.size, s, a, per_layer)[1])
        for row, key in enumerate(keys):
          extents[b, row, 2 * a:2 * a + 2] = per_layer[key][:2]
      origins.append(out_origin)
    logits = np.asarray(jax.device_get(_tiled_forward(graphdef, paths, state, windows, extents)))
    keeps, pieces = [], []
    for b, tile_index in enumerate(chunk):
      keep = [slice(k * ax.kept, min((k + 1) * ax.kept, ax.out_size))
              for k, ax in zip(tile_index, axes)]
      local = [slice(sl.start - o, sl.stop - o) for sl, o in zip(keep, origins[b])]
      keeps.append(keep)
      pieces.append(logits[b, local[0], local[1]])
    yield chunk, keeps, pieces


def output_shape(model: nnx.Module, image_shape) -> tuple[int, int, int]:
  """`(H', W', C')` of the model's output for an `(H, W, C)` image."""
  _, out_h, out_w, channels = geometry.of(model).output_shape((1, *image_shape))
  return out_h, out_w, channels


def predict_tiled(model: nnx.Module, image: np.ndarray, tile: int | tuple[int, int] = 256,
                  batch: int = 8) -> np.ndarray:
  """The whole-image output of `model` on an `(H, W, C)` image, computed tile by tile.

  `tile` is about the side of a tile in input pixels, or `(rows, cols)`; each is
  rounded up to the model's alignment.

  Equal to `predict(model, image)` up to float rounding: every tile carries a
  halo of real image context covering the receptive field of the outputs it
  keeps, tile origins are aligned to every layer's stride, and inside each tile
  every layer rebuilds the positions outside the image as the whole-image run
  pads them (zeros, reflection or replication), so padding happens only where
  the whole-image run pads. All tiles have one shape and batches are padded to
  `batch` tiles: one compilation per model, tile size and batch size, whatever
  the number or size of the images.
  """
  out = np.zeros(output_shape(model, image.shape), np.float32)
  for _, keeps, pieces in _tiles(model, image, tile, batch):
    for keep, piece in zip(keeps, pieces):
      out[keep[0], keep[1]] = piece
  return out


class _WithChannelAxis:
  """An `(H, W)` array-like seen as `(H, W, 1)` (slicing reads only what is asked)."""

  def __init__(self, array):
    self.array, self.dtype = array, array.dtype
    self.shape = (*array.shape, 1)

  def __getitem__(self, index):
    return np.asarray(self.array[index[:2]])[..., None]


def open_image(path: str):
  """A read-only `(H, W, C)` view of a `.npy`, uncompressed TIFF (memory maps) or `.zarr` array.

  Slices are read from disk on demand; nothing is loaded whole (except compressed
  TIFFs, which tifffile cannot map).
  """
  path = path.rstrip('/')
  try:
    if path.endswith('.npy'):
      array = np.load(path, mmap_mode='r')
    elif path.endswith(('.tif', '.tiff')):
      import tifffile  # pylint: disable=g-import-not-at-top
      try:
        array = tifffile.memmap(path, mode='r')
      except ValueError:  # compressed or tiled TIFF: read it (needs RAM)
        array = tifffile.imread(path)
    elif path.endswith('.zarr'):
      import zarr  # pylint: disable=g-import-not-at-top
      array = zarr.open_array(path, mode='r')
    else:
      raise errors.InputError(f'{path!r}: out-of-core input must be .npy, .tif(f) or .zarr')
  except (OSError, TypeError) as e:  # not an array file of that kind
    raise errors.InputError(f'cannot read {path!r} as an image array: {e}') from None
  if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
    raise errors.InputError(f'{path!r}: unsupported dtype {array.dtype} (use uint8, or float in '
                            '[0, 1])')
  if array.ndim == 2:
    return array[..., None] if isinstance(array, np.ndarray) else _WithChannelAxis(array)
  if array.ndim != 3:
    raise errors.InputError(f'{path!r}: expected an HxW or HxWxC image, got shape {array.shape}')
  return array


def _create_output(path: str, shape, chunks):
  """A writable float32 array on disk: `.npy` memory map or `.zarr` (chunked like the tiles)."""
  if path.endswith('.zarr'):
    import zarr  # pylint: disable=g-import-not-at-top
    return zarr.create_array(store=path, shape=shape, chunks=chunks, dtype='float32',
                             overwrite=True)
  return np.lib.format.open_memmap(path, mode='w+', dtype=np.float32, shape=shape)


def _open_output(path: str):
  if path.endswith('.zarr'):
    import zarr  # pylint: disable=g-import-not-at-top
    return zarr.open_array(path, mode='r+')
  return np.load(path, mmap_mode='r+')


def predict_to_file(model: nnx.Module, image, output: str, tile: int = 256, batch: int = 8,
                    progress: bool = True) -> str:
  """Tiled prediction of a (possibly larger than memory) image into a `.npy` or `.zarr` output.

  The output is written tile by tile into `<stem>.partial.<ext>` and renamed to
  `output` when complete, so a file under the final name is always whole.
  Finished tiles are recorded in `<output>.done.json` after each batch: running
  again after an interruption computes only the missing tiles. Memory: one batch
  of windows plus the pages of the arrays being touched.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  output = output.rstrip('/')
  stem, ext = os.path.splitext(output)
  if ext not in ('.npy', '.zarr'):
    raise errors.InputError(f'output {output!r} must end in .npy or .zarr')
  partial, done_path = f'{stem}.partial{ext}', output + '.done.json'
  shape = output_shape(model, image.shape)
  g = geometry.of(model)
  axes = [axis_tiling(g, n, a, tile) for a, n in enumerate(image.shape[:2])]
  done: set[tuple[int, int]] = set()
  if os.path.exists(partial) and os.path.exists(done_path):
    with open(done_path) as f:
      done = {tuple(t) for t in json.load(f)}
    out = _open_output(partial)
    if tuple(out.shape) != shape:
      raise errors.InputError(
          f'{partial} has shape {out.shape}, not {shape}: delete it to start over')
  else:
    out = _create_output(partial, shape, (axes[0].kept, axes[1].kept, shape[2]))
  total = axes[0].count * axes[1].count
  with tqdm.tqdm(total=total, initial=len(done), unit='tile', disable=not progress) as bar:
    for chunk, keeps, pieces in _tiles(model, image, tile, batch, skip=frozenset(done)):
      for keep, piece in zip(keeps, pieces):
        out[keep[0], keep[1]] = piece
      if isinstance(out, np.memmap):
        out.flush()
      done.update(chunk)
      files.write_json(done_path, sorted(done))
      bar.update(len(chunk))
  del out
  os.replace(partial, output)
  os.remove(done_path)
  return output


# --------------------------------------------------------------------------
# Export.


def size_lattice(model: nnx.Module, a: int, probe: int = 6) -> tuple[int, int]:
  """`(first, period)`: the sizes the model accepts along axis `a` are `first + period*k`.

  Raises `ValueError` when the accepted sizes are not such a progression.
  """
  g = geometry.of(model)
  first = g.min_input_size[a]
  if first is None:
    raise errors.GeometryError(f'{g.name} accepts no input size along axis {a}')
  second = g._first_valid(first + 1, +1, a)  # pylint: disable=protected-access
  if second is None:
    return first, 0
  period = second - first
  hi = first + probe * period
  if g.valid_sizes(first, hi, a) != list(range(first, hi + 1, period)):
    raise errors.GeometryError(f'{g.name}: the accepted sizes along axis {a} are not of the form '
                               f'{first} + {period}k, so no one symbolic shape describes them')
  return first, period


def export(model: nnx.Module, in_channels: int) -> bytes:
  """A serialized `jax.export` artifact of the model with symbolic batch, height and width.

  The parameters are baked in: `jax.export.deserialize(data).call(images)` runs
  the model on `(N, H, W, C)` float32 images of any accepted size without the
  Python model code. Heights and widths are `first + period*k` from the model's
  geometry (`size_lattice`: every size >= the minimum for conv/pool nets,
  572 + 16k for the paper U-Net), so the artifact itself rejects other sizes.
  Nets whose forward pass needs concrete sizes (max-unpooling, ceil-mode
  pooling, resizing to a fixed size) are refused with a `UserError`. The artifact runs
  `model` in inference mode; `model` itself is left in the mode it was in.
  """
  model = models.inference_view(model)
  graphdef, state = nnx.split(model)

  def forward(images):
    return nnx.merge(graphdef, state)(images)

  dims, constraints = [], []
  for a, var in enumerate(('h', 'w')):
    first, period = size_lattice(model, a)
    if period == 0:
      dims.append(str(first))
    elif period == 1:
      dims.append(var)
      constraints.append(f'{var} >= {first}')
    else:
      dims.append(f'{period}*{var} + {first - period}')  # dimension variables are >= 1
  shape = jax.export.symbolic_shape(f'b, {dims[0]}, {dims[1]}', constraints=constraints)
  try:
    exported = jax.export.export(jax.jit(forward))(
        jax.ShapeDtypeStruct((*shape, in_channels), np.float32))
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise errors.UserError(
        f'{geometry.of(model).name} cannot be exported with symbolic sizes '
        f'({type(e).__name__}: {str(e).splitlines()[0][:200]}); max-unpooling, '
        'ceil-mode pooling and fixed-size resizing need concrete sizes') from None
  return exported.serialize()


def load_exported(data: bytes):
  """The callable of a serialized export: `fn(images) -> logits`."""
  return jax.export.deserialize(bytearray(data)).call
