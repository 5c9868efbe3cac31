"""The data sheets: TPU chip figures per JAX device, and the peak of any device kind."""
from __future__ import annotations

import pytest

from rhpe_jax.perf import hardware


def test_chip_figures_are_per_jax_device():
  # Data sheets: v5e 197 TFLOP/s, 16 GB, 819 GB/s per chip; v3 123 TFLOP/s and
  # 32 GiB per chip of two TensorCores, each its own JAX device.
  v5e, v3 = hardware.CHIPS['v5e'], hardware.CHIPS['v3']
  assert (v5e.peak_bf16_flops, v5e.hbm_bytes, v5e.hbm_bytes_per_s) == (197e12, 16 * 2**30, 819e9)
  assert v3.cores_per_chip == 2
  assert v3.peak_bf16_flops * 2 == 123e12 and v3.hbm_bytes * 2 == 32 * 2**30
  assert hardware.CHIPS['v6e'].mxu_width == 256 and hardware.CHIPS['v5e'].mxu_width == 128


@pytest.mark.parametrize('device_kind, peak', [
    # Dense bf16 data-sheet peaks (TFLOP/s): NVIDIA's H100 SXM/H200 and A100
    # datasheets, Google Cloud's TPU system architecture pages; JAX's device
    # kinds as the devices report them.
    ('NVIDIA H200', 989.4), ('NVIDIA H100 80GB HBM3', 989.4), ('NVIDIA A100-SXM4-40GB', 312.0),
    ('TPU v4', 275.0), ('TPU v5 lite', 197.0), ('TPU v5e', 197.0), ('TPU v5p', 459.0),
    ('TPU v6 lite', 918.0), ('TPU v3', 61.5),  # v3: one TensorCore, half a chip
    ('cpu', None), ('NVIDIA GeForce RTX 4090', None),
])
def test_peak_of_a_device_kind(device_kind, peak):
  found = hardware.peak_bf16_flops(device_kind)
  if peak is None:
    assert found is None
  else:
    assert found == pytest.approx(peak * 1e12)
