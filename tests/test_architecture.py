"""The layers of docs/architecture.md hold: every import in rhpe_jax points down.

The layer table is read from the document, so the rule lives in one place;
the imports are read from the source with `ast` (nothing is imported), those
inside functions included.
"""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

from tests.conftest import REPO

OUTSIDE = ('experiments', 'tfds_builders', 'tests')  # never imported by the package
# What rhpe_jax/__init__.py may import, inside its module __getattr__ (PEP 562):
# `from rhpe_jax import PoseEstimator` without JAX or TensorFlow at import.
ROOT_REEXPORT = 'rhpe_jax.inference.estimator'


def read_layers(markdown: str) -> dict[str, int]:
  """{unit: layer} from the rows `| N | `unit`, `unit` | ... |` after the
  `<!-- layers` marker."""
  table = markdown.split('<!-- layers', 1)[1]
  layers = {}
  for line in table.splitlines()[1:]:
    if not line.startswith('|'):
      if layers:
        break
      continue
    cells = [c.strip() for c in line.strip('|').split('|')]
    if not cells[0].isdigit():
      continue
    for unit in re.findall(r'`(\w+)`', cells[1]):
      layers[unit] = int(cells[0])
  return layers


def imported_modules(path: pathlib.Path, package: str) -> list[tuple[int, str]]:
  """(line, dotted module) of every absolute import in a file; `from a import b`
  counts as `a.b` (b may be a module)."""
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.extend((node.lineno, alias.name) for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against the file's package
        base = package.split('.')[:len(package.split('.')) - node.level + 1]
        module = '.'.join(base + ([node.module] if node.module else []))
      else:
        module = node.module or ''
      found.extend((node.lineno, f'{module}.{alias.name}') for alias in node.names)
  return found


def unit_of(module: str) -> str | None:
  """'rhpe_jax.model.network' -> 'model'; None outside rhpe_jax."""
  parts = module.split('.')
  if parts[0] != 'rhpe_jax' or len(parts) < 2:
    return None
  return parts[1]


def violations(root: pathlib.Path, layers: dict[str, int]) -> list[str]:
  """Every import under `root` (the rhpe_jax folder) that breaks the layers."""
  problems = []
  for path in sorted(root.rglob('*.py')):
    relative = path.relative_to(root.parent).with_suffix('')
    dotted = '.'.join(relative.parts)
    package = dotted if path.name == '__init__.py' else dotted.rsplit('.', 1)[0]
    own = unit_of(dotted.removesuffix('.__init__'))
    where = f'{path.relative_to(root.parent)}'
    if own is not None and own not in layers:
      problems.append(f'{where}: unit {own!r} is in no layer of docs/architecture.md')
      continue
    for line, module in imported_modules(path, package.removesuffix('.__init__')):
      if module.split('.')[0] in OUTSIDE:
        problems.append(f'{where}:{line} imports {module} (outside the package)')
        continue
      target = unit_of(module)
      if target is None or target == own:
        continue
      if own is None:  # rhpe_jax/__init__.py: only its lazy re-export of the estimator
        if module != ROOT_REEXPORT:
          problems.append(f'{where}:{line} imports {module}: the package root imports only '
                          f'{ROOT_REEXPORT}, lazily')
      elif target not in layers:
        continue  # `from rhpe_jax.x import name` of a name, not a unit: caught by the unit rule
      elif layers[target] >= layers[own]:
        kind = 'a sibling' if layers[target] == layers[own] else 'a higher layer'
        problems.append(f'{where}:{line} imports {module}: {target!r} (layer {layers[target]}) '
                        f'is {kind} of {own!r} (layer {layers[own]})')
  return problems


@pytest.fixture(scope='module')
def layers() -> dict[str, int]:
  return read_layers((REPO / 'docs' / 'architecture.md').read_text())


def test_every_unit_of_the_package_has_a_layer(layers):
  units = {p.name for p in (REPO / 'rhpe_jax').iterdir()
           if (p.is_dir() and (p / '__init__.py').exists())
           or (p.suffix == '.py' and p.name != '__init__.py')}
  units = {u.removesuffix('.py') for u in units}
  assert units == set(layers), (sorted(units - set(layers)), sorted(set(layers) - units))
  assert layers['core'] == 0 and layers['cli'] == max(layers.values())


def test_imports_point_down_only(layers):
  assert violations(REPO / 'rhpe_jax', layers) == []


def test_the_package_root_imports_the_estimator_only_lazily():
  """Its one import sits inside a function (the module __getattr__)."""
  tree = ast.parse((REPO / 'rhpe_jax' / '__init__.py').read_text())
  assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_builders_import_only_core_and_data():
  for path in sorted((REPO / 'tfds_builders').rglob('*.py')):
    for line, module in imported_modules(path, 'tfds_builders'):
      unit = unit_of(module)
      assert unit in (None, 'core', 'data'), f'{path}:{line} imports {module}'


def test_a_violation_is_reported(tmp_path, layers):
  """The checker itself: an upward, a sideways and an outside import in a
  small tree are each named; a downward one is not."""
  package = tmp_path / 'rhpe_jax'
  for unit in ('core', 'model', 'codec', 'training'):
    (package / unit).mkdir(parents=True)
    (package / unit / '__init__.py').write_text('')
  (package / '__init__.py').write_text('')
  (package / 'core' / 'a.py').write_text('def f():\n  from rhpe_jax.training import loop\n')
  (package / 'model' / 'b.py').write_text('from rhpe_jax.codec import decode\n'
                                          'from rhpe_jax.core import keypoint_sets\n')
  (package / 'training' / 'c.py').write_text('import experiments.train\n'
                                             'from . import steps\n'
                                             'from rhpe_jax import model\n')
  found = violations(package, layers)
  assert len(found) == 3, found
  assert 'rhpe_jax/core/a.py:2' in found[0] and 'a higher layer' in found[0]
  assert 'rhpe_jax/model/b.py:1' in found[1] and 'a sibling' in found[1]
  assert 'experiments.train' in found[2] and 'outside' in found[2]
