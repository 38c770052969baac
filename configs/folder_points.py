r"""The patch heat-map net on your own images, from a file of object centres.

  python -m fcn_jax.data.folder example --out=/tmp/my_data
  python -m fcn_jax.train --config=configs/folder_points.py \
      --config.data.images=/tmp/my_data/images --config.data.points=/tmp/my_data/points.csv \
      --workdir=/tmp/my_points_run

patch_net (configs/default.py) learns, per 8x8 output cell, whether an object centre lies
in it. `data.points` is a CSV with a header `image,row,col` (one row per object) or a JSON
`{"image": [[row, col], ...]}` (fcn_jax.data.folder). Args: `runlocal`.
"""

from configs import common
from configs import default


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  config = default.get_config('runlocal' if args.runlocal else None)
  common.folder_data(config, 'heatmap')
  config.data.heatmap = 'centres'  # 1 where an object centre falls in the cell
  config.data.patch_size = 64
  config.model.in_channels = config.data.get_ref('channels')
  config.batch_size = 4 if args.runlocal else 16
  config.num_train_steps = 3 if args.runlocal else 1500
  config.eval_sizes = ((64, 64), (192, 192))
  return config
