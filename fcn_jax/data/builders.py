"""tensorflow-datasets builders for the offline datasets: fcn_shapes, fcn_digits, fcn_cells.

Generated locally from `fcn_jax.data.synthetic` (and scikit-learn's digits):
no download. Every example is a pure function of the builder config's seed,
the split and its index, so the same config gives the same bytes. Each builder
has a `tiny` config for tests and smoke runs, e.g. `fcn_shapes/tiny`.

    import fcn_jax.data.builders  # registers the builders with tfds
    ds = tfds.load('fcn_shapes', split='train', data_dir=...)
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from fcn_jax.data import synthetic

SHAPES_TEST_SIZES = ((64, 64), (128, 128), (256, 256), (320, 640), (1024, 1024))


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, sum(map(ord, split)), index])


def test_images(config: 'SyntheticConfig', size: tuple[int, int], split: str = 'test') -> int:
  """How many images of `size` a config's test split (or size-matched validation split) holds."""
  pixels = config.validation_pixels if split == 'validation' else config.test_pixels
  if pixels:
    return -(-pixels // (size[0] * size[1]))
  return config.test_per_size


def split_sizes(config: 'SyntheticConfig', split: str) -> list[tuple[int, int]]:
  """The (H, W) of every image of a synthetic split, in order."""
  if split == 'test' or (split == 'validation' and config.validation_pixels):
    return [size for size in config.test_sizes for _ in range(test_images(config, size, split))]
  count = config.num_train if split == 'train' else config.num_validation
  rng = _rng(config.seed, split + '/sizes', 0)
  return [tuple(int(v) for v in rng.integers(config.min_side, config.max_side + 1, size=2))
          for _ in range(count)]


def _objects_feature(class_names):
  return tfds.features.Sequence({
      'centre': tfds.features.Tensor(shape=(2,), dtype=np.float32),  # (row, col) in pixels
      'box': tfds.features.BBoxFeature(),  # (ymin, xmin, ymax, xmax), normalised
      'label': tfds.features.ClassLabel(names=class_names),
  })


def _objects(example):
  objects = example['objects']
  return {'centre': objects['centre'],
          'box': [tfds.features.BBox(*b) for b in np.clip(objects['box'], 0, 1)],
          'label': objects['label']}


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  """Split sizes and image sizes of a synthetic dataset."""
  num_train: int = 400
  num_validation: int = 40
  min_side: int = 96  # train/validation image sides are uniform in [min_side, max_side]
  max_side: int = 512
  test_sizes: tuple[tuple[int, int], ...] = SHAPES_TEST_SIZES  # (H, W) of the test images
  test_per_size: int = 4  # test images per size, unless test_pixels is set
  test_pixels: int = 0  # if set: ceil(test_pixels / (H*W)) test images of each size (equal area)
  # If set: the validation split is laid out like the test split (its sizes, equal area)
  # with ceil(validation_pixels / (H*W)) images of each size, instead of random sizes.
  validation_pixels: int = 0
  seed: int = 0


class _SyntheticBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Train images of random sizes, a test split at fixed sizes, and a validation split of
  random sizes or (`validation_pixels`) laid out like the test split."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}

  def _example(self, rng: np.random.Generator, height: int, width: int) -> dict:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples('train'), 'validation': self._generate_examples('validation'),
            'test': self._generate_examples('test')}

  def _generate_examples(self, split: str):
    for index, (height, width) in enumerate(split_sizes(self.builder_config, split)):
      yield f'{split}_{index:06d}', self._example(
          _rng(self.builder_config.seed, split, index), height, width)


class FcnShapes(_SyntheticBuilder):
  """Circles, squares and triangles on textured backgrounds; mask, centres and boxes.

  Every image is a window onto one stationary scene process (`synthetic.shapes_example`):
  object density and size do not depend on the image size. The test split holds the same
  area, 2 Mpixel, at each size (512 images of 64x64 ... 2 of 1024x1024), about 2,000
  positive circle cells of patch_net's 8-pixel grid per size; the validation split (for
  choosing settings and stopping) 1 Mpixel at each of the same sizes, from other seeds.
  """

  VERSION = tfds.core.Version('2.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'First version.',
      '2.0.0': 'Stationary scenes: object radius and density no longer depend on the image '
               'size (1.0.0 capped radii at min(H, W) / 3 and drew at least one object); the '
               'test split holds 2 Mpixel per size instead of 4 images. Numbers measured on '
               '1.0.0 are not comparable.',
      '2.1.0': 'The validation split is laid out like the test split: 1 Mpixel at each test '
               'size (256 images of 64x64 ... 1 of 1024x1024) instead of 40 images of random '
               'sizes, so that settings are chosen on the sizes they are reported at. Train and '
               'test are unchanged from 2.0.0.',
  }

  BUILDER_CONFIGS = [
      SyntheticConfig(name='default', description='400 train images of 96-512 px a side; '
                      'validation: 1 Mpixel, test: 2 Mpixel each of 64x64 ... 1024x1024.',
                      test_pixels=2 * 1024 ** 2, validation_pixels=1024 ** 2),
      SyntheticConfig(name='tiny', description='For tests.', num_train=6, num_validation=2,
                      min_side=64, max_side=96, test_sizes=((64, 64), (48, 80)),
                      test_per_size=1),
  ]

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description='Synthetic shapes (classes: ' + ', '.join(synthetic.SHAPE_CLASSES) + ').',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'mask': tfds.features.Image(shape=(None, None, 1)),  # class per pixel
            'objects': _objects_feature(synthetic.SHAPE_CLASSES),
        }))

  def _example(self, rng, height, width):
    example = synthetic.shapes_example(rng, height, width)
    return {'image': example['image'], 'mask': example['mask'], 'objects': _objects(example)}


class FcnCells(_SyntheticBuilder):
  """Touching fluorescent cells: grey image, foreground mask, instance ids."""

  BUILDER_CONFIGS = [
      SyntheticConfig(name='default', description='200 train, 20 validation images of '
                      '128-384 px a side; test: 4 images each of 252x252 and 508x508.',
                      num_train=200, num_validation=20, min_side=128, max_side=384,
                      test_sizes=((252, 252), (508, 508))),
      SyntheticConfig(name='tiny', description='For tests.', num_train=4, num_validation=2,
                      min_side=64, max_side=96, test_sizes=((92, 92),), test_per_size=1),
  ]

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description='Synthetic fluorescence microscopy of touching cells.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 1)),
            'mask': tfds.features.Image(shape=(None, None, 1)),  # 1 = cell
            'instances': tfds.features.Image(shape=(None, None, 1), dtype=np.uint16),  # 0 = none
        }))

  def _example(self, rng, height, width):
    return synthetic.cells_example(rng, height, width)


@dataclasses.dataclass
class DigitsConfig(tfds.core.BuilderConfig):
  """'single' digits (28x28, a label) or 'canvas' images of many digits (a label map)."""
  kind: str = 'single'
  num_train: int = 0  # canvases (single digits use every digit of the split)
  num_test: int = 0
  min_side: int = 96
  max_side: int = 320
  seed: int = 0


class FcnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits (UCI, 1,797 8x8 images), upscaled.

  `single`: 28x28x1 images of one digit and its label (train 1,438 / test 359,
  a fixed seeded split). `canvas`: images of many scattered digits from the same
  split, with a label map (0 background, 1 + digit where the ink is) and boxes.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  BUILDER_CONFIGS = [
      DigitsConfig(name='single', description='One digit per 28x28 image.'),
      DigitsConfig(name='canvas', description='300 train / 60 test canvases, 96-320 px a side.',
                   kind='canvas', num_train=300, num_test=60),
      DigitsConfig(name='canvas_tiny', description='For tests.', kind='canvas', num_train=4,
                   num_test=2, min_side=48, max_side=96),
  ]

  def _info(self):
    if self.builder_config.kind == 'single':
      features = {'image': tfds.features.Image(shape=(28, 28, 1)),
                  'label': tfds.features.ClassLabel(num_classes=10)}
    else:
      names = ['background'] + [f'digit_{d}' for d in range(10)]
      features = {'image': tfds.features.Image(shape=(None, None, 1)),
                  'mask': tfds.features.Image(shape=(None, None, 1)),  # 0 or 1 + digit
                  'objects': _objects_feature(names)}
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples('train'), 'test': self._generate_examples('test')}

  def _generate_examples(self, split: str):
    c = self.builder_config
    digits, labels = synthetic.load_digits()
    index = synthetic.digit_split(labels, split)
    if c.kind == 'single':
      for i in index:
        yield f'{split}_{i:05d}', {'image': synthetic.single_digit(digits[i]),
                                   'label': labels[i]}
      return
    count = c.num_train if split == 'train' else c.num_test
    for k in range(count):
      rng = _rng(c.seed, split, k)
      height, width = (int(v) for v in rng.integers(c.min_side, c.max_side + 1, size=2))
      example = synthetic.digit_canvas(rng, height, width, digits[index], labels[index])
      example['objects']['label'] = example['objects']['label'] + 1  # class 0 is background
      yield f'{split}_{k:05d}', {'image': example['image'], 'mask': example['mask'],
                                 'objects': _objects(example)}


def shapes_test_statistics(config: SyntheticConfig | None = None) -> list[dict]:
  """Per test size of fcn_shapes: images, objects per megapixel and median radius (px) of the
  objects whose centre lies in the image, from the same generator calls as the test split."""
  config = config or FcnShapes.BUILDER_CONFIGS[0]
  rows, index = [], 0
  for size in config.test_sizes:
    images, objects, radii = test_images(config, size), 0, []
    for _ in range(images):
      found = synthetic.shapes_example(_rng(config.seed, 'test', index), *size)['objects']
      index += 1
      inside = ((found['centre'] >= 0) & (found['centre'] < np.asarray(size))).all(1)
      objects += int(inside.sum())
      radii += found['radius'][inside].tolist()
    rows.append({'size': size, 'images': images,
                 'objects_per_mpixel': objects / (images * size[0] * size[1] / 1e6),
                 'median_radius': float(np.median(radii)) if radii else float('nan')})
  return rows
