"""Data-sheet figures of the accelerators the project measures or compiles for.

One place for every chip's figures: the TPU generations (`CHIPS`: memory,
bandwidth, matrix unit, for `rhpe_jax.perf.aot`'s memory check and roofline
bound) and the dense bfloat16 peak of any device JAX reports
(`peak_bf16_flops`, for the benchmark's MFU and the convolution matrix).

A JAX device is a chip, except on v2/v3 (two TensorCores per chip, each its
own device): `Chip` figures are per JAX device. v4 and v5p run as megacore
(both TensorCores of a chip as one device), as JAX does on them.
"""
from __future__ import annotations

import dataclasses

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
  """Data-sheet figures of one JAX device of a TPU generation."""
  generation: str
  hbm_bytes: int
  peak_bf16_flops: float  # dense, per second
  hbm_bytes_per_s: float
  mxu_width: int  # the matrix unit is mxu_width x mxu_width
  cores_per_chip: int = 1  # JAX devices per chip
  device_kinds: tuple[str, ...] = ()  # lower-case prefixes of JAX's device_kind


# Per chip from the Cloud TPU system architecture pages (v4, v5e, v5p, v6e)
# and Jouppi et al., "A domain-specific supercomputer for training deep neural
# networks", CACM 2020 (v2, v3); v2/v3 figures are halved per TensorCore.
CHIPS = {
    'v2': Chip('v2', 8 * GIB, 46e12 / 2, 700e9 / 2, 128, cores_per_chip=2,
               device_kinds=('tpu v2',)),
    'v3': Chip('v3', 16 * GIB, 123e12 / 2, 900e9 / 2, 128, cores_per_chip=2,
               device_kinds=('tpu v3',)),
    'v4': Chip('v4', 32 * GIB, 275e12, 1200e9, 128, device_kinds=('tpu v4',)),
    'v5e': Chip('v5e', 16 * GIB, 197e12, 819e9, 128, device_kinds=('tpu v5 lite', 'tpu v5e')),
    'v5p': Chip('v5p', 95 * GIB, 459e12, 2765e9, 128, device_kinds=('tpu v5p',)),
    'v6e': Chip('v6e', 32 * GIB, 918e12, 1640e9, 256, device_kinds=('tpu v6',)),
}
MEGACORE = ('v4', 'v5p')

# Dense bfloat16 peak (FLOP/s, without sparsity) per GPU, by a lower-case
# part of JAX's device_kind: H100 SXM and H200 989.4 TFLOP/s (NVIDIA
# H100/H200 Tensor Core GPU datasheets), A100 312 (NVIDIA A100 datasheet).
GPU_PEAK_BF16_FLOPS = {'h100': 989.4e12, 'h200': 989.4e12, 'a100': 312.0e12}


def peak_bf16_flops(device_kind: str) -> float | None:
  """The dense bfloat16 peak of a JAX device (`device.device_kind`, e.g.
  'NVIDIA H200', 'TPU v5 lite'), or None where no data sheet is known."""
  kind = device_kind.lower()
  for chip in CHIPS.values():
    if any(kind.startswith(prefix) for prefix in chip.device_kinds):
      return chip.peak_bf16_flops
  for name, peak in GPU_PEAK_BF16_FLOPS.items():
    if name in kind:
      return peak
  return None
