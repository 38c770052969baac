r"""torchvision's FCN-ResNet-50 (ResNet-50 at output stride 8, FCN head) for segmentation.

  python -m fcn_jax.train --config=configs/fcn_resnet50.py --workdir=/tmp/fcn_r50
  python -m fcn_jax.train --config=configs/fcn_resnet50.py \
      --config.model.pretrained=resnet50.safetensors --workdir=/tmp/fcn_r50   # ImageNet backbone
  python -m fcn_jax.shapes --config=configs/fcn_resnet50.py:full    # torchvision's widths

Offline it trains on `fcn_shapes` (4 classes) with a slim net (`base_width` 16); `full` is
torchvision's (base width 64, 21 VOC classes: `--config.data.name=voc` online, or a folder
dataset, `configs/folder_segmentation.py`'s data fields). Pretrained weights: a torchvision
state dict of `resnet50` (the backbone) or `fcn_resnet50` (backbone and head), as
`.safetensors`, `.npz` or `.pth` (`fcn_jax.weights`); `model.input_norm='imagenet'` is
torchvision's input normalisation, which its weights expect. Batch norm in eval mode is
exactly tileable (`predict --tile`).

Args: `runlocal` (a tiny ResNet-18, a few steps), `full` (torchvision's widths), `depth` (18, 34,
50, 101), `output_stride` (8, 16, 32).
"""

import ml_collections
from ml_collections import config_dict

from configs import common
from configs import default


def resnet_config(arg, head: str):
  """The config of a ResNet segmentation net (`head` 'fcn' or 'aspp')."""
  args = common.parse_arg(arg, runlocal=False, full=False, depth=50, output_stride=8)
  config = default.get_config('runlocal' if args.runlocal else None)
  config.model = ml_collections.ConfigDict()
  config.model.name = 'resnet'
  config.model.depth = 18 if args.runlocal else args.depth  # 18 | 34 | 50 | 101
  config.model.output_stride = args.output_stride  # 32, or 16 / 8 by dilating layers 4 / 3-4
  config.model.head = head  # 'fcn' (FCNHead) | 'aspp' (DeepLabv3)
  config.model.in_channels = 3
  config.model.num_classes = 21 if args.full else 4  # VOC | background + 3 shapes
  config.model.base_width = 64 if args.full else (4 if args.runlocal else 16)
  config.model.input_norm = 'imagenet'  # torchvision's mean/std, as its weights expect
  config.model.pretrained = config_dict.placeholder(str)  # torchvision state dict (a path)
  if head == 'aspp':
    config.model.aspp_rates = (12, 24, 36) if args.full else (2, 4, 6)  # at output stride 8
    config.model.aspp_width = 256 if args.full else (8 if args.runlocal else 64)
    config.model.aspp_pooling = True  # the image-pooling branch: no exact tiling with it

  config.data.task = 'segmentation'
  config.data.patch_size = 64 if args.runlocal else 96  # a multiple of the output stride
  config.batch_size = 2 if args.runlocal else 8
  config.num_train_steps = 3 if args.runlocal else 1000
  config.eval_sizes = ((512, 512),) if args.full else ((64, 64), (96, 128), (320, 640))
  return config


def get_config(arg=None):
  return resnet_config(arg, 'fcn')
