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
from rhpe_jax.core import runtime
from rhpe_jax.perf import aot
from rhpe_jax.perf import aot_report
from rhpe_jax.perf import hardware
from rhpe_jax.perf import tpu
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


def test_a_search_cut_short_reports_the_bracket_it_reached():
  compile_at, calls = fake_compiler(100.0, 1000.0, 10_000.0)  # 88 is the largest
  largest, reports = aot.find_max_batch(compile_at, 20, max_compiles=2)
  assert len(calls) == 2 and largest == max(b for b in calls if b <= 88)
  report = lambda low, high: {'max_batch': {'batch_per_chip': low},
                              'smallest_batch_not_fitting': high}
  assert aot_report.largest_batch_cell(report(88, 89)) == '88'
  assert aot_report.largest_batch_cell(report(20, 120)) == '>= 20 (< 120)'
  assert aot_report.largest_batch_cell(report(20, None)) == '>= 20'


def test_the_roofline_bound_is_the_slower_of_compute_and_memory():
  chip = hardware.CHIPS['v5e']  # 197 TFLOP/s, 819 GB/s
  compute_heavy = aot.roofline_seconds(197e12 * 0.01, 819e9 * 0.002, chip)
  assert compute_heavy['roofline_step_s'] == pytest.approx(0.01)
  assert compute_heavy['bound_by'] == 'compute'
  memory_heavy = aot.roofline_seconds(197e12 * 0.001, 819e9 * 0.03, chip)
  assert memory_heavy['roofline_step_s'] == pytest.approx(0.03)
  assert memory_heavy['bound_by'] == 'memory'


def test_matrix_unit_fill_of_the_papers_layers():
  config = mpii.get_config()
  layers = lambda chip: aot.mxu_fill(config, hardware.CHIPS[chip])
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
  assert aot_report.default_batch_per_chip(20, 4) == 5
  with pytest.raises(ValueError, match='batch_size 20 does not split over 8 chips'):
    aot_report.default_batch_per_chip(20, 8)


def notebook_config():
  """The Colab notebook's own configuration on one TPU chip: its parameters
  cell's defaults applied to the demo config as its training cell does."""
  import nbformat  # pylint: disable=g-import-not-at-top
  from experiments.configs import demo  # pylint: disable=g-import-not-at-top
  notebook = nbformat.read(REPO / 'experiments' / 'colab_tpu.ipynb', as_version=4)
  parameters = next(cell.source for cell in notebook.cells
                    if cell.cell_type == 'code' and 'BATCH_PER_DEVICE' in cell.source)
  values = {}
  saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith('RHPE_NB_')}
  try:
    exec(parameters, values)  # pylint: disable=exec-used
  finally:
    os.environ.update(saved)
  config = demo.get_config()
  config.width, config.input_size = values['WIDTH'], values['INPUT_SIZE']
  config.batch_size = values['BATCH_PER_DEVICE']  # one device
  config.compute_dtype = 'bfloat16'  # as the notebook sets on a TPU
  return config


def _check_the_train_step_on_a_v5e_1(config, capsys, flop_excess: float) -> None:
  """config's training step compiled for Colab's v5e-1: it fits, the state is
  donated, XLA's FLOPs cover the project's count (its convolutions) and exceed
  it by less than flop_excess (the element-wise work), the roofline bound."""
  results = aot_report.run(config, 'v5e-1', what=('train_step',))
  (report,) = results['steps']
  assert (report['device_kind'], report['chips'], report['global_batch']) == (
      'TPU v5 lite', 1, config.batch_size)
  memory = report['memory_per_chip']
  assert memory['total'] == (memory['arguments'] + memory['outputs'] - memory['aliased']
                             + memory['temporaries'] + memory['generated_code'])
  assert report['fits'] and memory['total'] < 16 * 2**30
  # The state is donated: the new state is written over the old one.
  import jax  # pylint: disable=g-import-not-at-top
  state = aot.abstract_train_state(config)
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(
      (state.params, state.batch_stats, state.opt_state)))
  assert state_bytes <= memory['aliased'] <= memory['arguments']
  project = report['project_gflop_per_chip']
  assert project <= report['xla_network_gflop_per_chip'] <= (1 + flop_excess) * project
  estimate = report['estimate']
  assert estimate['roofline_step_s'] == max(estimate['compute_bound_s'],
                                            estimate['memory_bound_s'])
  assert estimate['compute_bound_s'] == pytest.approx(
      report['xla_gflop_per_chip'] * 1e9 / 197e12)  # v5e's data-sheet peak
  assert 'train_step' in capsys.readouterr().out


@needs_libtpu
@pytest.mark.slow
def test_the_colab_notebook_configuration_compiles_for_a_v5e_1(capsys):
  """The notebook's own network (about 2-6 minutes of compilation on 2 CPU
  cores; measured: XLA 115.7 vs the project's 115.5 GFLOP, 0.2 % more)."""
  _check_the_train_step_on_a_v5e_1(notebook_config(), capsys, flop_excess=0.02)


@needs_libtpu
def test_a_sixteenth_width_notebook_network_compiles_for_a_v5e_1(capsys):
  """The fast tier's version of the test above (about 40 CPU-seconds against
  its 300-1000): the same checks on the notebook's configuration at a sixteenth
  of the width and 32 px, where the element-wise work is a larger share of the
  FLOPs (measured: XLA 0.308 vs the project's 0.296 GFLOP, 4.2 % more)."""
  config = notebook_config()
  config.width, config.input_size = 0.0625, 32
  _check_the_train_step_on_a_v5e_1(config, capsys, flop_excess=0.08)


def run_aot(*args: str) -> subprocess.CompletedProcess:
  environ = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, '-m', 'experiments.aot', *args], cwd=REPO,
                        env=environ, text=True, capture_output=True, timeout=600, check=False)


TINY = ('--config=experiments/configs/mpii.py', '--config.width=0.25',
        '--config.input_size=64', '--config.compute_dtype=bfloat16')


def tiny_config():
  """TINY's config, for the library calls."""
  config = mpii.get_config()
  config.width, config.input_size, config.compute_dtype = 0.25, 64, 'bfloat16'
  return config


@needs_libtpu
@pytest.mark.slow
def test_four_abstract_chips_run_the_pmapped_step_and_memory_grows_with_the_batch(tmp_path):
  """The eval step (the training loop's evaluation) pmapped over a v5e:2x2,
  four chips, at 1 image per chip through the command line (its table, JSON
  line and Markdown rows) and at 4 through the library call it makes. (The
  train step of the notebook's network is compiled above; each train-step
  compile costs minutes.)"""
  markdown = tmp_path / 'table.md'
  result = run_aot(*TINY, '--topology=v5e:2x2', '--what=eval_step', '--batch_per_chip=1',
                   f'--markdown={markdown}')
  assert result.returncode == 0, result.stderr[-3000:]
  (small,) = json.loads(result.stdout.strip().splitlines()[-1])['steps']
  assert 'total (GB/chip)' in result.stdout  # the table came first
  assert 'TPU' not in result.stderr  # libtpu's start-up complaints are hidden
  results = aot_report.run(tiny_config(), 'v5e:2x2', what=('eval_step',), batch_per_chip=4,
                           printer=lambda line: None)
  aot_report.write_results(results, markdown_path=str(markdown), printer=lambda line: None)
  (large,) = results['steps']
  assert (small['chips'], small['global_batch'], large['global_batch']) == (4, 4, 16)
  assert small['device_kind'] == 'TPU v5 lite' and small['hosts'] == 1
  for key in ('arguments', 'outputs', 'total'):
    assert large['memory_per_chip'][key] > small['memory_per_chip'][key], key
  # The batch's buffers alone grow by 3 images of 64 x 64 x 3 bytes per chip.
  assert large['memory_per_chip']['arguments'] - small['memory_per_chip']['arguments'] >= (
      3 * 64 * 64 * 3)
  # Each chip computes its share of the batch: 4x the images, 4x the work,
  # and XLA's count agrees with the project's forward count.
  assert large['xla_network_gflop_per_chip'] == pytest.approx(
      4 * small['xla_network_gflop_per_chip'], rel=0.02)
  for report in (small, large):
    assert report['xla_network_gflop_per_chip'] == pytest.approx(
        report['project_gflop_per_chip'], rel=0.02)  # measured: 0.2 % and 0.02 %
  rows = markdown.read_text().splitlines()
  assert rows[0].startswith('| slice |') and len(rows) == 4  # header, rule, two rows
  assert rows[2].startswith('| v5e:2x2 | eval_step | 4 | 1 (4) |')
  assert rows[3].startswith('| v5e:2x2 | eval_step | 4 | 4 (16) |')


@pytest.mark.parametrize('args, status, message', [
    (('--topology=v5e-1', '--what=train_step,backward'), 1, 'unknown step(s) backward'),
    ((), 2, '--topology is required'),
])
def test_bad_arguments_are_one_line(args, status, message):
  """Through the command line: an expected failure (exit 1) and a usage error (exit 2)."""
  result = run_aot(*TINY, *args)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == status
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], lines


@pytest.mark.parametrize('topology, settings, message', [
    ('v7x-8', {}, "unknown TPU topology 'v7x-8': use a preset (v5e-1, v6e-1"),
    ('v5e-1', {'what': ('train_step', 'backward')}, 'unknown step(s) backward'),
    ('v5e-1', {'batch_per_chip': 0}, 'batch_per_chip must be >= 1'),
    ('v5e-1', {'find_max_batch': True, 'max_compiles': 0}, 'max_compiles must be >= 1'),
    pytest.param('v4-8', {'batch_size': 6}, 'batch_size 6 does not split over 4 chips',
                 marks=needs_libtpu),
])
def test_bad_settings_are_one_line_value_errors(topology, settings, message):
  """What the command line reports in one `error:` line (cli.run), raised by the library."""
  config = tiny_config()
  if 'batch_size' in settings:
    config.batch_size = settings.pop('batch_size')
  with pytest.raises(ValueError) as error:
    aot_report.run(config, topology, printer=lambda line: None, **settings)
  assert message in str(error.value) and '\n' not in str(error.value)


def test_a_missing_libtpu_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, 'libtpu', None)  # import libtpu raises ImportError
  with pytest.raises(tpu.LibtpuMissing, match=r"pip install -e '\.\[tpu\]'"):
    tpu.devices(tpu.resolve('v5e-1'))
  assert issubclass(tpu.LibtpuMissing, OSError)  # an expected failure: one `error:` line
