"""fcn_jax.files: files are written whole or not at all."""

import json
import os

import pytest

from fcn_jax import figures
from fcn_jax import files


def test_write_text_and_json(tmp_path):
  path = str(tmp_path / 'results.md')
  assert files.write_text(path, 'hello\n') == path
  assert open(path).read() == 'hello\n'
  files.write_json(str(tmp_path / 'done.json'), [[0, 1]])
  assert json.load(open(tmp_path / 'done.json')) == [[0, 1]]
  assert sorted(os.listdir(tmp_path)) == ['done.json', 'results.md']


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
  path = str(tmp_path / 'config.json')
  files.write_text(path, 'old')

  def half_written(tmp):
    with open(tmp, 'w') as f:
      f.write('partial')
    raise OSError(28, 'No space left on device')

  with pytest.raises(OSError):
    files.write_atomically(path, half_written)
  assert open(path).read() == 'old'
  assert os.listdir(tmp_path) == ['config.json']


def test_figures_are_made_and_saved_without_pyplot(tmp_path):
  fig, ax = figures.subplots(1, 2, figsize=(2, 1))
  ax[1].plot([0, 1])
  path = figures.save(fig, str(tmp_path / 'plot.png'), dpi=40)
  assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
  assert os.listdir(tmp_path) == ['plot.png']


def test_a_pyplot_figure_is_closed_once_saved(tmp_path):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots()
  ax.plot([0, 1])
  figures.save(fig, str(tmp_path / 'plot.png'), dpi=40)
  assert not plt.fignum_exists(fig.number)
