"""TPU slice names (no libtpu needed)."""
from __future__ import annotations

import pytest

from rhpe_jax.perf import tpu


@pytest.mark.parametrize('name, topology, bounds, chips', [
    ('v5e-1', 'v5e:1x1', (1, 1, 1), 1),
    ('v6e-1', 'v6e:1x1', (1, 1, 1), 1),
    ('v4-8', 'v4:2x2x1', None, 4),
    ('v5e-8', 'v5e:2x4', (2, 4, 1), 8),
    ('v5p-8', 'v5p:2x2x1', None, 4),
    ('v6e-8', 'v6e:2x4', (2, 4, 1), 8),
    ('v2-8', 'v2:2x2', None, 4),
])
def test_presets_name_the_rented_slices(name, topology, bounds, chips):
  tpu_slice = tpu.resolve(name)
  assert (tpu_slice.topology, tpu_slice.chips_per_host_bounds) == (topology, bounds)
  sides = [int(side) for side in topology.split(':')[1].split('x')]
  assert sides[0] * sides[1] * (sides[2] if len(sides) == 3 else 1) == chips


def test_raw_topologies_resolve_and_single_chips_get_one_chip_hosts():
  assert tpu.resolve('v5e:2x2').chips_per_host_bounds is None
  assert tpu.resolve('v6e:1x1').chips_per_host_bounds == (1, 1, 1)
  assert tpu.resolve('v4:2x2x2').generation == 'v4'


@pytest.mark.parametrize('name', ['v7x-8', 'v5e', 'tpu', 'v9:2x2', 'v5e:2', 'v5e-2x2'])
def test_unknown_topologies_list_the_presets(name):
  with pytest.raises(tpu.TopologyError) as error:
    tpu.resolve(name)
  message = str(error.value)
  assert name in message and 'v5e-1' in message and 'v6e-8' in message
  assert '\n' not in message
