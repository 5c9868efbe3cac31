"""rhpe_jax.deploy.onnx_export through experiments/export.py: the ONNX model
run by onnxruntime directly against the predictor on the unfolded network, on
real LSPET images; manifest.json; one-line errors that leave nothing behind."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, tiny_config
# The calibrated network (batch norm far from the identity) and its workdir.
from tests.deploy.test_export import (SIZE, _config_flags, _lspet_crops, _start,  # pylint: disable=unused-import
                                      calibrated, calibrated_workdir)

pytest.importorskip('onnxruntime')
pytest.importorskip('jax2onnx')

# Worst case measured (4 LSPET crops, tiny calibrated network): keypoints
# 2e-5 px, confidence 3e-7, heat maps 4e-7.
TOLERANCES = {'keypoints': 1e-2, 'confidence': 1e-4, 'heatmaps': 1e-4}


def test_onnx_agrees_with_the_predictor_on_real_images(tiny_data_dir, calibrated_workdir,
                                                      tmp_path):
  if not (SHARED_DATA / 'lspet_sample' / 'images' / 'im00004.jpg').is_file():
    pytest.skip(f'the real LSPET sample is not at {SHARED_DATA / "lspet_sample"}')
  import onnx  # pylint: disable=g-import-not-at-top
  import onnxruntime  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import skeleton  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'export'
  process = _start(_config_flags(tiny_data_dir) + [f'--workdir={calibrated_workdir}',
                                                   f'--output={out}', '--formats=onnx'])
  images = _lspet_crops(4)
  config = tiny_config(tiny_data_dir)
  variables, _ = checkpoints.restore_variables(config, str(calibrated_workdir))
  expected = predictor.predict_fn(config, outputs=export.OUTPUTS)(variables, images)
  stdout, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr[-3000:]
  assert 'model.onnx' in stdout

  onnx.checker.check_model(str(out / 'model.onnx'), full_check=True)
  session = onnxruntime.InferenceSession(str(out / 'model.onnx'),
                                         providers=['CPUExecutionProvider'])
  (given,) = session.get_inputs()
  assert given.name == 'images' and given.type == 'tensor(uint8)'
  assert not isinstance(given.shape[0], int) and given.shape[1:] == [SIZE, SIZE, 3]
  assert [o.name for o in session.get_outputs()] == list(export.OUTPUTS)
  for rows in (slice(None), slice(1, 2)):  # batch 4, batch 1
    got = dict(zip(export.OUTPUTS, session.run(None, {'images': images[rows]})))
    for key, tolerance in TOLERANCES.items():
      np.testing.assert_allclose(got[key], np.asarray(expected[key])[rows], atol=tolerance,
                                 err_msg=key)

  manifest = json.loads((out / 'manifest.json').read_text())
  assert manifest['checkpoint_step'] == 7 and manifest['formats'] == {'onnx': 'model.onnx'}
  for name in ('rhpe_jax', 'jax', 'jaxlib', 'flax', 'tensorflow', 'jax2onnx', 'onnx',
               'onnxruntime'):
    assert manifest['versions'][name], name
  assert manifest['config']['width'] == config.width
  assert manifest['input']['shape'] == [None, SIZE, SIZE, 3]
  assert manifest['input']['dtype'] == 'uint8'
  assert manifest['output']['keypoint_names'] == list(skeleton.of_config(config).joint_names)
  assert manifest['output']['stages'] == config.num_iterations + 2
  readme = (out / 'README.md').read_text()
  assert 'onnxruntime-web' in readme and 'Ort::Session' in readme and 'manifest.json' in readme


def test_onnx_bad_inputs_give_one_line_errors_and_leave_nothing(tiny_data_dir, tiny_workdir,
                                                                tmp_path, monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)

  wide = tiny_config(tiny_data_dir)
  wide.width = 0.125  # not the checkpoint's network
  with pytest.raises(ValueError) as error:
    export.export_checkpoint(wide, str(tiny_workdir), str(tmp_path / 'wide'), formats='onnx')
  assert '\n' not in str(error.value)
  assert not (tmp_path / 'wide').exists()

  def broken(*args, **kwargs):
    raise ValueError('conversion failed')

  with monkeypatch.context() as patch:  # jax_export written first, then ONNX fails
    patch.setattr(onnx_export, 'onnx_model', broken)
    with pytest.raises(ValueError, match='conversion failed'):
      export.export_checkpoint(config, str(tiny_workdir), str(tmp_path / 'half'),
                               formats='jax_export,onnx')
  assert list(tmp_path.iterdir()) == []  # neither the output nor a staging folder

  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'jax2onnx' else find_spec(name, *a))
  with pytest.raises(onnx_export.MissingPackage,
                     match=r"^--formats=onnx needs jax2onnx: pip install 'rhpe_jax\[onnx\]'"):
    export.export_checkpoint(config, str(tiny_workdir), str(tmp_path / 'none'), formats='onnx')
  assert list(tmp_path.iterdir()) == []

  with pytest.raises(ValueError, match="unknown export formats.*jax_export,onnx"):
    export.export_checkpoint(config, str(tiny_workdir), str(tmp_path / 'x'), formats='onnx,fp8')
