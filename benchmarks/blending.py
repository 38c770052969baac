r"""How far blended tiling is from the whole-image output, per model family and weighting.

  python -m benchmarks.blending      # about a minute on 2 cores

For each model (random weights, eval mode; batch/group norm statistics as initialised)
and each weighting and overlap: `inference.predict_blended(..., exact=False)` (so the exactly
tileable models are blended too, for comparison) on a 256x256 image with 64-pixel windows,
against `inference.predict` on the whole image. Reported: the largest and the mean absolute
deviation, relative to the largest absolute whole-image output. Exact tiling, for the models
it accepts, is 0 up to float rounding (tests/test_tiling.py). Rewrites the "Blended tiling"
section of benchmarks/README.md.
"""

import numpy as np
from absl import app
from flax import nnx

from benchmarks import report
from benchmarks import speed
from fcn_jax import inference
from fcn_jax import models
from fcn_jax.inference import blended

SECTION = '## Blended tiling'
FAMILIES = {  # name: (config, input channels, exactly tileable)
    'patch_net (zero padding)': (dict(name='patch_net'), 3, True),
    'U-Net same, batch norm': (dict(name='unet', in_channels=3, depth=3, width=8, padding='same',
                                    norm='batch'), 3, True),
    'U-Net same, group norm': (dict(name='unet', in_channels=3, depth=3, width=8, padding='same',
                                    norm='group'), 3, False),
    'encoder-decoder, bilinear': (dict(name='encoder_decoder', upsample='bilinear'), 3, True),
}
SIZE, TILE = 256, 64


def main(argv):
  del argv
  image = np.random.default_rng(0).random((SIZE, SIZE, 3), dtype=np.float32)
  rows = []
  for family, (config, _, exact) in FAMILIES.items():
    model = models.get_model(config, rngs=nnx.Rngs(0))
    model.eval()
    whole = inference.predict(model, image)
    scale = float(np.abs(whole).max())
    for overlap in (0.25, 0.5):
      for weights in blended.WEIGHTS:
        out = inference.predict_blended(model, image, TILE, overlap, weights, exact=False)
        dev = np.abs(out - whole)
        rows.append((family, exact, overlap, weights, float(dev.max()) / scale,
                     float(dev.mean()) / scale))
        print(rows[-1], flush=True)
  lines = [SECTION, '',
           f'`python -m benchmarks.blending` on {speed.cpu_name()}: `inference.predict_blended` '
           f'(forced to blend, `exact=False`) on a {SIZE}² image with {TILE}-pixel windows '
           'against the whole-image output; deviation relative to the largest absolute '
           'whole-image output. Random weights in eval mode. Exact tiling (the default where '
           'a model allows it) is 0 up to float rounding.', '',
           '| model | exactly tileable | overlap | weights | max deviation | mean deviation |',
           '|---|---|---:|---|---:|---:|']
  for family, exact, overlap, weights, worst, mean in rows:
    lines.append(f'| {family} | {"yes" if exact else "no"} | {overlap:.2f} | {weights} | '
                 f'{worst:.2e} | {mean:.2e} |')
  report.write_section('\n'.join(lines) + '\n')


if __name__ == '__main__':
  app.run(main)
