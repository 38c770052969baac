r"""Per-layer shape and receptive-field table of a config's model, at any input size.

  python -m fcn_jax.shapes --config=configs/default.py --size=64,64 --size=640,320
  python -m fcn_jax.shapes --catalog   # one line per model config (the README's table)

For every requested input size: each layer's output shape, parameters,
receptive field, effective stride and the centre of output (0, 0)'s field (all
in input pixels, per axis when they differ), then the totals, the minimum input
size, and a confirmation that `jax.eval_shape` of the real model agrees. The
model is built abstractly (`nnx.eval_shape`), so even a full-width VGG costs
no memory.
"""

import importlib
from fractions import Fraction
from typing import Sequence

import jax
import jax.numpy as jnp
from absl import app
from absl import flags
from flax import nnx
from ml_collections import config_flags

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import models

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so tests can import this)."""
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/<name>.py).',
                                  lock_config=True)
  flags.DEFINE_bool('catalog', False, 'Print the model table of the catalogued configs.')
  flags.DEFINE_multi_string('size', None, "Input size H,W (repeatable). Default: the config's "
                            'eval_sizes.')


def fmt(x: Fraction | int | None) -> str:
  if x is None:
    return '?'
  x = Fraction(x)
  return str(x.numerator) if x.denominator == 1 else f'{x.numerator}/{x.denominator}'


def fmt_pair(pair: Sequence) -> str:
  a, b = (fmt(v) for v in pair)
  return a if a == b else f'{a}x{b}'


def fmt_shape(shape: Sequence) -> str:
  return '×'.join(fmt(v) for v in shape)


def fmt_rf(g: geometry.Geometry, size: Sequence[int]) -> str:
  """Exact receptive field ('188–204' when it depends on the output's phase)."""
  parts = [str(lo) if lo == hi else f'{lo}–{hi}' for lo, hi in g.receptive_field_range(size)]
  return parts[0] if parts[0] == parts[1] else f'{parts[0]} × {parts[1]}'


def table(model: nnx.Module, size: Sequence[int], channels: int) -> str:
  """The per-layer table for an `(H, W)` input with `channels` channels, as markdown."""
  g = geometry.of(model)
  rows = g.rows((*size, channels))
  lines = ['| layer | output (H, W, C) | params | receptive field | stride | centre of (0, 0) |',
           '|---|---|---:|---:|---:|---:|']
  previous = None
  for row in rows:
    if row.params == 0 and previous is not None and (row.shape, row.field) == previous:
      continue  # activations: nothing changes
    previous = (row.shape, row.field)
    lines.append(f'| {row.path} | {fmt_shape(row.shape)} | {row.params:,} | '
                 f'{fmt_pair([f.size for f in row.field])} | '
                 f'{fmt_pair([f.jump for f in row.field])} | '
                 f'{fmt_pair([f.centre for f in row.field])} |')
  out = g.output_shape((1, *size, channels))
  field = g.field(size)
  lines.append(f'| **total** | {fmt_shape(out[1:])} | {g.params:,} | '
               f'{fmt_pair([f.size for f in field])} | {fmt_pair([f.jump for f in field])} | '
               f'{fmt_pair([f.centre for f in field])} |')
  return '\n'.join(lines)


def summary(model: nnx.Module, size: Sequence[int], channels: int) -> str:
  """Table plus totals, checked against `jax.eval_shape` of the model."""
  g = geometry.of(model)
  out = g.output_shape((1, *size, channels))
  graphdef, state = nnx.split(model)
  traced = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                          jax.ShapeDtypeStruct((1, *size, channels), jnp.float32)).shape
  pooled = len(traced) == 2  # (N, K) after global pooling: one 1x1 output per image
  if (traced[1:3] if not pooled else (1, 1)) != out[1:3]:
    raise AssertionError(f'geometry says {out}, jax.eval_shape says {traced}')
  field = g.field(size)
  described = f'{traced[1]} per image' if pooled else 'x'.join(str(v) for v in traced[1:])
  lines = [f'## {g.name}: input {size[0]}x{size[1]}x{channels} -> output {described}', '',
           table(model, size, channels), '',
           f'- receptive field {fmt_rf(g, size)} (exact; the box over all output phases is '
           f'{fmt_pair([f.size for f in field])}), effective stride '
           f'{fmt_pair([f.jump for f in field])}, effective padding '
           f'{fmt_pair([f.padding for f in field])}, minimum input '
           f'{"x".join(str(v) for v in g.min_input_size)}; '
           f'parameters {g.params:,}; output shape confirmed by jax.eval_shape.']
  notes = getattr(model, 'shape_notes', None)
  if notes is not None:
    lines += [f'- {line}' for line in notes(size)]
  return '\n'.join(lines)


# The configs `--catalog` summarises (module, arg): the README's model table.
CATALOG = (('default', None), ('default', 'reference'), ('gap_digits', None), ('nin_digits', None),
           ('dense_to_fcn_digits', None), ('encoder_decoder_shapes', None),
           ('encoder_decoder_shapes', 'upsample=unpool'), ('encoder_decoder_shapes', 'gated'),
           ('unet_cells', None), ('unet_cells', 'paper'), ('fcn8s_shapes', 'variant=fcn32s'),
           ('fcn8s_shapes', 'variant=fcn16s'), ('fcn8s_shapes', None),
           ('fcn8s_shapes', 'paper'), ('fcn_resnet50', 'full'),
           ('fcn_resnet50', 'full,depth=18,output_stride=32'), ('deeplab_resnet50', 'full'))


def catalog() -> str:
  """One row per catalogued config: params, receptive field, stride, minimum input, example."""
  lines = ['| config | model | params | receptive field | total stride | min input | example |',
           '|---|---|---:|---:|---:|---:|---|']
  for module, arg in CATALOG:
    config = importlib.import_module(f'configs.{module}').get_config(arg)
    model = nnx.eval_shape(lambda c=config: models.get_model(c.model, rngs=nnx.Rngs(0)))
    g = geometry.of(model)
    size = tuple(config.eval_sizes[-1])
    out = g.output_shape((1, *size, config.model.in_channels))
    field = g.field(size)
    pooled = any(isinstance(leaf, (geometry.Global, geometry.Dense))
                 for leaf in geometry.iter_leaves(g.node))
    rf = 'whole input' if pooled else fmt_rf(g, size)
    stride = '-' if pooled else fmt_pair([f.jump for f in field])
    name = f'`{module}.py{":" + arg if arg else ""}`'
    lines.append(f'| {name} | {g.name} | {g.params:,} | {rf} | {stride} | '
                 f'{"×".join(map(str, g.min_input_size))} | {"×".join(map(str, size))} → '
                 f'{"×".join(map(str, out[1:3]))}×{out[3]} |')
  return '\n'.join(lines)


def parse_size(text: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.split(','))
  except ValueError:
    raise app.UsageError(f'--size must look like H,W (e.g. 640,320), got {text!r}') from None
  return h, w


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.catalog:
    print(catalog())
    return 0
  config = FLAGS.config
  if config is None:
    raise app.UsageError('give --config=configs/<name>.py (or --catalog)')
  model = nnx.eval_shape(lambda: models.get_model(config.model, rngs=nnx.Rngs(0)))
  sizes = [parse_size(s) for s in FLAGS.size] if FLAGS.size else [
      tuple(s) for s in config.eval_sizes]
  failed = 0
  for size in sizes:
    try:
      print(summary(model, size, config.model.in_channels), end='\n\n')
    except errors.UserError as e:
      failed += 1
      print(f'## {geometry.of(model).name}: input {size[0]}x{size[1]}\n\n{e}\n')
  return 1 if failed else 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
