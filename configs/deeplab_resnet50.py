r"""torchvision's DeepLabv3-ResNet-50 (ResNet-50 at output stride 8, ASPP head).

  python -m fcn_jax.train --config=configs/deeplab_resnet50.py --workdir=/tmp/deeplab
  python -m fcn_jax.train --config=configs/deeplab_resnet50.py \
      --config.model.pretrained=deeplabv3_resnet50.safetensors --config.data.name=voc ...
  python -m fcn_jax.shapes --config=configs/deeplab_resnet50.py:full

ASPP's image-pooling branch sees the whole image, so this net is not exactly tileable
(`predict --tile` refuses it) and its output on a large image is not the same function as
on a training patch; `--config.model.aspp_pooling=False` drops the branch and makes it
tileable. Otherwise as `configs/fcn_resnet50.py` (same args, data and weights).
"""

from configs import fcn_resnet50


def get_config(arg=None):
  return fcn_resnet50.resnet_config(arg, 'aspp')
