"""The `fcn_jax.shapes` table and CLI, and the model registry."""

import subprocess
import sys

import pytest
from flax import nnx

from fcn_jax import models
from fcn_jax import shapes


def test_summary_reports_reference_shapes():
  model = models.get_model({'name': 'patch_net'}, rngs=nnx.Rngs(0))
  text = shapes.summary(model, (640, 320), 3)
  assert 'input 640x320x3 -> output 80x40x1' in text
  assert '| **total** | 80×40×1 | 6,373 | 15 | 8 | 0 |' in text
  assert 'confirmed by jax.eval_shape' in text


def test_registry_rejects_unknown_names_and_fields():
  with pytest.raises(ValueError, match=r"unknown model 'vit'; choose one of patch_net"):
    models.get_model({'name': 'vit'}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"model 'patch_net' has no field\(s\) \['widht'\]"):
    models.get_model({'name': 'patch_net', 'widht': 3}, rngs=nnx.Rngs(0))


def test_cli_prints_table_and_fails_on_invalid_size():
  cmd = [sys.executable, '-m', 'fcn_jax.shapes', '--config=configs/default.py', '--size=64,64']
  ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
  assert ok.returncode == 0, ok.stderr
  assert 'patch_net: input 64x64x3 -> output 8x8x1' in ok.stdout
  bad = subprocess.run(cmd[:-1] + ['--size=0,64'], capture_output=True, text=True, check=False)
  assert bad.returncode == 1
  assert 'patch_net cannot take an input of size (0, 64)' in bad.stdout


def test_catalog_lists_every_model_config():
  text = shapes.catalog()
  assert len(text.splitlines()) == 2 + len(shapes.CATALOG)
  assert '| `unet_cells.py:paper` | unet | 31,030,658 |' in text
  assert '572×572 → 388×388×2' in text
  assert ('| `default.py:reference` | patch_net | 6,373 | 15 | 8 | 1×1 | 1024×1024 → '
          '128×128×1 |') in text
