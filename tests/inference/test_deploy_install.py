"""The deployer's install: a virtual environment with numpy, Pillow and
onnxruntime only (the versions the suite passed with, from the package
registry) and the repository on PYTHONPATH runs `PoseEstimator.from_export`
on real LSPET images, importing neither JAX nor TensorFlow, and agrees with
`PoseEstimator.from_workdir` in the suite's environment."""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import venv

import numpy as np
import pytest

from tests.conftest import REPO, SHARED_DATA, tiny_config

DEPLOY_PACKAGES = ('numpy', 'pillow', 'onnxruntime')
LSPET_IMAGES = [SHARED_DATA / 'lspet_sample' / 'images' / f'im{i:05d}.jpg' for i in range(1, 9)]
BOX = [5.0, 5.0, 60.0, 90.0]

_IN_THE_VENV = '''
import json, sys
from rhpe_jax import PoseEstimator
estimator = PoseEstimator.from_export(sys.argv[1])
out = {'whole': [], 'box': []}
for path in sys.argv[2:]:
  out['whole'].append(estimator.predict(path).keypoints.tolist())
  out['box'].append(estimator.predict(path, [%s]).keypoints.tolist())
out['imported'] = sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'tensorflow', 'absl'})
print(json.dumps(out))
''' % BOX


def pinned(package: str) -> str:
  """`package==version` as requirements/py3XX.txt pins it for this Python."""
  lock = REPO / 'requirements' / f'py3{sys.version_info.minor}.txt'
  match = re.search(rf'^{package}==([^\s;]+)', lock.read_text(), re.MULTILINE | re.IGNORECASE)
  return f'{package}=={match.group(1)}' if match else package


@pytest.mark.slow
def test_from_export_in_a_venv_without_jax_agrees_with_from_workdir(tiny_data_dir, tiny_workdir,
                                                                    tmp_path):
  pytest.importorskip('onnxruntime', reason='onnxruntime is not installed here (pip install '
                      "'rhpe_jax[onnx]'): no ONNX export to deploy")
  pytest.importorskip('jax2onnx', reason="the ONNX converter is not installed (pip install "
                      "'rhpe_jax[onnx]')")
  if not LSPET_IMAGES[-1].is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET_IMAGES[0].parent}')
  from rhpe_jax import PoseEstimator, checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  variables, step = checkpoints.restore_variables(config, str(tiny_workdir))
  exported = tmp_path / 'export'
  export.export(config, variables, exported, formats=('onnx',), step=step)

  environment = tmp_path / 'deploy'
  venv.create(environment, with_pip=True)
  python = environment / 'bin' / 'python'
  install = subprocess.run([str(python), '-m', 'pip', 'install', '-q',
                            '--disable-pip-version-check', *[pinned(p) for p in DEPLOY_PACKAGES]],
                           capture_output=True, text=True, timeout=900, check=False)
  if install.returncode:
    pytest.skip(f'pip could not install {", ".join(DEPLOY_PACKAGES)} from the registry: '
                f'{install.stderr.strip().splitlines()[-1:]}')
  env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}
  env['PYTHONPATH'] = str(REPO)
  done = subprocess.run([str(python), '-c', _IN_THE_VENV, str(exported),
                         *[str(p) for p in LSPET_IMAGES]],
                        capture_output=True, text=True, env=env, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  got = json.loads(done.stdout.strip().splitlines()[-1])
  assert got['imported'] == []  # no JAX, no TensorFlow, not even absl

  trained = PoseEstimator.from_workdir(tiny_workdir)
  distances = []
  for k, path in enumerate(LSPET_IMAGES):
    for key, boxes in (('whole', None), ('box', [BOX])):
      expected = trained.predict(str(path), boxes).keypoints
      distances.append(np.linalg.norm(np.asarray(got[key][k]) - expected, axis=-1))
  distances = np.concatenate(distances).ravel()
  print(f'deploy venv vs from_workdir on {len(LSPET_IMAGES)} LSPET images: median '
        f'{np.median(distances):.2e} px, worst {distances.max():.2e} px')
  assert np.median(distances) < 0.5
  site = pathlib.Path(environment)
  assert not list(site.glob('lib/python*/site-packages/jax')), 'jax got into the deploy venv'
