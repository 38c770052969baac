"""A trained model as a serialized `jax.export` artifact with symbolic batch, height and
width, runnable without the Python model code.
"""

import jax
import numpy as np
from flax import nnx

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import models


def size_lattice(model: nnx.Module, a: int, probe: int = 6) -> tuple[int, int]:
  """`(first, period)`: the sizes the model accepts along axis `a` are `first + period*k`.

  Raises `ValueError` when the accepted sizes are not such a progression.
  """
  g = geometry.of(model)
  first = g.min_input_size[a]
  if first is None:
    raise errors.GeometryError(f'{g.name} accepts no input size along axis {a}')
  second = g.first_valid(first + 1, +1, a)
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
