"""The numpy crop against the training pipeline's TensorFlow warp
(rhpe_jax.data.augment.warp_image) on the shared LSPET images, and the
window arithmetic by hand."""
import numpy as np
import pytest

from rhpe_jax.inference import crop
from tests.conftest import SHARED_DATA

LSPET = SHARED_DATA / 'lspet_sample'
IMAGES = 40  # of the sample's 300; two windows and two input sizes each


def _tf_crop(image, centre, side, size):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top
  matrix = augment.input_to_stored_matrix(tf.constant(centre, tf.float64),
                                          tf.constant(side, tf.float64), size,
                                          augment.identity_params())
  return augment.warp_image(tf.constant(image), matrix, size).numpy(), matrix.numpy()


def test_the_crop_is_the_training_pipelines_on_lspet():
  """Pixels and input-to-image matrices of the LSPET persons' windows (the
  box of their annotated joints, as the builder's fallback window) and of
  the whole images; the joints carried into the crop move by < 0.1 px."""
  from rhpe_jax.data import image_io, lsp_annotations  # pylint: disable=g-import-not-at-top
  if not (LSPET / 'joints.mat').is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET}')
  joints = lsp_annotations.load_joints(LSPET / 'joints.mat', 'extended')
  pixel_difference, shift, crops = 0, 0.0, 0
  for index in range(IMAGES):
    image = image_io.read_image(str(LSPET / 'images' / f'im{index + 1:05d}.jpg'))
    known = joints.status[index] > 0
    points = joints.keypoints[index][known]
    lo, hi = points.min(0), points.max(0)
    person = (tuple((lo + hi) / 2), 1.5 * float(np.max(hi - lo)))
    for centre, side in (person, crop.window(image.shape, None, None, 1.0)):
      for size in (64, 248):
        pixels, matrix = crop.crop(image, centre, side, size)
        reference, reference_matrix = _tf_crop(image, centre, side, size)
        assert pixels.dtype == np.uint8 and pixels.shape == (size, size, 3)
        pixel_difference = max(pixel_difference,
                               int(np.abs(pixels.astype(int) - reference.astype(int)).max()))
        into = lambda m: (points - m[:2, 2]) @ np.linalg.inv(m[:2, :2]).T
        shift = max(shift, float(np.abs(into(matrix) - into(reference_matrix)).max()))
        crops += 1
  print(f'{crops} LSPET crops: largest pixel difference {pixel_difference} (of 255), '
        f'largest keypoint shift {shift:.2e} px')
  assert pixel_difference <= 1
  assert shift < 0.1


def test_window_and_matrix_by_hand():
  assert crop.window((100, 300, 3), None, None, 1.5) == ((149.5, 49.5), 300.0)
  assert crop.window((100, 300, 3), (5, 6), 2.0, 1.5) == ((5.0, 6.0), 600.0)
  with pytest.raises(ValueError, match='scale'):
    crop.window((10, 10, 3), (5, 6), None, 1.5)
  # A box 40 wide, 100 tall at (10, 20): centre (30, 70), scale 0.5.
  assert crop.box_window((10, 20, 40, 100), (300, 300, 3), 1.0) == ((30.0, 70.0), 100.0)
  with pytest.raises(ValueError, match='positive width and height'):
    crop.box_window((0, 0, -1, 5), (10, 10, 3), 1.0)
  # Side 8 on 4 input pixels: input pixel centres 0..3 -> 2 image pixels apart,
  # the input's centre 1.5 -> the window's centre.
  matrix = crop.input_to_image((10.0, 20.0), 8.0, 4)
  np.testing.assert_allclose(matrix[:2] @ [1.5, 1.5, 1], [10.0, 20.0])
  np.testing.assert_allclose(matrix[:2] @ [0, 0, 1], [7.0, 17.0])


def test_bilinear_sampling_by_hand():
  source = np.array([[0, 10], [20, 30]], np.float32)[..., None]
  # Half a pixel right and down: the mean of the four; beyond the edge, zeros.
  half = crop.sample_bilinear(source, [[1, 0, 0.5], [0, 1, 0.5]], 2, 2)[..., 0]
  np.testing.assert_allclose(half, [[15.0, 0.5 * (10 + 30) / 2], [0.5 * (20 + 30) / 2, 30 / 4]])
