"""The browser page the ONNX export writes (rhpe_jax/deploy/web/index.html), in
headless Chromium: served from the export folder by `python -m http.server`
with onnxruntime-web's files from the npm package, its keypoints on real
LSPET images against PoseEstimator.from_export's, and its network input
against the Python pre-processing's (where a difference would come from).

Chromium is driven through its DevTools protocol over a pipe
(--remote-debugging-pipe: JSON messages ended by NUL on file descriptors 3
and 4), so the test needs nothing beyond the standard library."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, SHARED_DATA, tiny_config
# The calibrated network (batch norm far from the identity) and its workdir.
from tests.deploy.test_export import calibrated, calibrated_workdir  # pylint: disable=unused-import

pytest.importorskip('onnxruntime', reason="the ONNX extra is not installed (pip install "
                    "'rhpe_jax[onnx]'; make setup does)")
pytest.importorskip('jax2onnx', reason="the ONNX extra is not installed (make setup does)")

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
NPM = shutil.which('npm')
IMAGES = ('im00001.jpg', 'im00002.jpg', 'im00003.jpg', 'im00004.jpg')
# The package installed once per checkout (ignored by git, like every build output).
ONNXRUNTIME_WEB_CACHE = REPO / 'build' / 'onnxruntime-web'


class DevTools:
  """Headless Chromium and one page of it, over --remote-debugging-pipe."""

  def __init__(self, chromium: str, profile: str):
    commands_read, self._commands = os.pipe()
    self._replies, replies_write = os.pipe()
    # bash puts the pipes on descriptors 3 and 4, where Chromium looks (sh takes one digit).
    self.process = subprocess.Popen(
        ['bash', '-c', f'exec "$@" 3<&{commands_read} 4>&{replies_write}', 'bash', chromium,
         '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
         '--remote-debugging-pipe', f'--user-data-dir={profile}', 'about:blank'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        pass_fds=(commands_read, replies_write))
    os.close(commands_read)
    os.close(replies_write)
    self._next_id, self._buffer = 0, b''
    target = self.call('Target.createTarget', url='about:blank')['targetId']
    self._session = self.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']

  def call(self, method: str, session: str | None = None, **params):
    self._next_id += 1
    message = {'id': self._next_id, 'method': method, 'params': params}
    if session:
      message['sessionId'] = session
    os.write(self._commands, json.dumps(message).encode() + b'\0')
    while True:
      while b'\0' not in self._buffer:
        chunk = os.read(self._replies, 1 << 20)
        if not chunk:
          raise RuntimeError(f'Chromium closed its DevTools pipe (exit {self.process.poll()})')
        self._buffer += chunk
      text, self._buffer = self._buffer.split(b'\0', 1)
      reply = json.loads(text)
      if reply.get('id') == self._next_id:
        if 'error' in reply:
          raise RuntimeError(f'{method}: {reply["error"]}')
        return reply['result']

  def open(self, url: str) -> None:
    self.call('Page.navigate', self._session, url=url)

  def evaluate(self, expression: str):
    result = self.call('Runtime.evaluate', self._session, expression=expression,
                       returnByValue=True)
    return result['result'].get('value')

  def close(self) -> None:
    self.process.kill()
    self.process.wait()
    os.close(self._commands)
    os.close(self._replies)


def _text_of(devtools: DevTools, element: str, timeout: float) -> str:
  """The text of the page's element `element` once it has some."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    text = devtools.evaluate(f"(document.getElementById('{element}') || {{}}).textContent || ''")
    if text:
      return text
    time.sleep(0.2)
  status = devtools.evaluate("(document.getElementById('status') || {}).textContent")
  raise AssertionError(f'the page wrote nothing into #{element} in {timeout} s; status: {status}')


@pytest.fixture(scope='module')
def onnxruntime_web():
  """onnxruntime-web's folder, installed by npm into the checkout's build/."""
  from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
  if CHROMIUM is None or NPM is None:
    pytest.skip('the browser test needs Debian\'s chromium and npm (make browser-deps '
                f'installs both): chromium {CHROMIUM or "absent"}, npm {NPM or "absent"}')
  folder = ONNXRUNTIME_WEB_CACHE / onnx_export.ONNXRUNTIME_WEB_VERSION
  try:
    onnx_export.onnxruntime_web_files(folder)
  except FileNotFoundError:
    subprocess.run([NPM, 'install', '--prefix', str(folder), '--no-audit', '--no-fund',
                    f'onnxruntime-web@{onnx_export.ONNXRUNTIME_WEB_VERSION}'],
                   check=True, capture_output=True, timeout=600)
  return folder


@pytest.fixture
def served(tmp_path):
  """folder -> its URL, served by python -m http.server (stopped afterwards)."""
  servers = []

  def serve(folder) -> str:
    with socket.socket() as probe:
      probe.bind(('127.0.0.1', 0))
      port = probe.getsockname()[1]
    servers.append(subprocess.Popen(
        [sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1',
         '--directory', str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for _ in range(100):
      try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
        return f'http://127.0.0.1:{port}'
      except OSError:
        time.sleep(0.1)
    raise AssertionError(f'python -m http.server did not start on port {port}')

  yield serve
  for server in servers:
    server.kill()
    server.wait()


@pytest.mark.slow
def test_page_predicts_as_from_export_on_real_images(tiny_data_dir, calibrated_workdir,
                                                     onnxruntime_web, served, tmp_path):
  if not all((SHARED_DATA / 'lspet_sample' / 'images' / name).is_file() for name in IMAGES):
    pytest.skip(f'the real LSPET sample is not at {SHARED_DATA / "lspet_sample"}')
  from rhpe_jax import PoseEstimator  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import crop as crop_lib  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'export'
  export.export_checkpoint(tiny_config(tiny_data_dir), str(calibrated_workdir), str(out),
                           formats='onnx', onnxruntime_web=str(onnxruntime_web))
  (out / 'images').mkdir()
  for name in IMAGES:
    shutil.copyfile(SHARED_DATA / 'lspet_sample' / 'images' / name, out / 'images' / name)
  url = served(out)
  estimator = PoseEstimator.from_export(out)
  devtools = DevTools(CHROMIUM, str(tmp_path / 'profile'))
  distances = []
  try:
    for name in IMAGES:
      devtools.open(f'{url}/index.html?image=images/{name}&show_input=1')
      page = json.loads(_text_of(devtools, 'keypoints', timeout=180))
      assert 'error' not in page, page
      shown = np.frombuffer(base64.b64decode(_text_of(devtools, 'input', timeout=10)), np.uint8)

      image = estimator_lib.as_image(out / 'images' / name)
      centre, side = crop_lib.box_window(None, image.shape, estimator.box_scale)
      expected_input, _ = crop_lib.crop(image, centre, side, estimator.input_size)
      difference = np.abs(shown.astype(int) - expected_input.reshape(-1).astype(int))
      print(name, 'input: max difference', difference.max(), 'differing values',
            np.count_nonzero(difference), 'of', difference.size)
      # Measured: identical (Chromium's and Pillow's JPEG decoders agree here); a
      # decoder of another version may round a few values the other way.
      assert difference.mean() < 0.5, f'{name}: the page\'s input differs from the crop\'s'

      poses = estimator.predict(out / 'images' / name)
      distance = np.linalg.norm(np.asarray(page['keypoints']) - poses.keypoints[0], axis=-1)
      print(name, 'keypoints: median', np.median(distance), 'px, max', distance.max())
      distances.append(distance)
      np.testing.assert_allclose(page['scores'], poses.scores[0], atol=1e-3)
  finally:
    devtools.close()
  assert np.median(np.concatenate(distances)) < 1.0
