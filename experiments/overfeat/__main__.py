r"""OverFeat: dense evaluation of a convolutionalized classifier vs explicit windows, on the
device, and whether dense evaluation helps on real digits.

  python -m experiments.overfeat --workdir=/tmp/exp_overfeat [--quick]

Claims (Sermanet et al., "OverFeat", ICLR 2014): (1) a classifier trained on fixed windows,
turned into a fully convolutional net, evaluates every window of a larger image at the
net's stride in one pass: the same numbers as running it window by window, faster because
neighbouring windows share their conv features, by at most the ratio of their FLOPs;
(2) dense evaluation helps accuracy: many shifted views of an object, averaged, classify it
better than one centred view.

Trains `configs/dense_to_fcn_digits.py` (conv half with VALID padding + flatten + dense,
28x28 digits) and convolutionalizes it (`fcn_jax.surgery`).

* Speed: per image size, the dense pass against the explicit windows computed fairly: one
  jitted function cuts every window with `lax.dynamic_slice` (vmapped) and runs the
  classifier on all of them as one batch, on the same device and in the same dtype as the
  dense pass. Max |difference|, the median and range of REPEATS timed calls of each
  (compilation excluded), the speed-up, and the FLOP ratio (XLA's cost analysis) beside it.
* The Caffe net-surgery figure (BVLC/caffe #2703: the converted net gives 64x the outputs
  for about 3x the time of one window), measured on our converted classifier: one 28x28
  window against the input that gives 8x8 outputs.
* Accuracy on real digits: new canvases of scikit-learn's test digits (`fcn_digits`'
  generator: 16-32 px digits on noise). Each digit whose centred 28x28 window fits is
  classified (a) by the classifier on that single centred window, (b) by dense evaluation:
  the convolutionalized net at every input pixel (shift-and-stitch,
  `fcn_jax.inference.shift_and_stitch`), the mean of the softmax scores of the windows
  shifted by up to VIEW_RADIUS px from the centred one (25 views). Accuracy of each pooled
  over digits and SEEDS (classifiers), and (b) - (a) paired on the same digits, against
  MARGIN declared before the run.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import dense_to_fcn_digits
from experiments import common
from fcn_jax import cost
from fcn_jax import geometry
from fcn_jax import inference
from fcn_jax import models
from fcn_jax import stats
from fcn_jax import surgery
from fcn_jax.data import synthetic

SEEDS = (0, 1, 2)  # classifiers for the accuracy point (the timing uses the first)
SIZES = (28, 56, 112, 224, 448)
REPEATS = 7  # timed calls per figure
CANVASES = 40  # canvases of CANVAS x CANVAS px for the accuracy point
CANVAS = 160
VIEW_RADIUS = 2  # dense evaluation averages the windows shifted by up to this many px
MARGIN = 0.01  # accuracy; declared before the run


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _windows_forward(graphdef, state, image, size, stride):
  """The classifier on every `size` window of `image` (H, W, C) at `stride`: `(H', W', K)`.
  Windows are cut on the device (`lax.dynamic_slice`, vmapped) and classified as one batch."""
  classifier = nnx.merge(graphdef, state)
  h, w, c = image.shape
  rows, cols = (h - size[0]) // stride + 1, (w - size[1]) // stride + 1
  ys, xs = jnp.meshgrid(jnp.arange(rows) * stride, jnp.arange(cols) * stride, indexing='ij')

  def cut(y, x):
    return jax.lax.dynamic_slice(image, (y, x, 0), (*size, c))
  windows = jax.vmap(cut)(ys.ravel(), xs.ravel())
  return classifier(windows).reshape(rows, cols, -1)


def sliding_windows(classifier, size, stride):
  """A function of an image: `_windows_forward` of the classifier in inference mode (a device
  array, not waited for); the model is split once, outside the timed calls."""
  graphdef, state = nnx.split(models.inference_view(classifier))
  return lambda image: _windows_forward(graphdef, state, jnp.asarray(image), tuple(size), stride)


@functools.partial(jax.jit, static_argnums=(0,))
def _dense_forward(graphdef, state, image):
  return nnx.merge(graphdef, state)(image[None])[0]


def dense(net):
  """A function of an image `(H, W, C)`: the net on it, `(H', W', K)` (not waited for)."""
  graphdef, state = nnx.split(models.inference_view(net))
  return lambda image: _dense_forward(graphdef, state, jnp.asarray(image))


def _timing(times: list[float]) -> dict:
  return {'median': float(np.median(times)), 'min': float(min(times)), 'max': float(max(times))}


def accuracy_counts(classifier, fcn, canvases) -> tuple[np.ndarray, float]:
  """Per digit: (single centred window correct, dense mean of views correct) as
  `[digits, 2, 2]` (correct, 1) counts, over the digits whose centred 28x28 window fits in its
  canvas; and the largest |dense output - classifier on that window| at the centred views (the
  alignment of the dense map, checked)."""
  classify = dense(classifier)
  single, dense_views, misaligned = [], [], 0.0
  for canvas in canvases:
    image = canvas['image'].astype(np.float32) / 255.0
    # One output per input pixel (shift-and-stitch): output (k, l) is the window at (k, l).
    logits = inference.shift_and_stitch(fcn, image, 1)
    scores = np.asarray(jax.nn.softmax(logits, -1))
    h, w = image.shape[:2]
    for (cy, cx), label in zip(canvas['objects']['centre'], canvas['objects']['label']):
      top, left = int(round(cy)) - 14, int(round(cx)) - 14
      if top < 0 or left < 0 or top + 28 > h or left + 28 > w:
        continue
      centred = np.asarray(classify(image[top:top + 28, left:left + 28]))
      misaligned = max(misaligned, float(np.abs(centred - logits[top, left]).max()))
      single.append(int(np.argmax(centred)) == label)
      views = scores[max(top - VIEW_RADIUS, 0):top + VIEW_RADIUS + 1,
                     max(left - VIEW_RADIUS, 0):left + VIEW_RADIUS + 1]
      dense_views.append(int(np.argmax(views.reshape(-1, scores.shape[-1]).mean(0))) == label)
  counts = np.stack([np.stack([single, np.ones(len(single))], -1),
                     np.stack([dense_views, np.ones(len(dense_views))], -1)], 1)
  return counts.astype(np.int64), misaligned


def test_canvases(count: int, side: int, seed: int = 4242) -> list[dict]:
  """New canvases of the test digits (the `fcn_digits/canvas` generator, other seeds)."""
  digits, labels = synthetic.load_digits()
  index = synthetic.digit_split(labels, 'test')
  return [synthetic.digit_canvas(np.random.default_rng((seed, k)), side, side, digits[index],
                                 labels[index]) for k in range(count)]


def run(workdir: str, quick: bool) -> dict:
  seeds = (0,) if quick else SEEDS
  sizes = (28, 56, 112) if quick else SIZES
  repeats = 3 if quick else REPEATS
  record = common.Record(workdir, quick)
  canvases = test_canvases(4 if quick else CANVASES, 96 if quick else CANVAS)
  counts, misaligned = [], 0.0
  rows = caffe = None
  for seed in seeds:
    config = dense_to_fcn_digits.get_config()
    config.seed = seed
    if quick:
      common.quick_training(config, steps=150, batch_size=32)
      config.max_eval_images = 50
    classifier = record.train(config, f'dense_classifier_seed{seed}')
    fcn = surgery.convolutionalize(classifier)
    size = tuple(config.model.input_size)
    stride = int(geometry.of(fcn).stride[0])
    found, off = accuracy_counts(classifier, fcn, canvases)
    counts.append(found)
    misaligned = max(misaligned, off)
    if rows is not None:
      continue
    rows = []  # timing: the first seed's classifier
    channels = config.model.in_channels
    run_dense, run_windows = dense(fcn), sliding_windows(classifier, size, stride)
    for n in sizes:
      image = np.random.default_rng(n).random((n, n, channels), dtype=np.float32)
      dense_out = np.asarray(run_dense(image))
      windows = np.asarray(run_windows(image))
      # Only windows that fit are compared; the FCN also gives outputs for windows that reach
      # past the image into rows the classifier never reads (its stride leaves them over).
      dense_fit = dense_out[:windows.shape[0], :windows.shape[1]]
      t_dense = _timing(common.wall_times(lambda: run_dense(image), repeats))
      t_windows = _timing(common.wall_times(lambda: run_windows(image), repeats))
      count = windows.shape[0] * windows.shape[1]
      flops_dense = cost.flops(fcn, image[None])
      flops_window = cost.flops(classifier, image[None, :size[0], :size[1]])
      rows.append({'size': n, 'dense_output': dense_out.shape[:2], 'windows': count,
                   'max_abs_diff': float(np.abs(dense_fit - windows).max()),
                   'dense_s': t_dense, 'windows_s': t_windows,
                   'speedup': t_windows['median'] / t_dense['median'],
                   'flop_ratio': count * flops_window / flops_dense})
    # The Caffe notebook's figure: 8x8 outputs against one window.
    n = size[0] + 7 * stride
    image = np.random.default_rng(7).random((n, n, channels), dtype=np.float32)
    one = image[:size[0], :size[1]]
    run_one = dense(classifier)
    t_one = _timing(common.wall_times(lambda: run_one(one), repeats))
    t_map = _timing(common.wall_times(lambda: run_dense(image), repeats))
    outputs = int(np.prod(np.asarray(run_dense(image)).shape[:2]))
    caffe = {'input': n, 'outputs': outputs, 'one_window_s': t_one, 'map_s': t_map,
             'time_ratio': t_map['median'] / t_one['median']}

  counts = np.stack(counts)  # [seeds, digits, 2 (single, dense), 2]
  single, dense_views = counts[:, :, 0], counts[:, :, 1]
  diff = stats.difference(dense_views, single, stats.accuracy)
  # A classifier at chance (0.1 +- 0.02) on its own single windows failed to train.
  failed = bool((np.abs(single[..., 0].mean(1) - 0.1) <= 0.02).any())
  accuracy = {'digits': int(counts.shape[1]),
              'single': common.interval_dict(stats.interval(single, stats.accuracy)),
              'dense': common.interval_dict(stats.interval(dense_views, stats.accuracy)),
              'difference': common.interval_dict(diff),
              'verdict': stats.compare(diff, MARGIN, failed), 'failed': failed,
              'view_radius': VIEW_RADIUS, 'misaligned': misaligned}

  fig, ax = common.figure(figsize=(5, 3.2))
  ax.loglog([r['windows'] for r in rows], [r['speedup'] for r in rows], 'o-',
            label='measured speed-up (median)')
  ax.loglog([r['windows'] for r in rows], [r['flop_ratio'] for r in rows], 's--',
            label='FLOP ratio (bound)')
  ax.set_xlabel('windows per image')
  ax.legend()
  common.save_figure(fig, os.path.join(workdir, 'speedup.png'))

  config = dense_to_fcn_digits.get_config()
  numbers = {'rows': rows, 'max_abs_diff': max(r['max_abs_diff'] for r in rows),
             'caffe': caffe, 'accuracy': accuracy, 'margin': MARGIN, 'seeds': list(seeds),
             'setup': {'features': list(config.model.features), 'hidden': config.model.hidden,
                       'params': geometry.of(classifier).params,
                       'steps': record.training[f'dense_classifier_seed{seeds[0]}']['steps'],
                       'stride': stride, 'window': list(size), 'repeats': repeats,
                       'canvases': len(canvases), 'canvas': canvases[0]['image'].shape[0]}}
  record.write(numbers, render)
  return numbers


def _seconds(t: dict) -> str:
  return f'{1e3 * t["median"]:.3g} ({1e3 * t["min"]:.3g}–{1e3 * t["max"]:.3g})'


def render(numbers: dict) -> tuple[str, list[str]]:
  """results.md from results.json."""
  rows, setup, caffe, acc = (numbers['rows'], numbers['setup'], numbers['caffe'],
                             numbers['accuracy'])
  biggest, size, stride = rows[-1], setup['window'], setup['stride']
  share = biggest['speedup'] / biggest['flop_ratio']
  if biggest['speedup'] > biggest['flop_ratio']:
    speed = (f'The measured speed-up exceeds the FLOP ratio ({share:.0%} of it): the window '
             'side spends time beyond its convolutions\' FLOPs (its batch of windows is '
             f'{biggest["windows"]}× the memory of one input).')
  else:
    speed = f'The measured speed-up reaches {share:.0%} of the FLOP ratio.'
  return 'OverFeat: dense evaluation vs explicit windows, and on real digits', [
      '**Claims.** A convolutionalized classifier evaluates all windows at its stride in one '
      'pass, giving the same logits as the classifier window by window, faster by up to the '
      'ratio of their FLOPs; and dense evaluation (many shifted views, averaged) classifies '
      'better than one centred view (Sermanet et al., 2014).', '',
      f'**Setup.** `configs/dense_to_fcn_digits.py`: conv half ({tuple(setup["features"])}, '
      f'3×3, stride 2, VALID) + dense {setup["hidden"]} + dense 10, {setup["params"]:,} '
      f'parameters, trained {setup["steps"]} steps on 28×28 digits (seeds '
      f'{", ".join(map(str, numbers["seeds"]))}; timings: seed {numbers["seeds"][0]}); '
      'convolutionalized: fc1 → a VALID conv the size of the final feature map, fc2 → 1×1 '
      f'conv; stride {stride}. Windows: every {size[0]}×{size[1]} window at stride {stride}, '
      'cut on the device inside one jitted function (vmapped `lax.dynamic_slice`) and '
      'classified as one batch: the same device, dtype and jit as the dense pass. Times in ms: '
      f'median (min–max) of {setup["repeats"]} calls after a warm-up (compilation excluded), '
      'waiting for the result. FLOPs: XLA cost analysis.', '',
      '## Speed', '',
      common.table(['image', 'dense output', 'windows', 'max abs diff', 'dense ms',
                    'windows ms', 'speed-up', 'FLOP ratio'],
                   [[f'{r["size"]}²', '×'.join(map(str, r['dense_output'])), r['windows'],
                     f'{r["max_abs_diff"]:.2e}', _seconds(r['dense_s']),
                     _seconds(r['windows_s']), f'{r["speedup"]:.2f}',
                     f'{r["flop_ratio"]:.2f}'] for r in rows]),
      '![speed-up](speedup.png)', '',
      f'**The Caffe net-surgery figure** (BVLC/caffe #2703: 64× the outputs for about 3× the '
      f'time of one window): on a {caffe["input"]}² input our converted classifier gives '
      f'{caffe["outputs"]} outputs in {_seconds(caffe["map_s"])} ms against '
      f'{_seconds(caffe["one_window_s"])} ms for one {size[0]}×{size[1]} window: '
      f'{caffe["outputs"]}× the outputs for {caffe["time_ratio"]:.1f}× the time.', '',
      '## Dense evaluation on real digits', '',
      f'{acc["digits"]} test digits on {setup["canvases"]} new {setup["canvas"]}² canvases '
      '(16–32 px digits on noise; those whose centred 28×28 window fits), for each classifier '
      f'seed. The dense map is aligned: at the centred view it equals the classifier on the '
      f'centred window to {acc["misaligned"]:.1e}.', '',
      common.table(['classified by', 'accuracy [95% CI]'],
                   [['the single centred window', common.ci(acc['single'])],
                    [f'dense: mean softmax of the {(2 * acc["view_radius"] + 1) ** 2} windows '
                     f'shifted by up to {acc["view_radius"]} px (shift-and-stitch)',
                     common.ci(acc['dense'])],
                    ['dense − single (paired)',
                     f'{common.ci(acc["difference"], True)} {acc["verdict"]}']]),
      '## Verdict', '',
      f'Equal: max abs difference {numbers["max_abs_diff"]:.1e} over all sizes (float32). At '
      f'{biggest["size"]}² the dense pass is {biggest["speedup"]:.1f}× faster than '
      f'{biggest["windows"]} windows cut and classified on the device; the FLOP ratio is '
      f'{biggest["flop_ratio"]:.1f}×. {speed} Dense evaluation against one centred window on '
      f'real digits: {common.ci(acc["difference"], True)}, {acc["verdict"]} (margin '
      f'±{numbers["margin"]:g}; "higher" / "lower": the interval excludes 0; "equivalent": it '
      'lies inside the margin; else "inconclusive").']


if __name__ == '__main__':
  common.main(run)
