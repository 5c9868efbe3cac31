"""Crop geometry of the stored person crops, against NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

from rhpe_jax.data import person_crops


def test_crop_image_samples_where_the_transform_says():
  h, w = 200, 256
  img = np.zeros((h, w, 3), np.uint8)
  img[..., 0] = np.arange(w)[None, :]  # value = x: bilinear and box means are exact
  img[..., 1] = np.arange(h)[:, None]  # value = y
  for centre, scale, res in [((128.3, 100.7), 0.1, 64), ((128.3, 100.7), 0.37, 25),
                             ((20.0, 180.0), 0.2, 32), ((250.0, 5.0), 0.5, 32)]:
    a = person_crops.crop_to_image_transform(np.array(centre), scale, res, 2.0)
    side = 400.0 * scale
    # By hand: crop pixel 0 is centred half a step inside the square's edge.
    assert a[0, 0] == pytest.approx(side / res)
    assert a[0, 2] == pytest.approx(centre[0] - side / 2 + side / res / 2)
    crop = person_crops.crop_image(img, a, res).astype(np.float64)
    u, v = np.meshgrid(np.arange(res), np.arange(res))
    x, y = a[0, 0] * u + a[0, 2], a[1, 1] * v + a[1, 2]
    step = a[0, 0]
    inner = (x >= step) & (x <= w - 1 - step) & (y >= step) & (y <= h - 1 - step)
    outer = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
    assert inner.sum() > 100
    assert np.abs(crop[..., 0] - x)[inner].max() <= 0.5 + 1e-9
    assert np.abs(crop[..., 1] - y)[inner].max() <= 0.5 + 1e-9
    assert np.all(crop[outer] == 0)
    pts = np.stack([x, y], -1)
    np.testing.assert_allclose(person_crops.image_to_crop_points(pts, a), np.stack([u, v], -1),
                               atol=1e-9)


def test_crop_fields_map_every_person_into_the_crop_and_zero_the_missing():
  from rhpe_jax.core import keypoint_sets  # pylint: disable=g-import-not-at-top
  image = np.zeros((100, 120, 3), np.uint8)
  # Crop pixels are 2 original pixels; the crop's pixel (0, 0) is centred at (11, 21).
  a = np.array([[2.0, 0.0, 11.0], [0.0, 2.0, 21.0]])
  visible, missing = keypoint_sets.VISIBLE, keypoint_sets.MISSING
  fields = person_crops.crop_fields(
      image, a, 16, np.array([[31.0, 41.0], [5.0, 5.0]]), np.array([visible, missing]),
      others=[(np.array([[11.0, 21.0], [13.0, 25.0]]), np.array([missing, visible]))])
  assert fields['image'].shape == (16, 16, 3)
  np.testing.assert_allclose(fields['keypoints'], [[10.0, 10.0], [0.0, 0.0]])  # by hand
  np.testing.assert_array_equal(fields['keypoint_status'], [visible, missing])
  np.testing.assert_allclose(fields['other_keypoints'], [[[0.0, 0.0], [1.0, 2.0]]])
  np.testing.assert_array_equal(fields['other_keypoint_status'], [[missing, visible]])
  assert fields['other_keypoints'].dtype == np.float32
  assert fields['other_keypoint_status'].dtype == np.int32
  np.testing.assert_array_equal(fields['crop_to_image'], a.astype(np.float32))
  alone = person_crops.crop_fields(image, a, 16, np.zeros((2, 2)), np.array([visible] * 2), [])
  assert alone['other_keypoints'].shape == (0, 2, 2)
  assert alone['other_keypoint_status'].shape == (0, 2)
