r"""Folder datasets: train on a directory of your own images, with no dataset code to write.

  python -m fcn_jax.data.folder example --out=/tmp/my_data    # a small example folder
  python -m fcn_jax.data.folder check --config=configs/folder_segmentation.py \
      --config.data.images=/tmp/my_data/images --config.data.masks=/tmp/my_data/masks
  python -m fcn_jax.train --config=configs/folder_segmentation.py \
      --config.data.images=/tmp/my_data/images --config.data.masks=/tmp/my_data/masks \
      --workdir=/tmp/my_run

A folder dataset is `config.data.name = 'folder'` with the fields below. It becomes a
tensorflow-datasets dataset (`FcnFolder`, prepared into `data.data_dir` like any other, so
the pipeline stays tf.data); its prepared copy is named by a fingerprint of these settings
and of the files' names, sizes and modification times, so editing a file prepares it again
(old copies stay in `<data_dir>/fcn_folder/`, delete them at will).

Layouts (`data.task`):
* segmentation, and heat maps of a mask class (`heatmap='fraction'`): `data.images` and
  `data.masks`, matched by stem (`a.jpg` <-> `a.png`; with `data.image_suffix='_img.jpg'`
  and `data.mask_suffix='_mask.png'`: `a_img.jpg` <-> `a_mask.png`). `data.mask_format`:
  * `'index'`: each pixel's value is its class (grey PNGs, 16-bit PNGs, and palette PNGs,
    whose palette *indices* are the classes, as VOC's are); `data.ignore_index` (255) marks
    unlabelled pixels; `data.reduce_zero_label` makes 0 unlabelled and k class k-1
    (ADE20K's convention); every other value must be < `data.num_classes`;
  * `'colour'`: RGB masks; `data.colours[k]` is the (r, g, b) of class k and
    `data.ignore_colour` (or None) marks unlabelled pixels;
  * `'binary'`: 0 = background, and 1 or 255 = foreground (2 classes).
* heat maps of object centres (`heatmap='centres'`, the patch task of the seeds):
  `data.points`, a CSV with a header `image,row,col` (one row per object; `image` is the
  file's name or stem; pixels, row 0 at the top) or a JSON `{"image": [[row, col], ...]}`;
  an image without points holds no object. Masks are optional then.
* classification: `data.images` holds one folder per class (the folder names, sorted, are
  the class names unless `data.class_names` orders them).

Images: PNG, JPEG, BMP, GIF, TIFF of any size; grey, RGB or RGBA (alpha dropped, said),
8- or 16-bit. `data.channels` (3 or 1) is what the model sees: grey is repeated to RGB, RGB
turned to grey (luma). 16-bit images are scaled by the largest value over the folder's
16-bit images (relative intensities are kept), so that 0..max becomes 0..255.

Splits: `data.split_files` (`{'train': FILE, 'validation': FILE, 'test': FILE}`, each
a text file of names or stems, one per line), or a seeded random split of
`data.validation_fraction` and `data.test_fraction` of the images (per class for
classification; `data.split_seed`). The splits are named `train`, `validation`, `test`.

Every problem of a folder is found in one pass (`check`): images without masks and masks
without images (listed), a mask whose size differs from its image, an unknown colour, a
class index out of range, unreadable files, points outside their image, an empty folder.
Training stops on the first with one line, before it writes anything; `python -m
fcn_jax.data.folder check` prints them all.
"""

import csv
import dataclasses
import hashlib
import json
import os
import sys
from typing import Any

import ml_collections
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags
import tensorflow as tf
import tensorflow_datasets as tfds
import tifffile
from PIL import Image

from fcn_jax import errors
from fcn_jax import tasks

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff')
MASK_FORMATS = ('index', 'colour', 'binary')
SPLITS = ('train', 'validation', 'test')
MAX_LISTED = 5  # names listed in one problem line before "and N more"


@dataclasses.dataclass(frozen=True)
class Spec:
  """The settings of a folder dataset (`config.data` of `name='folder'`; see the module)."""
  task: str
  images: str
  masks: str | None = None
  points: str | None = None
  mask_format: str = 'index'
  colours: tuple[tuple[int, int, int], ...] = ()
  ignore_colour: tuple[int, int, int] | None = None
  ignore_index: int = tasks.IGNORE
  reduce_zero_label: bool = False
  num_classes: int | None = None
  class_names: tuple[str, ...] = ()
  image_suffix: str = ''
  mask_suffix: str = ''
  channels: int = 3
  split_files: tuple[tuple[str, str], ...] = ()  # (split, file)
  validation_fraction: float = 0.2
  test_fraction: float = 0.2
  split_seed: int = 0

  @classmethod
  def of(cls, data: ml_collections.ConfigDict) -> 'Spec':
    """The spec of a data config, with its fields checked (one clear line if not usable)."""
    if not data.get('images'):
      raise errors.ConfigError("a folder dataset needs data.images (the folder of images)")
    get = data.get
    colours = tuple(tuple(int(v) for v in c) for c in (get('colours') or ()))
    ignore_colour = get('ignore_colour')
    split_files = get('split_files') or {}
    spec = cls(
        task=data.task, images=os.path.abspath(os.path.expanduser(data.images)),
        masks=os.path.abspath(os.path.expanduser(get('masks'))) if get('masks') else None,
        points=os.path.abspath(os.path.expanduser(get('points'))) if get('points') else None,
        mask_format=get('mask_format', 'index'), colours=colours,
        ignore_colour=tuple(int(v) for v in ignore_colour) if ignore_colour else None,
        ignore_index=int(get('ignore_index', tasks.IGNORE)),
        reduce_zero_label=bool(get('reduce_zero_label', False)),
        num_classes=get('num_classes'), class_names=tuple(get('class_names') or ()),
        image_suffix=get('image_suffix') or '', mask_suffix=get('mask_suffix') or '',
        channels=int(get('channels', 3)),
        split_files=tuple(sorted((k, os.path.abspath(os.path.expanduser(v)))
                                 for k, v in dict(split_files).items() if v)),
        validation_fraction=float(get('validation_fraction', 0.2)),
        test_fraction=float(get('test_fraction', 0.2)), split_seed=int(get('split_seed', 0)))
    spec.validate()
    return spec

  def validate(self) -> None:
    """Raises `ConfigError` for settings that cannot work together."""
    def fail(message):
      raise errors.ConfigError(f'folder dataset: {message}')
    if self.task not in tasks.NAMES:
      fail(f'data.task must be one of {tasks.NAMES}, got {self.task!r}')
    if self.channels not in (1, 3):
      fail(f'data.channels must be 1 or 3, got {self.channels}')
    if self.mask_format not in MASK_FORMATS:
      fail(f'data.mask_format must be one of {MASK_FORMATS}, got {self.mask_format!r}')
    if self.task == 'segmentation' and not self.masks:
      fail('segmentation needs data.masks (the folder of masks)')
    if self.task == 'heatmap' and not (self.masks or self.points):
      fail('a heat map needs data.masks (heatmap=fraction) or data.points (heatmap=centres)')
    if self.masks and self.mask_format == 'colour' and not self.colours:
      fail("mask_format='colour' needs data.colours: the (r, g, b) of each class, in order")
    if self.masks and self.mask_format == 'index' and not self.num_classes:
      fail("mask_format='index' needs data.num_classes (background included)")
    if self.masks and self.num_classes and self.num_classes != self.mask_classes():
      fail(f'data.num_classes={self.num_classes} but {self.mask_format} masks have '
           f'{self.mask_classes()} classes: set data.num_classes={self.mask_classes()}')
    if any(len(c) != 3 for c in self.colours):
      fail(f'each of data.colours must be (r, g, b), got {self.colours}')
    unknown = sorted(set(dict(self.split_files)) - set(SPLITS))
    if unknown:
      fail(f'data.split_files has {unknown}; its keys are {SPLITS}')
    if not self.split_files and not (0 <= self.validation_fraction and 0 <= self.test_fraction
                                     and self.validation_fraction + self.test_fraction < 1):
      fail('data.validation_fraction and data.test_fraction must be >= 0 with a sum < 1, got '
           f'{self.validation_fraction} and {self.test_fraction}')

  def mask_classes(self) -> int:
    """Classes of the masks (background included)."""
    if self.mask_format == 'binary':
      return 2
    if self.mask_format == 'colour':
      return len(self.colours)
    return int(self.num_classes)


# --------------------------------------------------------------------------
# Listing: which files make which example of which split (no pixel read).


@dataclasses.dataclass
class Entry:
  """One example: its image, and its mask, class or points as the task has them."""
  key: str
  image: str
  mask: str | None = None
  label: int | None = None
  centres: list[tuple[float, float]] | None = None


@dataclasses.dataclass
class Listing:
  """The examples of each split, the class names, and the problems found so far."""
  splits: dict[str, list[Entry]]
  class_names: tuple[str, ...]
  problems: list[str]
  notes: list[str]
  files: list[str]  # every file read, for the fingerprint

  def fingerprint(self, spec: Spec) -> str:
    """A hash of the settings and of every file's name, size and modification time."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    for path in sorted(self.files):
      try:
        st = os.stat(path)
        h.update(f'{path}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
      except OSError:
        h.update(f'{path}\0missing\n'.encode())
    return h.hexdigest()[:16]


def _named(paths, limit=MAX_LISTED) -> str:
  names = [os.path.basename(p) for p in sorted(paths)]
  more = f' and {len(names) - limit} more' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def _image_files(folder: str, suffix: str, problems: list[str], what: str) -> dict[str, str]:
  """{key: path} of the image files directly in `folder` (key = name without suffix)."""
  try:
    names = sorted(os.listdir(folder))
  except FileNotFoundError:
    problems.append(f'{what} folder {folder} does not exist')
    return {}
  except OSError as e:
    problems.append(f'{what} folder {folder} cannot be read: {e.strerror}')
    return {}
  out = {}
  for name in names:
    path = os.path.join(folder, name)
    if not os.path.isfile(path) or name.startswith('.'):
      continue
    if suffix:
      if name.endswith(suffix):
        out[name[:-len(suffix)]] = path
    elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
      key = os.path.splitext(name)[0]
      if key in out:
        problems.append(f'{what} {os.path.basename(out[key])} and {name} have the same stem: '
                        'keep one, or set data.image_suffix / data.mask_suffix')
      out[key] = path
  if not out:
    kinds = f'ending in {suffix!r}' if suffix else f'({", ".join(IMAGE_EXTENSIONS)})'
    problems.append(f'{what} folder {folder} holds no image files {kinds}')
  return out


def _read_points(path: str, problems: list[str]) -> dict[str, list[tuple[float, float]]]:
  """{image name or stem: [(row, col), ...]} from a CSV (`image,row,col`) or a JSON file."""
  out: dict[str, list[tuple[float, float]]] = {}
  try:
    with open(path, newline='') as f:
      if path.lower().endswith('.json'):
        raw = json.load(f)
        if not isinstance(raw, dict):
          raise ValueError('a JSON object {"image": [[row, col], ...]} is needed')
        for name, points in raw.items():
          out[name] = [(float(r), float(c)) for r, c in points]
      else:
        reader = csv.DictReader(f)
        missing = {'image', 'row', 'col'} - set(reader.fieldnames or ())
        if missing:
          raise ValueError(f'the header must name the columns image,row,col (missing '
                           f'{sorted(missing)})')
        for line, row in enumerate(reader, start=2):
          try:
            out.setdefault(row['image'], []).append((float(row['row']), float(row['col'])))
          except (TypeError, ValueError):
            raise ValueError(f'line {line} has no numeric row and col') from None
  except OSError as e:
    problems.append(f'points file {path} cannot be read: {e.strerror}')
  except (ValueError, TypeError, json.JSONDecodeError) as e:
    problems.append(f'points file {path}: {e}')
  return out


def _split(keys: list[str], spec: Spec, rng: np.random.Generator) -> dict[str, list[str]]:
  order = [keys[i] for i in rng.permutation(len(keys))]
  n_test = int(round(spec.test_fraction * len(keys)))
  n_val = int(round(spec.validation_fraction * len(keys)))
  return {'test': order[:n_test], 'validation': order[n_test:n_test + n_val],
          'train': order[n_test + n_val:]}


def listing(spec: Spec) -> Listing:
  """The examples of every split of `spec`'s folder, and the problems seen without reading
  pixels (missing partners, unknown names, empty splits)."""
  problems, notes, files = [], [], []
  entries: dict[str, Entry] = {}
  class_names = spec.class_names
  label_of: dict[str, int] = {}
  if spec.task == 'classification':
    try:
      folders = sorted(n for n in os.listdir(spec.images)
                       if os.path.isdir(os.path.join(spec.images, n)) and not n.startswith('.'))
    except OSError as e:
      folders = []
      problems.append(f'images folder {spec.images} cannot be read: {e.strerror}')
    if not folders and not problems:
      problems.append(f'images folder {spec.images} holds no class folders (classification '
                      'needs one folder of images per class)')
    if class_names:
      extra = sorted(set(folders) - set(class_names))
      if extra:
        problems.append(f'class folders {extra} are not in data.class_names')
    else:
      class_names = tuple(folders)
    if spec.num_classes and folders and spec.num_classes != len(class_names):
      problems.append(f'data.num_classes={spec.num_classes} but there are {len(class_names)} '
                      f'classes: {list(class_names)}')
    for label, name in enumerate(class_names):
      if name not in folders:
        problems.append(f'class {name!r} of data.class_names has no folder in {spec.images}')
        continue
      found = _image_files(os.path.join(spec.images, name), spec.image_suffix, problems,
                           f'class {name!r}')
      for key, path in found.items():
        entries[f'{name}/{key}'] = Entry(f'{name}/{key}', path, label=label)
        label_of[f'{name}/{key}'] = label
  else:
    images = _image_files(spec.images, spec.image_suffix, problems, 'images')
    entries = {k: Entry(k, p) for k, p in images.items()}
    if spec.masks:
      masks = _image_files(spec.masks, spec.mask_suffix, problems, 'masks')
      alone = sorted(set(images) - set(masks))
      orphans = sorted(set(masks) - set(images))
      if alone and masks:
        problems.append(f'{len(alone)} images have no mask in {spec.masks}: '
                        f'{_named(images[k] for k in alone)}')
      if orphans and images:
        problems.append(f'{len(orphans)} masks have no image in {spec.images}: '
                        f'{_named(masks[k] for k in orphans)}')
      for k, entry in entries.items():
        entry.mask = masks.get(k)
      files.extend(masks.values())
      if not class_names and spec.mask_format == 'binary':
        class_names = ('background', 'foreground')
    if spec.points:
      files.append(spec.points)
      points = _read_points(spec.points, problems)
      by_stem = {}
      for name, values in points.items():
        key = name[:-len(spec.image_suffix)] if spec.image_suffix and name.endswith(
            spec.image_suffix) else (os.path.splitext(name)[0] if name not in images else name)
        by_stem.setdefault(key, []).extend(values)
      unknown = sorted(set(by_stem) - set(images))
      if unknown and images:
        problems.append(f'{len(unknown)} images of the points file {spec.points} are not in '
                        f'{spec.images}: {", ".join(unknown[:MAX_LISTED])}'
                        + (f' and {len(unknown) - MAX_LISTED} more' if len(unknown) > MAX_LISTED
                           else ''))
      for k, entry in entries.items():
        entry.centres = by_stem.get(k, [])
      empty = sum(not e.centres for e in entries.values())
      if empty:
        notes.append(f'{empty} of {len(entries)} images have no points (they hold no object)')
  files.extend(e.image for e in entries.values())

  splits = _assign_splits(spec, entries, label_of, problems, notes)
  return Listing(splits, tuple(class_names), problems, notes, files)


def _assign_splits(spec, entries, label_of, problems, notes) -> dict[str, list[Entry]]:
  if spec.split_files:
    splits, seen = {}, {}
    for split, path in spec.split_files:
      try:
        with open(path) as f:
          names = [line.strip() for line in f if line.strip()]
      except OSError as e:
        problems.append(f'split file {path} cannot be read: {e.strerror}')
        continue
      keys, unknown = [], []
      for name in names:
        key = name if name in entries else os.path.splitext(name)[0]
        if key not in entries:
          unknown.append(name)
        elif key in seen:
          problems.append(f'{name} is in the split files of both {seen[key]} and {split}')
        else:
          seen[key] = split
          keys.append(key)
      if unknown:
        problems.append(f'{len(unknown)} names of split file {path} are not images of the '
                        f'folder: {", ".join(unknown[:MAX_LISTED])}')
      splits[split] = keys
    unused = len(entries) - len(seen)
    if unused:
      notes.append(f'{unused} images are in no split file (not used)')
  else:
    rng = np.random.default_rng(spec.split_seed)
    if spec.task == 'classification':
      splits = {s: [] for s in SPLITS}
      for label in sorted(set(label_of.values())):  # per class: every class in every split
        part = _split(sorted(k for k, v in label_of.items() if v == label), spec, rng)
        for s in SPLITS:
          splits[s].extend(sorted(part[s]))
    else:
      splits = {s: sorted(v) for s, v in _split(sorted(entries), spec, rng).items()}
    for s, fraction in (('validation', spec.validation_fraction),
                        ('test', spec.test_fraction)):
      if fraction > 0 and not splits[s] and entries:
        problems.append(f'data.{s}_fraction={fraction} of {len(entries)} images gives no '
                        f'{s} image: add images or raise the fraction')
  if entries and not splits.get('train'):
    problems.append('the train split is empty')
  return {s: [entries[k] for k in keys] for s, keys in splits.items() if keys}


# --------------------------------------------------------------------------
# Reading: pixels, and the problems only pixels show.


@dataclasses.dataclass
class Pixels:
  """An example's arrays as the dataset stores them (None: a problem, said in `problems`)."""
  image: np.ndarray | None = None  # uint8 HxWxC
  mask: np.ndarray | None = None  # uint8 HxWx1, tasks.IGNORE = unlabelled
  problems: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)


def _read_array(path: str) -> tuple[np.ndarray, str]:
  """The pixels of an image file as stored, and PIL's mode ('tiff' for TIFF files)."""
  if os.path.splitext(path)[1].lower() in ('.tif', '.tiff'):
    return np.asarray(tifffile.imread(path)), 'tiff'
  with Image.open(path) as img:
    mode = img.mode
    if mode in ('CMYK', 'YCbCr', 'LAB', 'HSV'):
      img = img.convert('RGB')
    return np.asarray(img), mode


def image_pixels(path: str, channels: int, max16: int) -> tuple[np.ndarray | None, list, list]:
  """(uint8 HxWx`channels` image, problems, notes) of an image file."""
  name = os.path.basename(path)
  try:
    array, mode = _read_array(path)
  except Exception as e:  # pylint: disable=broad-except (any decoder error is an unreadable file)
    return None, [f'image {path} cannot be read: {type(e).__name__}: {e}'], []
  notes = []
  if mode == 'P':  # a palette image used as a picture: its colours
    with Image.open(path) as img:
      array = np.asarray(img.convert('RGBA' if 'transparency' in img.info else 'RGB'))
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
    return None, [f'image {path} has shape {array.shape}: a 2-D grey, RGB or RGBA image is '
                  'needed'], []
  if array.shape[-1] in (2, 4):
    notes.append(f'{name}: alpha channel dropped')
    array = array[..., :-1]
  if array.dtype == bool:
    array = array.astype(np.uint8) * 255
  elif array.dtype in (np.uint16, np.int32, np.int16, np.uint32):
    array = np.clip(np.round(array.astype(np.float64) * 255.0 / max(max16, 1)), 0, 255)
  elif array.dtype != np.uint8:
    return None, [f'image {path} has pixels of type {array.dtype}: 8- or 16-bit integers '
                  'are needed'], []
  array = array.astype(np.uint8)
  if channels == 3 and array.shape[-1] == 1:
    array = np.repeat(array, 3, axis=-1)
  elif channels == 1 and array.shape[-1] == 3:
    luma = array.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    array = np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]
  return array, [], notes


def _colour_list(colours: np.ndarray, counts: np.ndarray) -> str:
  order = np.argsort(-counts)
  shown = [f'{tuple(int(v) for v in colours[i])} in {int(counts[i])} pixels'
           for i in order[:3]]
  more = f' and {len(order) - 3} more colours' if len(order) > 3 else ''
  return ', '.join(shown) + more


def mask_pixels(path: str, spec: Spec) -> tuple[np.ndarray | None, list]:
  """(uint8 HxW class map with `tasks.IGNORE` for unlabelled pixels, problems) of a mask."""
  try:
    array, mode = _read_array(path)
  except Exception as e:  # pylint: disable=broad-except (any decoder error is an unreadable file)
    return None, [f'mask {path} cannot be read: {type(e).__name__}: {e}']
  fmt = spec.mask_format
  if fmt == 'colour':
    if mode == 'P':
      with Image.open(path) as img:
        array = np.asarray(img.convert('RGB'))
    if array.ndim != 3 or array.shape[-1] < 3:
      return None, [f'mask {path} is not an RGB image (shape {array.shape}); with '
                    "mask_format='colour' masks are RGB"]
    rgb = array[..., :3].astype(np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    out = np.full(code.shape, tasks.IGNORE, np.uint8)
    known = np.zeros(code.shape, bool)
    for k, (r, g, b) in enumerate(spec.colours):
      hit = code == ((r << 16) | (g << 8) | b)
      out[hit], known = k, known | hit
    if spec.ignore_colour:
      r, g, b = spec.ignore_colour
      known |= code == ((r << 16) | (g << 8) | b)
    if not known.all():
      values, counts = np.unique(code[~known], return_counts=True)
      colours = np.stack([values >> 16, (values >> 8) & 255, values & 255], axis=1)
      return None, [f'mask {path} has colours not in data.colours: '
                    f'{_colour_list(colours, counts)}']
    return out, []
  if array.ndim == 3:
    if array.shape[-1] in (2, 4):
      array = array[..., :-1]
    if array.shape[-1] > 1 and not (array == array[..., :1]).all():
      return None, [f'mask {path} is a colour (RGB) image: use mask_format=\'colour\' with '
                    'data.colours, or save masks as grey or palette PNGs of class indices']
    array = array[..., 0]
  if array.ndim != 2 or array.dtype.kind not in 'uib':
    return None, [f'mask {path} has shape {array.shape} and type {array.dtype}: a 2-D integer '
                  'image is needed']
  values = array.astype(np.int64)
  if fmt == 'binary':
    present = set(np.unique(values).tolist())
    if not present <= {0, 1} and not present <= {0, 255}:
      odd = sorted(present - {0, 1, 255})
      why = (f'values {odd[:5]} (JPEG artefacts? save masks as PNG)' if odd
             else 'both 1 and 255')
      return None, [f'mask {path} is not binary: it has {why}; a binary mask holds 0 and '
                    'either 1 or 255']
    return (values > 0).astype(np.uint8), []
  ignored = values == spec.ignore_index
  if spec.reduce_zero_label:
    ignored |= values == 0
    values = values - 1
  too_big = (values >= spec.mask_classes()) & ~ignored
  if too_big.any():
    bad, counts = np.unique(values[too_big] + int(spec.reduce_zero_label), return_counts=True)
    listed = ', '.join(f'{int(v)} in {int(c)} pixels' for v, c in zip(bad[:3], counts[:3]))
    return None, [f'mask {path} has class indices >= data.num_classes={spec.mask_classes()}'
                  f'{" (after reduce_zero_label)" if spec.reduce_zero_label else ""}: {listed}'
                  f'; raise data.num_classes or set data.ignore_index']
  return np.where(ignored, tasks.IGNORE, values).astype(np.uint8), []


def _max16(entries: list[Entry]) -> int:
  """The largest value of the folder's 16-bit images (0 if none)."""
  largest = 0
  for entry in entries:
    if os.path.splitext(entry.image)[1].lower() not in ('.png', '.tif', '.tiff'):
      continue
    try:
      array, _ = _read_array(entry.image)
    except Exception:  # pylint: disable=broad-except (reported when the pixels are read)
      continue
    if array.dtype.itemsize > 1:
      largest = max(largest, int(array.max()))
  return largest


def read(entry: Entry, spec: Spec, max16: int) -> Pixels:
  """The arrays of one example, with every problem of its files."""
  out = Pixels()
  out.image, problems, notes = image_pixels(entry.image, spec.channels, max16)
  out.problems += problems
  out.notes += notes
  if entry.mask:
    mask, problems = mask_pixels(entry.mask, spec)
    out.problems += problems
    if mask is not None and out.image is not None and mask.shape != out.image.shape[:2]:
      out.problems.append(
          f'mask {entry.mask} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image '
          f'{os.path.basename(entry.image)} is {out.image.shape[0]}x{out.image.shape[1]}')
    elif mask is not None:
      out.mask = mask[..., None]
  if entry.centres and out.image is not None:
    h, w = out.image.shape[:2]
    outside = [(r, c) for r, c in entry.centres if not (0 <= r < h and 0 <= c < w)]
    if outside:
      out.problems.append(
          f'{len(outside)} points of {os.path.basename(entry.image)} ({h}x{w}) lie outside it, '
          f'e.g. (row {outside[0][0]:g}, col {outside[0][1]:g}): are row and col swapped?')
  return out


@dataclasses.dataclass
class Report:
  """Everything `check` found: problems (training refuses), notes, and the counts."""
  problems: list[str]
  notes: list[str]
  counts: dict[str, int]
  class_names: tuple[str, ...]
  max16: int


def check(spec: Spec, found: Listing | None = None) -> Report:
  """Reads every file of the folder and returns every problem at once."""
  found = found or listing(spec)
  problems, notes = list(found.problems), list(found.notes)
  entries = [e for split in found.splits.values() for e in split]
  max16 = _max16(entries)
  alpha = []
  for entry in entries:
    pixels = read(entry, spec, max16)
    problems += pixels.problems
    alpha += [n for n in pixels.notes if n.endswith('alpha channel dropped')]
  if alpha:
    notes.append(f'{len(alpha)} images have an alpha channel, dropped: '
                 f'{_named(n.split(":")[0] for n in alpha)}')
  if max16:
    notes.append(f'16-bit images scaled by their largest value, {max16} -> 255')
  counts = {s: len(found.splits[s]) for s in SPLITS if s in found.splits}
  return Report(problems, notes, counts, found.class_names, max16)


# --------------------------------------------------------------------------
# The tfds builder.


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  """A folder dataset's spec, its class names and 16-bit scale (named by its fingerprint)."""
  spec: Spec | None = None
  class_names: tuple[str, ...] = ()
  max16: int = 0


class FcnFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The examples of a user's folder (see the module docstring); made by `prepared_builder`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.spec
    features = {'image': tfds.features.Image(shape=(None, None, spec.channels)),
                'file': tfds.features.Text()}
    if spec.task == 'classification':
      features['label'] = tfds.features.ClassLabel(names=list(self.builder_config.class_names))
    if spec.masks and spec.task != 'classification':
      features['mask'] = tfds.features.Image(shape=(None, None, 1))
    if spec.points and spec.task != 'classification':
      features['centres'] = tfds.features.Tensor(shape=(None, 2), dtype=np.float32)
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                          description=f'Folder dataset of {spec.images}')

  def _split_generators(self, dl_manager):
    del dl_manager
    found = listing(self.builder_config.spec)
    return {split: self._generate_examples(entries) for split, entries in found.splits.items()}

  def _generate_examples(self, entries):
    spec = self.builder_config.spec
    for entry in entries:
      pixels = read(entry, spec, self.builder_config.max16)
      if pixels.problems:  # the folder changed since it was checked
        raise errors.ConfigError(f'{pixels.problems[0]} (the folder changed while it was '
                                 'being prepared?)')
      example = {'image': pixels.image, 'file': os.path.relpath(entry.image, spec.images)}
      if entry.label is not None:
        example['label'] = entry.label
      if 'mask' in self.info.features:
        example['mask'] = pixels.mask
      if 'centres' in self.info.features:
        example['centres'] = np.asarray(entry.centres or [], np.float32).reshape(-1, 2)
      yield entry.key, example


def _builder(spec: Spec, found: Listing, data_dir: str | None, max16: int = 0) -> FcnFolder:
  config = FolderConfig(name=f'f{found.fingerprint(spec)}', spec=spec,
                        class_names=found.class_names, max16=max16,
                        description=f'{spec.task} from {spec.images}')
  return FcnFolder(config=config, data_dir=data_dir)


def _refusal(spec: Spec, problems: list[str]) -> errors.ConfigError:
  more = f' (and {len(problems) - 1} more problems)' if len(problems) > 1 else ''
  return errors.ConfigError(
      f'folder dataset {spec.images}: {problems[0]}{more}; every problem: python -m '
      'fcn_jax.data.folder check --config=... (with the same --config.data flags)')


def prepared_builder(data: ml_collections.ConfigDict,
                     data_dir: str | None = None) -> FcnFolder:
  """The prepared tfds builder of a folder dataset: checked and prepared on first use (and
  again when a file changes). Raises `ConfigError` with the first problem found."""
  spec = Spec.of(data)
  found = listing(spec)
  if found.problems:
    raise _refusal(spec, found.problems)
  builder = _builder(spec, found, data_dir)
  if builder.is_prepared():
    return builder
  report = check(spec, found)
  if report.problems:
    raise _refusal(spec, report.problems)
  for note in report.notes:
    print(f'folder dataset: {note}', file=sys.stderr)
  builder = _builder(spec, found, data_dir, report.max16)
  builder.download_and_prepare()
  return builder


def num_classes(data: ml_collections.ConfigDict) -> int:
  """Classes of a folder dataset's labels or masks (background included)."""
  spec = Spec.of(data)
  if spec.task == 'classification':
    return len(listing(spec).class_names)
  return spec.mask_classes() if spec.masks else 2


def standardize(ex: dict[str, Any]) -> dict[str, Any]:
  """A folder example in the common format (`fcn_jax.data.catalog`)."""
  out = {'image': ex['image']}
  if 'label' in ex:
    out['label'] = tf.cast(ex['label'], tf.int32)
  if 'mask' in ex:
    out['mask'] = tf.cast(ex['mask'][..., 0], tf.int32)
  if 'centres' in ex:
    out['centres'] = tf.cast(ex['centres'], tf.float32)
  return out


# --------------------------------------------------------------------------
# The command line: `example` writes a small folder, `check` reports every problem of one.


def write_example(out: str, num_images: int = 30, seed: int = 0) -> dict[str, str]:
  """Writes a small folder dataset of generated shapes (`fcn_jax.data.synthetic`) to `out`:
  `images/` (RGB PNGs of 96 to 192 pixels a side), `masks/` (palette PNGs whose indices are
  the classes background, circle, square, triangle) and `points.csv` (the centre of every
  whole shape, of any class). Returns the paths of the three."""
  from fcn_jax.data import synthetic  # pylint: disable=import-outside-toplevel (examples only)
  paths = {'images': os.path.join(out, 'images'), 'masks': os.path.join(out, 'masks'),
           'points': os.path.join(out, 'points.csv')}
  os.makedirs(paths['images'], exist_ok=True)
  os.makedirs(paths['masks'], exist_ok=True)
  rng = np.random.default_rng(seed)
  palette = [0, 0, 0, 230, 25, 75, 60, 180, 75, 0, 130, 200] + [255, 255, 255] * 252
  rows = []
  for i in range(num_images):
    h, w = (int(v) for v in rng.integers(96, 193, size=2))
    ex = synthetic.shapes_example(rng, h, w)
    name = f'shapes_{i:03d}'
    Image.fromarray(ex['image']).save(os.path.join(paths['images'], name + '.png'))
    mask = Image.fromarray(ex['mask'][..., 0], mode='P')
    mask.putpalette(palette)
    mask.save(os.path.join(paths['masks'], name + '.png'))
    for r, c in ex['objects']['centre']:
      if 0 <= r < h and 0 <= c < w:
        rows.append(f'{name},{r:.1f},{c:.1f}')
  with open(paths['points'], 'w') as f:
    f.write('\n'.join(['image,row,col', *rows]) + '\n')
  return paths


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file('config', None, 'check: a config whose data is a folder.')
  flags.DEFINE_string('out', None, 'example: the folder to write.')


def main(argv):
  config = flags.FLAGS.config
  if len(argv) != 2 or argv[1] not in ('check', 'example'):
    raise app.UsageError('usage: python -m fcn_jax.data.folder check --config=... | '
                         'example --out=DIR')
  if argv[1] == 'example':
    if not flags.FLAGS.out:
      raise app.UsageError('give --out=DIR')
    paths = write_example(flags.FLAGS.out)
    print('\n'.join(f'{k}: {v}' for k, v in paths.items()))
    return 0
  if config is None:
    raise app.UsageError('give --config=configs/folder_segmentation.py (and --config.data.*)')
  try:
    spec = Spec.of(config.data)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  report = check(spec)
  counts = ', '.join(f'{s} {n}' for s, n in report.counts.items())
  print(f'{spec.images}: {spec.task}; images per split: {counts or "none"}')
  if report.class_names:
    print(f'classes: {", ".join(report.class_names)}')
  for note in report.notes:
    print(f'note: {note}')
  for problem in report.problems:
    print(f'problem: {problem}')
  print(f'{len(report.problems)} problems' if report.problems else 'no problems: ready to train')
  return 1 if report.problems else 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
