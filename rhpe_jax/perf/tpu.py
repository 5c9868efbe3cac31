"""TPU slices described without a TPU: what people rent, as compile-only devices.

`libtpu` (the `jax[tpu]` extra) describes any TPU topology on any host:
`jax.experimental.topologies.get_topology_desc` returns compile-only devices
for which XLA's real TPU compiler runs (`rhpe_jax.perf.aot`). This module names
the slices users rent (Colab's single chips, Cloud's 8-chip hosts) and turns a
name into those devices; each generation's figures are in
`rhpe_jax.perf.hardware`.
"""
from __future__ import annotations

import dataclasses
import os
import re

from rhpe_jax.perf.hardware import CHIPS, MEGACORE, Chip


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU slice: libtpu's topology name and how its hosts are cut."""
  name: str
  topology: str  # e.g. 'v5e:2x4'
  chips_per_host_bounds: tuple[int, int, int] | None = None  # None: libtpu's default
  description: str = ''

  @property
  def generation(self) -> str:
    return self.topology.split(':', 1)[0]

  @property
  def chip(self) -> Chip:
    return CHIPS[self.generation]


PRESETS = {
    'v5e-1': Slice('v5e-1', 'v5e:1x1', (1, 1, 1), "Colab's TPU v5e-1: one chip"),
    'v6e-1': Slice('v6e-1', 'v6e:1x1', (1, 1, 1), "Colab's TPU v6e-1: one chip"),
    'v2-8': Slice('v2-8', 'v2:2x2', None, "Colab's legacy TPU v2-8: 4 chips, 8 cores"),
    'v4-8': Slice('v4-8', 'v4:2x2x1', None, 'Cloud TPU v4-8: 4 chips, one host'),
    'v5e-8': Slice('v5e-8', 'v5e:2x4', (2, 4, 1), 'Cloud TPU v5e-8 (v5litepod-8): 8 chips, one host'),
    'v5p-8': Slice('v5p-8', 'v5p:2x2x1', None, 'Cloud TPU v5p-8: 4 chips, one host'),
    'v6e-8': Slice('v6e-8', 'v6e:2x4', (2, 4, 1), 'Cloud TPU v6e-8: 8 chips, one host'),
}

_TOPOLOGY = re.compile(r'^(v\d+[a-z]?):(\d+(?:x\d+){1,2})$')


class TopologyError(ValueError):
  """A name that is neither a preset nor a topology libtpu describes."""


class LibtpuMissing(OSError):
  """libtpu (the compiler for TPUs) is not installed: an expected failure (an
  OSError, which the command lines report in one line)."""


def resolve(name: str) -> Slice:
  """A preset by name ('v5e-1'), or a raw topology ('v5e:2x2', 'v4:2x2x2')."""
  if name in PRESETS:
    return PRESETS[name]
  match = _TOPOLOGY.match(name)
  if not match or match.group(1) not in CHIPS:
    raise TopologyError(
        f'unknown TPU topology {name!r}: use a preset ({", ".join(PRESETS)}) or '
        f'GENERATION:SHAPE with a generation of {", ".join(CHIPS)} (e.g. v5e:2x2, v4:2x2x1)')
  chips = 1
  for side in match.group(2).split('x'):
    chips *= int(side)
  bounds = (1, 1, 1) if chips == 1 else None  # libtpu's default host is bigger than one chip
  return Slice(name, name, bounds, f'{chips} {match.group(1)} chip(s)')


def devices(tpu_slice: Slice) -> list:
  """Compile-only JAX devices of the slice (no TPU needed, libtpu is)."""
  try:
    import libtpu  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    raise LibtpuMissing(
        "libtpu is not installed: pip install -e '.[tpu]' (or 'jax[tpu]' at the "
        'installed jax version) to compile for TPUs on this machine') from error
  # One process may hold libtpu at a time unless told otherwise; compiling for
  # an abstract topology touches no chip, so several may run side by side.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  options = {}
  if tpu_slice.chips_per_host_bounds is not None:
    options['chips_per_host_bounds'] = tpu_slice.chips_per_host_bounds
  if tpu_slice.generation in MEGACORE:
    options['chip_config_name'] = 'megacore'
  try:
    description = topologies.get_topology_desc(
        topology_name=tpu_slice.topology, platform='tpu', **options)
  except Exception as error:  # libtpu's own message names what is wrong
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise TopologyError(f'libtpu cannot describe {tpu_slice.topology!r}: {message}') from error
  return list(description.devices)


def num_hosts(tpu_devices: list) -> int:
  return len({device.process_index for device in tpu_devices})
