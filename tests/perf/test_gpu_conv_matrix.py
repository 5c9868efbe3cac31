"""rhpe_jax.perf.gpu_conv_matrix and its command line: the layer list, the
parsers, the table writer, and an end-to-end run on tiny shapes (CPU)."""
import json
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

from rhpe_jax.model import conv
from rhpe_jax.model import flops
from rhpe_jax.model import network as model_lib
from rhpe_jax.perf import gpu_conv_matrix as matrix_lib

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_network_layers_are_the_networks_convolutions():
  net = model_lib.RecurrentPoseNet(dtype=jnp.bfloat16)
  layers = matrix_lib.network_layers(net, 2, 248)
  # Every convolution of flops.py's hand-written layer list, the fusion
  # module's first layer split into its skip and state parts, and the heads
  # of every stage: the same FLOPs.
  reference = flops.network_layers(net, 248, 248)
  expected = sum(l.conv_flops for l in reference.convolutions + reference.intermediate_heads)
  assert sum(l.gflop(1) * 1e9 * l.count for l in layers) == pytest.approx(expected, rel=1e-12)
  names = [l.name for l in layers]
  assert len(names) == len(set(names)) == 16
  assert names[0] == '3x3 3>64 @248' and layers[0].takes_image
  assert not any(l.takes_image for l in layers[1:])
  counts = {l.name: l.count for l in layers}
  assert counts['3x3 128>128 @62'] == 2
  assert counts['7x7 128>64 @62'] == counts['7x7 256>64 @62'] == 3  # skip and state parts
  assert counts['1x1 256>16 @62'] == counts['1x1 256>15 @62'] == 4  # heads of 4 stages


def test_hlo_summary_names_library_calls_and_cudnn_algorithms():
  gpu = ('  %cudnn-conv.1 = (bf16[20,64,62,62]{3,2,1,0}, u8[0]{0}) custom-call(%p0, %p1), '
         'window={size=13x13 pad=6_6x6_6}, custom_call_target="__cudnn$convForward", '
         'backend_config={"cudnn_conv_backend_config":{"algorithm":{"algo_id":"10",'
         '"math_type":"DEFAULT_MATH"}}}\n'
         '  %fusion.2 = bf16[8,8]{1,0} fusion(%a, %b), kind=kCustom, '
         'backend_config={"fusion_backend_config":{"kind":"__triton_gemm"}}\n')
  assert matrix_lib.hlo_summary(gpu) == ['__cudnn$convForward algo 10', '__triton_gemm']
  cpu = ('  %convolution.1 = f32[2,8,8,4]{3,2,1,0} convolution(%a, %b)\n'
         '  %dot.2 = f32[8,4]{1,0} dot(%c, %d)\n  %dot.3 = f32[8,4]{1,0} dot(%c, %e)\n')
  assert matrix_lib.hlo_summary(cpu) == ['convolution x1', 'dot x2']


def test_device_kernels_sums_each_windows_device_events():
  trace = {'traceEvents': [
      {'ph': 'M', 'pid': 1, 'name': 'process_name', 'args': {'name': '/device:GPU:0'}},
      {'ph': 'M', 'pid': 2, 'name': 'process_name', 'args': {'name': '/host:CPU'}},
      {'ph': 'M', 'pid': 3, 'name': 'process_name', 'args': {'name': '/device:CUSTOM:x'}},
      {'ph': 'X', 'pid': 2, 'name': 'rhpe_item:0', 'ts': 100.0, 'dur': 50.0},
      {'ph': 'X', 'pid': 2, 'name': 'rhpe_item:1', 'ts': 200.0, 'dur': 50.0},
      {'ph': 'X', 'pid': 1, 'name': 'gemm', 'ts': 110.0, 'dur': 5.0},
      {'ph': 'X', 'pid': 1, 'name': 'gemm', 'ts': 120.0, 'dur': 7.0},
      {'ph': 'X', 'pid': 1, 'name': 'pad', 'ts': 130.0, 'dur': 1.0},
      {'ph': 'X', 'pid': 1, 'name': 'implicit_convolve_sgemm', 'ts': 210.0, 'dur': 30.0},
      {'ph': 'X', 'pid': 1, 'name': 'between', 'ts': 170.0, 'dur': 3.0},
      {'ph': 'X', 'pid': 3, 'name': 'not a device', 'ts': 215.0, 'dur': 3.0},
      {'ph': 'X', 'pid': 2, 'name': 'host work', 'ts': 220.0, 'dur': 3.0}]}
  windows = matrix_lib._trace_windows(trace, 'rhpe_item:')
  assert windows == {'rhpe_item:0': (100.0, 150.0), 'rhpe_item:1': (200.0, 250.0)}
  assert matrix_lib.device_kernels(trace, windows) == {
      'rhpe_item:0': [('gemm', 12.0), ('pad', 1.0)],
      'rhpe_item:1': [('implicit_convolve_sgemm', 30.0)]}


def _layer(kernel, cin, cout, count=1, takes_image=False):
  return dict(height=62, width=62, kernel=kernel, in_features=cin, out_features=cout,
              count=count, takes_image=takes_image)


def _results(layer, variant, forward, input_grad, weight_grad, error=0.004):
  return [{'layer': layer, 'variant': variant, 'op': 'forward', 'ms': forward, 'max_error': error},
          {'layer': layer, 'variant': variant, 'op': 'input_grad', 'ms': input_grad},
          {'layer': layer, 'variant': variant, 'op': 'weight_grad', 'ms': weight_grad}]


def _matrix():
  layers = [_layer(3, 3, 64, takes_image=True), _layer(13, 64, 64, count=3),
            _layer(9, 128, 256), _layer(1, 256, 15, count=4)]
  results = (
      # layer 0: im2col wins on forward + weight gradient (its input gradient,
      # which training does not compute, is slow)
      _results(0, 'xla', 1.0, 1.0, 1.0) + _results(0, 'im2col', 0.5, 9.0, 0.5)
      # layer 1: taps 2 % faster only, below --min_gain; a flag set is faster
      # but is not a form
      + _results(1, 'xla', 3.0, 3.0, 3.0) + _results(1, 'taps', 2.95, 2.95, 2.95)
      + _results(1, 'xla[nhwc_off]', 1.0, 1.0, 1.0) + _results(1, 'torch', 0.1, 0.1, 0.1)
      # layer 2: winograd fastest but inexact; im2col_rows next
      + _results(2, 'xla', 2.0, 2.0, 2.0) + _results(2, 'winograd', 0.5, 0.5, 0.5, error=0.05)
      + _results(2, 'im2col_rows', 1.5, 1.5, 1.5)
      # layer 3: channels_padded faster, but a pass is missing (out of time)
      + _results(3, 'xla', 1.0, 1.0, 1.0) + _results(3, 'channels_padded', 0.1, 0.1, 0.1)[:2]
      + [{'layer': 3, 'variant': 'channels_padded', 'op': 'weight_grad', 'skipped': 'budget'}])
  meta = {'platform': 'cuda', 'batch': 20, 'dtype': 'bfloat16', 'image_size': 248,
          'device': 'test', 'passes': list(matrix_lib.PASSES)}
  return {'meta': meta, 'layers': layers, 'results': results}


def test_table_winners_need_a_gain_a_small_error_and_every_pass():
  winners = matrix_lib.table_winners(_matrix(), min_gain=0.05, max_error_ratio=4.0)
  assert winners == {('cuda', 62, 62, 3, 3, 3, 64, 'bfloat16'): 'im2col',
                     ('cuda', 62, 62, 9, 9, 128, 256, 'bfloat16'): 'im2col_rows'}
  assert matrix_lib.table_winners(_matrix(), min_gain=0.01, max_error_ratio=4.0)[
      ('cuda', 62, 62, 13, 13, 64, 64, 'bfloat16')] == 'taps'


def _entry(platform, height, kernel, cin, cout, dtype, form):
  return {'platform': platform, 'height': height, 'width': height, 'kernel_height': kernel,
          'kernel_width': kernel, 'in_features': cin, 'out_features': cout, 'dtype': dtype,
          'form': form}


def _table_entries(path):
  """The table file's entries as JSON has them (not through rhpe_jax's reader)."""
  return json.loads(pathlib.Path(path).read_text())['entries']


def test_write_table_replaces_the_platforms_entries_only(tmp_path):
  table = tmp_path / 'conv_table.json'
  table.write_text(json.dumps({'entries': [
      _entry('cuda', 8, 3, 8, 8, 'bfloat16', 'taps'), _entry('cpu', 8, 3, 8, 8, 'float32', 'xla')]}))
  matrix = tmp_path / 'matrix.json'
  matrix.write_text(json.dumps(_matrix()))
  matrix_lib.write_table(matrix, table, min_gain=0.05, max_error_ratio=4.0)
  # The cuda entry that the matrix did not measure is gone, the cpu one stays;
  # one entry per line, sorted.
  expected = [_entry('cpu', 8, 3, 8, 8, 'float32', 'xla'),
              _entry('cuda', 62, 3, 3, 64, 'bfloat16', 'im2col'),
              _entry('cuda', 62, 9, 128, 256, 'bfloat16', 'im2col_rows')]
  assert _table_entries(table) == expected
  assert [json.loads(line.strip().rstrip(',')) for line in table.read_text().splitlines()[2:-1]
          ] == expected
  # What the model reads from it.
  assert conv.read_table(table) == {
      ('cpu', 8, 8, 3, 3, 8, 8, 'float32'): 'xla',
      ('cuda', 62, 62, 3, 3, 3, 64, 'bfloat16'): 'im2col',
      ('cuda', 62, 62, 9, 9, 128, 256, 'bfloat16'): 'im2col_rows'}
  fresh = tmp_path / 'new_table.json'  # no table yet: the winners alone
  matrix_lib.write_table(matrix, fresh, min_gain=0.05, max_error_ratio=4.0)
  assert _table_entries(fresh) == expected[1:]


def _run(*args, **kwargs):
  return subprocess.run([sys.executable, '-m', 'experiments.gpu_conv_matrix', *args],
                        cwd=REPO, capture_output=True, text=True, check=False, **kwargs)


def test_matrix_runs_end_to_end_on_tiny_shapes_and_writes_the_table(tmp_path, monkeypatch,
                                                                   capsys):
  monkeypatch.setenv('RHPE_JAX_CACHE_DIR', str(tmp_path / 'cache'))
  out = tmp_path / 'matrix.json'
  result = _run('--tiny', '--layers=2', '--variants=xla,im2col', '--passes=forward,weight_grad',
                '--flag_sets=base,nhwc_off', '--torch=off', '--budget_s=300', f'--out={out}',
                timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  matrix = json.loads(out.read_text())
  assert matrix['meta']['platform'] in conv.PLATFORMS
  assert [p['flag_set'] for p in matrix['meta']['processes']] == ['base', 'nhwc_off']
  assert '--xla_gpu_force_conv_nhwc=false' in matrix['meta']['processes'][1]['xla_flags']
  assert len(matrix['layers']) == 1
  timed = {(r['layer'], r['variant'], r['op']): r['ms'] for r in matrix['results']}
  assert set(timed) == {(0, variant, op)
                        for variant in ('xla', 'im2col', 'xla[nhwc_off]')
                        for op in ('forward', 'weight_grad')}
  assert all(ms > 0 for ms in timed.values())
  assert all(r['max_error'] < 0.02 for r in matrix['results'])  # bfloat16 rounding
  assert 'best per layer' in result.stdout and 'xla[nhwc_off]' in result.stdout
  table = tmp_path / 'conv_table.json'
  matrix_lib.write_table(out, table, min_gain=0.0, max_error_ratio=4.0)
  entries = _table_entries(table)
  assert f'{table}: {len(entries)} entries for {matrix["meta"]["platform"]}' in (
      capsys.readouterr().out)
  assert {e['form'] for e in entries} <= {'im2col'}
  assert all(e['platform'] == matrix['meta']['platform'] for e in entries)


def _one_error_line(result, status, message):
  lines = result.stderr.strip().splitlines()
  assert result.returncode == status and len(lines) == 1, (result.returncode, lines)
  assert lines[0].startswith(f'error: {message}'), lines


def test_bad_arguments_fail_with_one_line(tmp_path):
  _one_error_line(_run('--variants=xla,fft', f'--out={tmp_path / "m.json"}'), 1,
                  "--variants: unknown ['fft']")
  _one_error_line(_run('--torch=off'), 2, '--out is required')
  with pytest.raises(OSError, match='^matrix_path .*missing.json'):
    matrix_lib.write_table(tmp_path / 'missing.json', tmp_path / 't.json', min_gain=0.05,
                           max_error_ratio=4.0)
  (tmp_path / 'bad.json').write_text('{"meta": {}}')
  with pytest.raises(ValueError, match='^matrix_path .*bad.json: not a matrix'):
    matrix_lib.write_table(tmp_path / 'bad.json', tmp_path / 't.json', min_gain=0.05,
                           max_error_ratio=4.0)
