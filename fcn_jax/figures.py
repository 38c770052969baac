"""Matplotlib figures made and saved without pyplot: no backend is chosen, nothing global changes.

`subplots` builds a `matplotlib.figure.Figure` directly (the object-oriented API), so importing
fcn_jax or drawing a figure neither selects a plotting backend nor registers the figure with
pyplot; `save` writes it as a PNG whole or not at all (`files.write_atomically`).
"""

import sys

from matplotlib.figure import Figure

from fcn_jax import files


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **subplots_kwargs):
  """`(figure, axes)` like `pyplot.subplots`, without pyplot."""
  fig = Figure(figsize=figsize)
  return fig, fig.subplots(nrows, ncols, **subplots_kwargs)


def save(fig, path: str, **savefig_kwargs) -> str:
  """Saves `fig` (PNG by `path`'s extension) whole or not at all; returns `path`.

  A figure a caller made through pyplot is closed afterwards, as pyplot would keep it alive.
  """
  try:
    return files.write_atomically(path, lambda tmp: fig.savefig(tmp, **savefig_kwargs))
  finally:
    pyplot = sys.modules.get('matplotlib.pyplot')
    if pyplot is not None:
      pyplot.close(fig)
