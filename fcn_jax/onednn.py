"""oneDNN's convolutions inside XLA programs on the CPU, through XLA's FFI.

XLA:CPU's convolution gradients are its slow part: the input and weight gradients of a 3x3
conv run about 1.7-2.4x slower than oneDNN's, which PyTorch uses. `onednn_conv.cc` (beside
this file) wraps oneDNN's forward, input-gradient and weight-gradient convolutions as XLA FFI
handlers on NHWC/HWIO float32 memory, so they run inside the jitted step with no host
copies; `conv` is a `jax.custom_vjp` over the three. What it changed, measured against XLA
and PyTorch: `benchmarks/README.md`, "oneDNN inside the jitted step" and "CPU strategy".

The extension is compiled from that source with the machine's C++ compiler ($CXX, else g++)
against oneDNN from the PyPI wheels `onednn-cpu-gomp` and `onednn-devel-cpu-gomp` (pinned in
requirements.txt) and jaxlib's FFI headers, into a cache folder ($FCN_JAX_CACHE, else
~/.cache/fcn_jax), once per source, jaxlib and oneDNN version: by `setup.sh`
(`python -m fcn_jax.onednn build`), or on first use. Where it cannot be built or loaded
(no compiler, no oneDNN wheel), `available()` says why in one logged line and is False, and
`fcn_jax.lowering` uses its XLA path: the same numbers up to float rounding.

Threads: oneDNN runs on GNU OpenMP, whose default team is every core this process may use.
"""

import ctypes
import functools
import hashlib
import importlib.metadata
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = pathlib.Path(__file__).with_name('onednn_conv.cc')
TARGETS = {'forward': 'FcnOnednnConvForward', 'input_grad': 'FcnOnednnConvInputGrad',
           'weight_grad': 'FcnOnednnConvWeightGrad'}
Pair = tuple[int, int]


class Unavailable(Exception):
  """The extension cannot be built or loaded here (the message says why, in one line)."""


def _wheel_file(distribution: str, suffix: str) -> pathlib.Path:
  try:
    files = importlib.metadata.distribution(distribution).files or []
  except importlib.metadata.PackageNotFoundError:
    raise Unavailable(f'the {distribution} wheel is not installed '
                      '(pip install -r requirements.txt)') from None
  for f in files:
    if str(f).endswith(suffix):
      return pathlib.Path(f.locate()).resolve()
  raise Unavailable(f'{distribution} has no {suffix}')


def _compiler() -> str:
  name = os.environ.get('CXX', 'g++')
  path = shutil.which(name)
  if path is None:
    raise Unavailable(f'no C++ compiler ({name}) on PATH')
  return path


def library_path() -> pathlib.Path:
  """Where the extension built for this source, compiler, jaxlib and oneDNN lives."""
  dnnl = _wheel_file('onednn-cpu-gomp', 'libdnnl.so.3')
  header = _wheel_file('onednn-devel-cpu-gomp', 'oneapi/dnnl/dnnl.hpp')
  compiler = _compiler()
  version = subprocess.run([compiler, '--version'], capture_output=True, text=True).stdout
  digest = hashlib.sha256()
  for part in (SOURCE.read_bytes(), version.encode(), jax.ffi.include_dir().encode(),
               importlib.metadata.version('jaxlib').encode(), str(dnnl).encode(),
               str(header).encode()):
    digest.update(part)
  cache = pathlib.Path(os.environ.get('FCN_JAX_CACHE', pathlib.Path.home() / '.cache/fcn_jax'))
  return cache / 'onednn' / f'libfcn_onednn_{digest.hexdigest()[:16]}.so'


def build(force: bool = False) -> pathlib.Path:
  """Compiles the extension into the cache unless it is there (or `force`); its path.

  Raises Unavailable when there is no compiler or oneDNN wheel, or the compiler fails.
  """
  target = library_path()
  if target.exists() and not force:
    return target
  dnnl = _wheel_file('onednn-cpu-gomp', 'libdnnl.so.3')
  include = _wheel_file('onednn-devel-cpu-gomp', 'oneapi/dnnl/dnnl.hpp').parents[2]
  target.parent.mkdir(parents=True, exist_ok=True)
  logging.info('fcn_jax: building the oneDNN convolutions into %s (once)', target)
  with tempfile.NamedTemporaryFile(dir=target.parent, suffix='.so', delete=False) as partial:
    pass
  command = [_compiler(), '-O2', '-std=c++17', '-shared', '-fPIC', '-w',
             f'-I{jax.ffi.include_dir()}', f'-I{include}', str(SOURCE),
             str(dnnl), f'-Wl,-rpath,{dnnl.parent}', '-o', partial.name]
  result = subprocess.run(command, capture_output=True, text=True)
  if result.returncode != 0:
    os.unlink(partial.name)
    first = next((l for l in result.stderr.splitlines() if 'error' in l), result.stderr[:200])
    raise Unavailable(f'compiling {SOURCE.name} failed: {first.strip()}')
  os.replace(partial.name, target)  # atomic: concurrent builders leave one whole file
  return target


@functools.cache
def _load() -> ctypes.CDLL | None:
  """Builds (if needed), loads and registers the extension once per process; None, said in
  one logged line, where it cannot be."""
  try:
    if sys.platform != 'linux':
      raise Unavailable(f'built for Linux only, not {sys.platform}')
    library = ctypes.cdll.LoadLibrary(str(build()))
  except (Unavailable, OSError) as e:
    logging.warning("fcn_jax: oneDNN convolutions unavailable (%s); using XLA's", e)
    return None
  for name, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(f'fcn_onednn_conv_{name}',
                                jax.ffi.pycapsule(getattr(library, symbol)), platform='cpu')
  return library


def available() -> bool:
  """Whether the oneDNN convolutions can run in this process (builds them on first call)."""
  return _load() is not None


def supports(x: jax.Array, kernel: jax.Array, padding: Sequence[Pair]) -> bool:
  """Whether `conv` takes these operands: float32, NHWC/HWIO, concrete shapes, no negative
  padding."""
  return (x.dtype == jnp.float32 and kernel.dtype == jnp.float32 and x.ndim == 4
          and all(isinstance(n, int) for n in x.shape)
          and min(v for pair in padding for v in pair) >= 0)


def _settings(stride, padding, dilation, groups):
  (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
  return dict(stride_h=np.int64(sh), stride_w=np.int64(sw), pad_top=np.int64(pt),
              pad_bottom=np.int64(pb), pad_left=np.int64(pl), pad_right=np.int64(pr),
              dilation_h=np.int64(dh), dilation_w=np.int64(dw), groups=np.int64(groups))


def _call(direction, shape, a, b, settings):
  return jax.ffi.ffi_call(f'fcn_onednn_conv_{direction}',
                          jax.ShapeDtypeStruct(shape, jnp.float32),
                          vmap_method='sequential')(a, b, **settings)


def _out_size(n, k, s, d, pads):
  return (n + sum(pads) - d * (k - 1) - 1) // s + 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv(x: jax.Array, kernel: jax.Array, stride: Pair, padding: tuple[Pair, Pair],
         dilation: Pair = (1, 1), groups: int = 1) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, stride, padding, rhs_dilation=dilation,
  feature_group_count=groups)` for NHWC `x` and HWIO `kernel`, by oneDNN, with oneDNN's
  gradients. Needs `available()` and `supports(x, kernel, padding)`."""
  n, h, w, _ = x.shape
  kh, kw, _, c_out = kernel.shape
  shape = (n, _out_size(h, kh, stride[0], dilation[0], padding[0]),
           _out_size(w, kw, stride[1], dilation[1], padding[1]), c_out)
  return _call('forward', shape, x, kernel, _settings(stride, padding, dilation, groups))


def _conv_fwd(x, kernel, stride, padding, dilation, groups):
  return conv(x, kernel, stride, padding, dilation, groups), (x, kernel)


def _conv_bwd(stride, padding, dilation, groups, residuals, g):
  x, kernel = residuals
  settings = _settings(stride, padding, dilation, groups)
  return (_call('input_grad', x.shape, g, kernel, settings),
          _call('weight_grad', kernel.shape, x, g, settings))


conv.defvjp(_conv_fwd, _conv_bwd)


def implementation(x_shape, kernel_shape, stride=(1, 1), padding=((0, 0), (0, 0)),
                           dilation=(1, 1), groups=1, direction='forward') -> str:
  """The name of the kernel oneDNN chose for a convolution (e.g. 'brg_conv_fwd:avx2'), for the
  benchmarks' notes; '' when the extension is unavailable."""
  library = _load()
  if library is None:
    return ''
  n, h, w, c = x_shape
  kh, kw, _, o = kernel_shape
  oh = _out_size(h, kh, stride[0], dilation[0], padding[0])
  ow = _out_size(w, kw, stride[1], dilation[1], padding[1])
  settings = [n, h, w, c, o, kh, kw, oh, ow, *stride, *padding[0], *padding[1], *dilation,
              groups, ('forward', 'input_grad', 'weight_grad').index(direction)]
  function = library.fcn_onednn_impl
  function.restype = ctypes.c_char_p
  return function((ctypes.c_int64 * len(settings))(*settings)).decode()


def main(argv: Sequence[str]) -> int:
  """`python -m fcn_jax.onednn build`: compile the extension now (setup.sh does); prints its
  path, or why it cannot be built, in one line (exit status 1)."""
  if argv[1:] != ['build']:
    print('usage: python -m fcn_jax.onednn build', file=sys.stderr)
    return 2
  try:
    print(build())
  except Unavailable as e:
    print(f"fcn_jax: oneDNN convolutions unavailable ({e}); fcn_jax will use XLA's",
          file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
