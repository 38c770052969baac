r"""Default (the main job): the patch heat-map net trained on 64x64 patches of fcn_shapes.

  python -m fcn_jax.train --config=configs/default.py --workdir=/tmp/fcn_default
  python -m fcn_jax.train --config=configs/default.py:runlocal --workdir=/tmp/smoke  # seconds
  python -m fcn_jax.shapes --config=configs/default.py:reference --size=64,64 --size=640,320

patch_net learns a heat map of circles: each 8x8 output cell predicts the fraction
of its pixels that belong to a circle. It is trained on 64x64 patches (8x8 outputs)
and evaluated on whole test images from 64x64 to 1024x1024 (and 320x640 -> 40x80).

Args: `runlocal` (tiny dataset and a few steps, for smoke tests), `reference` (the textbook
widths 8/16/32 and 3x3 kernels: 64x64x3 -> 8x8x1 with 6,373 parameters).
"""

import ml_collections
from ml_collections import config_dict

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False, reference=False)
  config = ml_collections.ConfigDict()
  config.seed = 0  # model init and data order; same seed + config -> same numbers

  config.model = ml_collections.ConfigDict()
  config.model.name = 'patch_net'  # a name from fcn_jax.models.MODELS
  config.model.in_channels = 3  # image channels
  # Channels of the stride-2 conv blocks (each halves H, W), the widths of the 1x1-conv
  # per-pixel classifier (last = outputs) and the conv kernel size (odd: symmetric 'same').
  # `reference` is the textbook net: 64x64x3 -> 32x32x8 -> 16x16x16 -> 8x8x32 -> 10 -> 1.
  config.model.features = (8, 16, 32) if args.reference else (16, 32, 64)
  config.model.head = (10, 1) if args.reference else (32, 1)
  config.model.kernel_size = 3 if args.reference else 5
  config.model.downsample = 'stride'  # 'stride' (stride-2 convs) | 'maxpool' | 'avgpool'
  config.model.padding = 'same'  # 'same' (symmetric d*(k-1)/2) | 'valid'
  config.model.padding_mode = 'zeros'  # 'zeros' | 'reflect' | 'replicate' | 'circular'
  config.model.activation = 'relu'  # a name from fcn_jax.layers.ACTIVATIONS
  config.model.norm = 'none'  # after each conv: 'none' | 'batch' | 'group' (models/common.py)

  config.data = ml_collections.ConfigDict()
  config.data.name = 'fcn_shapes/tiny' if args.runlocal else 'fcn_shapes'  # tfds name
  config.data.data_dir = config_dict.placeholder(str)  # tfds data_dir (None: tfds default)
  config.data.task = 'heatmap'  # 'heatmap' | 'classification' | 'segmentation'
  config.data.patch_size = 64  # training crops (pixels a side)
  config.data.heatmap = 'fraction'  # cell target: 'fraction' of target pixels | 'centres'
  config.data.target_class = 1  # mask class of the heat map (1 = circle)
  config.data.small_images = 'reject'  # images smaller than the patch: 'reject' | 'pad'
  config.data.augment = ml_collections.ConfigDict()
  config.data.augment.flip = True  # random left-right flips
  config.data.augment.vflip = True  # random up-down flips
  config.data.augment.rot90 = True  # random quarter turns
  config.data.augment.colour = 0.1  # brightness/contrast jitter strength (0 = off)
  config.data.shuffle_buffer = 256  # examples in the shuffle buffer
  config.data.train_split = 'train'  # tfds split to train on
  # Whole images evaluated: `validation_split` every `eval_every` steps and at the end (what
  # sweeps and any choice of a setting read), `eval_split` once at the end (the reported
  # numbers, results.md). None: no validation evaluation (a dataset without one).
  config.data.validation_split = 'validation'
  config.data.eval_split = 'test'
  config.data.weight_map = None  # U-Net border weights {w0, sigma} (segmentation), or None

  config.batch_size = 4 if args.runlocal else 32  # global batch (split over devices/processes)
  config.num_train_steps = 3 if args.runlocal else 4000  # steps (experiments/learning_curve)
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adam'  # 'sgd' | 'adam' | 'adamw'
  config.optimizer.learning_rate = 3e-3  # peak learning rate
  config.optimizer.momentum = 0.9  # sgd only
  config.optimizer.weight_decay = 0.0  # adamw (decoupled) or sgd (added to the gradient)
  config.optimizer.schedule = 'cosine'  # 'constant' | 'cosine' | 'step'
  config.optimizer.warmup_steps = 1 if args.runlocal else 100  # linear warm-up steps
  config.optimizer.decay_boundaries = (0.6, 0.85)  # 'step': fractions of training to decay at
  config.optimizer.decay_factor = 0.1  # 'step': learning-rate factor at each boundary
  config.optimizer.grad_clip_norm = 1.0  # global-norm gradient clipping (0 = off)
  config.compute_dtype = 'float32'  # 'float32' | 'bfloat16' (training forward/backward)
  # How convolutions are lowered (fcn_jax.lowering): 'auto' runs them by oneDNN on the CPU
  # backend (the CPU rewrites where the extension is unavailable) and by XLA elsewhere; 'xla'
  # XLA's / cuDNN's own kernels, 'cpu' the rewrites, 'onednn' oneDNN.
  config.lowering = 'auto'
  config.loss = ml_collections.ConfigDict()
  config.loss.class_weights = config_dict.placeholder(tuple)  # segmentation: per-class weights

  config.log_every = 1 if args.runlocal else 50  # steps between logged training metrics
  config.eval_every = 0  # steps between validation evaluations (0 = only at the end)
  # Stop once `patience` validation evaluations in a row have not raised `metric` (mean over
  # the sizes; '' = the task's headline) by more than `min_delta` (fcn_jax/early_stopping.py).
  config.early_stopping = ml_collections.ConfigDict()
  config.early_stopping.patience = 0  # evaluations without a rise before stopping (0 = off)
  config.early_stopping.metric = ''  # e.g. 'mean_iou'; '' = F1 / pixel accuracy / accuracy
  config.early_stopping.min_delta = 0.0  # the smallest rise that counts
  config.checkpoint_every = 2 if args.runlocal else 500  # steps between checkpoints
  config.keep_checkpoints = 3  # checkpoints kept (older ones are deleted)
  config.max_eval_images = 2 if args.runlocal else 0  # images evaluated (0 = the whole split)
  config.debug_nans = False  # jax_debug_nans: stop at the first NaN-producing op (slow)

  # Input sizes (H, W) at which `fcn_jax.shapes` reports the model's output.
  config.eval_sizes = ((64, 64), (128, 128), (320, 640), (1024, 1024))
  return config
