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
