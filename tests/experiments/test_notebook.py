"""The Colab notebook runs end to end (CPU, a tiny network through its
parameters cell) and writes what it shows."""
from __future__ import annotations

import json
import os

import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / 'experiments' / 'colab_tpu.ipynb'


@pytest.mark.slow
def test_colab_notebook_runs_end_to_end_on_cpu(tmp_path, monkeypatch):
  nbclient = pytest.importorskip('nbclient')
  nbformat = pytest.importorskip('nbformat')
  root = tmp_path / 'colab'
  settings = {'ROOT': str(root), 'RESOLUTION': '64', 'NUM_TRAIN': '8', 'NUM_VALIDATION': '4',
              'WIDTH': '0.0625', 'INPUT_SIZE': '64', 'BATCH_PER_DEVICE': '4', 'NUM_STEPS': '2'}
  for name, value in settings.items():
    monkeypatch.setenv(f'RHPE_NB_{name}', value)
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  # The kernel imports this checkout (not whichever one is installed).
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(REPO),
                                                                 os.environ.get('PYTHONPATH')])))
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '2')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(notebook, kernel_name='python3', timeout=600,
                                   resources={'metadata': {'path': str(tmp_path)}})
  client.execute()  # raises CellExecutionError on the first failing cell

  outputs = [out for cell in notebook.cells if cell.cell_type == 'code'
             for out in cell.get('outputs', [])]
  text = ''.join(out.get('text', '') for out in outputs if out.get('output_type') == 'stream')
  assert '2 steps, width 0.0625, 64 px' in text
  assert 'step 2/2' in text  # the training loop ran both steps
  assert 'PCK@0.2' in text and 'Total' in text  # the paper's table was printed
  images = [out for out in outputs if 'image/png' in out.get('data', {})]
  assert len(images) == 5  # curves, visibility PR, skeleton, stages, maps
  results = json.loads((root / 'run' / 'eval' / 'results.json').read_text())
  assert results['num_persons'] == 4 and results['flip']
  for name in ('predict_0.json', 'predict_0.png', 'predict_0_stages.png', 'predict_0_maps.png'):
    assert (root / name).is_file(), name
  record = json.loads((root / 'predict_0.json').read_text())
  assert len(record['keypoints']) == 16 and len(record['confidence']) == 16
