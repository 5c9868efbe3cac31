"""The AOT command line's work: compile the steps for a TPU slice
(`rhpe_jax.perf.aot`), print the table, write the JSON line and Markdown rows.

Every time and rate here is an estimate (XLA's cost analysis and data-sheet
peaks), never a measurement; docs/tpu.md reads the results.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from rhpe_jax.perf import aot
from rhpe_jax.perf import hardware
from rhpe_jax.perf import tpu

# MPII's training split holds about 25,000 persons: the epoch length of the
# time-to-train estimate unless told otherwise.
MPII_TRAIN_PERSONS = 25_000


def default_batch_per_chip(global_batch: int, chips: int) -> int:
  """The config's global batch split over the chips; it must divide."""
  if global_batch % chips:
    raise ValueError(f'batch_size {global_batch} does not split over {chips} chips: '
                     f'give batch_per_chip (or a batch_size that is a multiple of {chips})')
  return global_batch // chips


def run(config, topology: str, *, what: Sequence[str] = ('train_step', 'predict_step'),
        batch_per_chip: int | None = None, find_max_batch: bool = False,
        max_compiles: int = 10, epochs: int | None = None,
        epoch_examples: int | None = None,
        printer=print) -> dict[str, Any]:
  """Compiles each step of `what` for the slice, prints the table; returns the results."""
  unknown = [step for step in what if step not in aot.STEPS]
  if unknown:
    raise ValueError(f'what: unknown step(s) {", ".join(unknown)}; '
                     f'choose from {", ".join(aot.STEPS)}')
  if batch_per_chip is not None and batch_per_chip < 1:
    raise ValueError(f'batch_per_chip must be >= 1, got {batch_per_chip}')
  if max_compiles < 1:
    raise ValueError(f'max_compiles must be >= 1, got {max_compiles}')
  tpu_slice = tpu.resolve(topology)
  devices = tpu.devices(tpu_slice)
  if batch_per_chip is None:
    batch_per_chip = default_batch_per_chip(config.batch_size, len(devices))
  epochs = config.num_epochs if epochs is None else epochs
  epoch_examples = MPII_TRAIN_PERSONS if epoch_examples is None else epoch_examples
  printer(f'{tpu_slice.name}: {tpu_slice.description or tpu_slice.topology}; '
          f'{len(devices)} x {devices[0].device_kind}, {tpu.num_hosts(devices)} host(s), '
          f'{tpu_slice.chip.hbm_bytes / hardware.GIB:.0f} GiB HBM per '
          f'{"core (a JAX device)" if tpu_slice.chip.cores_per_chip > 1 else "chip"}')
  results = {'topology': tpu_slice.topology, 'preset': tpu_slice.name, 'steps': []}
  for step in what:
    compile_at = lambda batch, step=step: _compile(step, config, tpu_slice, devices, batch,
                                                     printer)
    if find_max_batch:
      largest, reports = aot.find_max_batch(compile_at, batch_per_chip,
                                            max_compiles=max_compiles)
      report = next(r for r in reports if r['batch_per_chip'] == batch_per_chip)
      report['searched_batches'] = [r['batch_per_chip'] for r in reports]
      report['max_batch'] = next((r for r in reports if r['batch_per_chip'] == largest), None)
      refused = [r['batch_per_chip'] for r in reports if not r['fits']]
      report['smallest_batch_not_fitting'] = min(refused) if refused else None
      printer(f'  {step}: largest batch per chip that fits: {largest_batch_cell(report)} '
              f'({len(reports)} compiles'
              f'{"" if _search_closed(report) else "; cut short by max_compiles"})')
    else:
      report = compile_at(batch_per_chip)
    if step == 'train_step':
      for each in (report, report.get('max_batch')):
        if each and 'estimate' in each:
          each['estimate'].update(epochs=epochs, epoch_examples=epoch_examples,
                                  train_hours=epochs * epoch_examples
                                  / each['estimate']['images_per_s'] / 3600)
    results['steps'].append(report)
  results['mxu_fill'] = aot.mxu_fill(config, tpu_slice.chip)
  printer(format_table(results))
  return results


def _compile(step, config, tpu_slice, devices, batch, printer) -> dict[str, Any]:
  printer(f'  compiling {step} at {batch} per chip ...')
  report = aot.compile_and_analyse(step, config, tpu_slice, devices, batch)
  total = report['memory_per_chip']['total']
  need = total if total is not None else report['memory_per_chip']['temporaries']
  printer(f'    {report["compile_s"]:.0f} s; {"fits" if report["fits"] else "does not fit"}: '
          f'{need / 1e9:.2f} GB{"" if total is not None else " of temporaries"} per chip')
  return report


def _largest_fitting(report: dict[str, Any]) -> int:
  return report['max_batch']['batch_per_chip'] if report['max_batch'] else 0


def _search_closed(report: dict[str, Any]) -> bool:
  """Whether a search's bracket closed: the batch after the largest that fits was refused."""
  return report.get('smallest_batch_not_fitting') == _largest_fitting(report) + 1


def largest_batch_cell(report: dict[str, Any]) -> str:
  """What a search established: '404' when it closed its bracket, '>= 404
  (< 415)' when cut short."""
  largest = _largest_fitting(report)
  if _search_closed(report):
    return str(largest)
  refused = report.get('smallest_batch_not_fitting')
  return f'>= {largest}' + (f' (< {refused})' if refused is not None else '')


def _gb(value) -> str:
  return '-' if value is None else f'{value / 1e9:.2f}'


def format_table(results: dict[str, Any]) -> str:
  """The results as a readable table (estimates marked as such)."""
  lines = [f'{"":30s}' + ''.join(f'{r["what"]:>16s}' for r in results['steps'])]

  def row(label, fn):
    cells = []
    for report in results['steps']:
      try:
        cells.append(fn(report))
      except (KeyError, TypeError):
        cells.append('-')
    lines.append(f'{label:30s}' + ''.join(f'{cell:>16s}' for cell in cells))

  memory = lambda key: lambda r: _gb(r['memory_per_chip'][key])
  row('batch per chip / global', lambda r: f'{r["batch_per_chip"]} / {r["global_batch"]}')
  row('arguments (GB/chip)', memory('arguments'))
  row('outputs (GB/chip)', memory('outputs'))
  row('  of them aliased (GB/chip)', memory('aliased'))
  row('temporaries (GB/chip)', memory('temporaries'))
  row('generated code (GB/chip)', memory('generated_code'))
  row('total (GB/chip)', memory('total'))
  row('HBM (GB/chip)', lambda r: _gb(r['hbm_per_chip']))
  row('fits', lambda r: 'yes' if r['fits'] else 'NO')
  row('XLA GFLOP/chip/step', lambda r: f'{r["xla_gflop_per_chip"]:.1f}')
  row('  without targets', lambda r: f'{r["xla_network_gflop_per_chip"]:.1f}')
  row('project GFLOP/chip/step', lambda r: f'{r["project_gflop_per_chip"]:.1f}')
  row('XLA GB accessed/chip/step', lambda r: f'{r["xla_gb_accessed_per_chip"]:.1f}')
  row('estimate: roofline step (ms)', lambda r: f'{1e3 * r["estimate"]["roofline_step_s"]:.1f}')
  row('estimate: bound by', lambda r: r['estimate']['bound_by'])
  row('estimate: images/s', lambda r: f'{r["estimate"]["images_per_s"]:.0f}')
  row('estimate: XLA optimal (ms)', lambda r: f'{1e3 * r["estimate"]["xla_optimal_seconds"]:.1f}')
  row('estimate: training (hours)', lambda r: f'{r["estimate"]["train_hours"]:.1f}')
  row('compile time (s)', lambda r: f'{r["compile_s"]:.0f}')
  largest = lambda r: r['max_batch']
  row('largest batch per chip', largest_batch_cell)
  row('  its total (GB/chip)', lambda r: _gb(largest(r)['memory_per_chip']['total']))
  row('  estimate: step (ms)', lambda r: f'{1e3 * largest(r)["estimate"]["roofline_step_s"]:.1f}')
  row('  estimate: images/s', lambda r: f'{largest(r)["estimate"]["images_per_s"]:.0f}')
  row('  estimate: training (hours)', lambda r: f'{largest(r)["estimate"]["train_hours"]:.1f}')
  poor = [f'{l["kernel"]}x{l["kernel"]} {l["in_features"]}->{l["out_features"]} '
          f'({100 * l["flop_share"]:.0f} % of FLOPs, {100 * l["fill"]:.0f} % fill)'
          for l in results.get('mxu_fill', []) if l['fill'] is not None and l['fill'] < 0.99]
  if poor:
    lines.append('estimate: layers that fill the matrix unit partly: ' + '; '.join(poor))
  return '\n'.join(lines)


MARKDOWN_HEADER = (
    '| slice | step | chips | batch per chip (global) | memory per chip, GB (of HBM) | fits '
    '| XLA GFLOP per chip (project) | XLA GB accessed | estimate: roofline step, ms (bound) '
    '| estimate: images/s | estimate: training, h | largest batch per chip: memory, GB '
    '| its estimate: step ms, images/s, training h | compile, s |\n'
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n')


def markdown_rows(results: dict[str, Any]) -> str:
  """One Markdown table row per compiled step (MARKDOWN_HEADER's columns)."""
  rows = []
  for r in results['steps']:
    memory = r['memory_per_chip']
    need = memory['total'] if memory['total'] is not None else memory['temporaries']
    cells = [r['preset'], r['what'], str(r['chips']),
             f'{r["batch_per_chip"]} ({r["global_batch"]})',
             f'{_gb(need)} ({_gb(r["hbm_per_chip"])})', 'yes' if r['fits'] else 'no']
    estimate = r.get('estimate')
    if estimate:
      cells += [f'{r["xla_gflop_per_chip"]:.0f} ({r["project_gflop_per_chip"]:.0f})',
                f'{r["xla_gb_accessed_per_chip"]:.1f}',
                f'{1e3 * estimate["roofline_step_s"]:.1f} ({estimate["bound_by"]})',
                f'{estimate["images_per_s"]:.0f}',
                f'{estimate["train_hours"]:.1f}' if 'train_hours' in estimate else '-']
    else:
      cells += ['-'] * 5
    largest = r.get('max_batch')
    if largest and largest.get('estimate'):
      e = largest['estimate']
      cells += [f'{largest_batch_cell(r)}: {_gb(largest["memory_per_chip"]["total"])}',
                f'{1e3 * e["roofline_step_s"]:.1f}, {e["images_per_s"]:.0f}, '
                + (f'{e["train_hours"]:.1f}' if 'train_hours' in e else '-')]
    else:
      cells += ['-', '-']
    cells.append(f'{r["compile_s"]:.0f}')
    rows.append('| ' + ' | '.join(cells) + ' |\n')
  return ''.join(rows)


def write_results(results: dict[str, Any], *, json_path: str | None = None,
                  markdown_path: str | None = None, printer=print) -> None:
  """The results as Markdown rows appended to `markdown_path` (the header first
  when the file is new), a JSON line written to `json_path`, and, last, that
  JSON line printed."""
  line = json.dumps(results)
  if markdown_path:
    new = not os.path.exists(markdown_path) or not os.path.getsize(markdown_path)
    with open(markdown_path, 'a') as f:
      f.write((MARKDOWN_HEADER if new else '') + markdown_rows(results))
  if json_path:
    with open(json_path, 'w') as f:
      f.write(line + '\n')
  printer(line)
