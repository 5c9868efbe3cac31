"""Ahead-of-time compilation for abstract TPUs: the search, the bound, the
figures XLA's TPU compiler reports for small networks, and the command line."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from experiments.configs import mpii
from rhpe_jax import aot, runtime, tpu
from tests.conftest import REPO

needs_libtpu = pytest.mark.skipif(
    not runtime._installed('libtpu'),  # pylint: disable=protected-access
    reason="libtpu is not installed (pip install -e '.[test]' brings it)")


def fake_compiler(per_image: float, fixed: float, hbm: float, refuse_above: float | None = None):
  """compile_at for find_max_batch: memory = fixed + per_image * batch, rounded
  up to 8-image tiles as a layout might; a compiler that refuses programs
  above `refuse_above` reports only the temporaries it wanted."""
  calls = []

  def compile_at(batch: int) -> dict:
    calls.append(batch)
    temporaries = per_image * 8 * math.ceil(batch / 8)
    total = fixed + temporaries
    report = {'batch_per_chip': batch, 'hbm_per_chip': hbm}
    if refuse_above is not None and total > refuse_above:
      report['memory_per_chip'] = {'temporaries': temporaries, 'total': None}
      report['compiler_hbm_per_chip'] = refuse_above
      report['fits'] = False
    else:
      report['memory_per_chip'] = {'temporaries': temporaries, 'total': total}
      report['fits'] = total <= hbm
    return report
  return compile_at, calls


def brute_force_max(compile_at, limit=4096) -> int:
  return max([b for b in range(1, limit + 1) if compile_at(b)['fits']], default=0)


@pytest.mark.parametrize('per_image, fixed, hbm, refuse_above, start', [
    (100.0, 1000.0, 10_000.0, None, 20),  # the start fits; the largest is 88
    (137.0, 5000.0, 60_000.0, None, 1),
    (100.0, 1000.0, 10_000.0, 9_500.0, 20),  # the compiler's own limit is lower
    (100.0, 1000.0, 10_000.0, 9_500.0, 400),  # the start does not fit
    (5000.0, 1000.0, 10_000.0, None, 20),  # 1 image fits, 8-image tiles do not... 1 tile
])
def test_the_search_finds_the_largest_fitting_batch_in_few_compiles(
    per_image, fixed, hbm, refuse_above, start):
  compile_at, calls = fake_compiler(per_image, fixed, hbm, refuse_above)
  expected = brute_force_max(fake_compiler(per_image, fixed, hbm, refuse_above)[0])
  largest, reports = aot.find_max_batch(compile_at, start)
  assert largest == expected
  assert len(calls) == len(set(calls)) <= 10  # never the same batch twice
  assert [r['batch_per_chip'] for r in reports] == sorted(calls)
  assert {r['batch_per_chip'] for r in reports if r['fits']} >= {largest} - {0}


def test_the_search_reports_zero_when_nothing_fits_and_stops_at_its_limit():
  compile_at, _ = fake_compiler(100.0, 20_000.0, 10_000.0)
  assert aot.find_max_batch(compile_at, 4)[0] == 0
  compile_at, calls = fake_compiler(1.0, 0.0, 1e9)
  assert aot.find_max_batch(compile_at, 4, limit=64)[0] == 64
  assert max(calls) == 64


def test_the_roofline_bound_is_the_slower_of_compute_and_memory():
  chip = tpu.CHIPS['v5e']  # 197 TFLOP/s, 819 GB/s
  compute_heavy = aot.roofline_seconds(197e12 * 0.01, 819e9 * 0.002, chip)
  assert compute_heavy['roofline_step_s'] == pytest.approx(0.01)
  assert compute_heavy['bound_by'] == 'compute'
  memory_heavy = aot.roofline_seconds(197e12 * 0.001, 819e9 * 0.03, chip)
  assert memory_heavy['roofline_step_s'] == pytest.approx(0.03)
  assert memory_heavy['bound_by'] == 'memory'


def test_matrix_unit_fill_of_the_papers_layers():
  config = mpii.get_config()
  layers = lambda chip: aot.mxu_fill(config, tpu.CHIPS[chip])
  by_shape = lambda chip: {(l['kernel'], l['in_features'], l['out_features']): l
                           for l in layers(chip)}
  v5e, v6e = by_shape('v5e'), by_shape('v6e')
  # 7x7 384->64 (concat(skip 128, state 256) -> 64): 384 of 384 and 64 of 128
  # lanes on a 128-wide unit; 384 of 512 and 64 of 256 on a 256-wide one.
  assert v5e[(7, 384, 64)]['fill'] == pytest.approx(0.5)
  assert v6e[(7, 384, 64)]['fill'] == pytest.approx(384 / 512 * 64 / 256)
  assert v5e[(9, 256, 512)]['fill'] == 1.0
  assert v5e[(3, 3, 64)]['fill'] is None  # the image layer: taps folded into the contraction
  assert sum(l['flop_share'] for l in layers('v5e')) == pytest.approx(1.0)


def test_batches_that_do_not_split_over_the_chips_are_refused():
  from experiments import aot as aot_cli  # pylint: disable=g-import-not-at-top
  assert aot_cli.default_batch_per_chip(20, 4) == 5
  with pytest.raises(ValueError, match='batch_size 20 does not split over 8 chips'):
    aot_cli.default_batch_per_chip(20, 8)
