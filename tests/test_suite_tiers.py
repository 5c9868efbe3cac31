"""The fast tier's hint (tests/conftest.py's SlowTestHint), on a session of its own."""
from __future__ import annotations

from tests.conftest import SlowTestHint

pytest_plugins = ['pytester']

_TESTS = '''
import time
import pytest

def test_quick():
  pass

def test_sleeps():
  time.sleep(0.3)

@pytest.mark.slow
def test_marked_and_sleeps():
  time.sleep(0.3)
'''


def test_names_the_unmarked_tests_over_the_budget_only(pytester):
  pytester.makeini('[pytest]\nmarkers =\n    slow: slow')
  pytester.makepyfile(test_timed=_TESTS)
  result = pytester.runpytest('-p', 'no:cacheprovider', plugins=[SlowTestHint(seconds=0.2)])
  result.assert_outcomes(passed=3)
  (line,) = [line for line in result.outlines if line.startswith('unmarked tests over')]
  assert line.startswith('unmarked tests over 0.2 s (mark them slow, or make them cheaper): ')
  assert 'test_timed.py::test_sleeps (0 s)' in line
  assert 'test_quick' not in line and 'test_marked_and_sleeps' not in line


def test_says_nothing_when_every_test_is_within_the_budget(pytester):
  pytester.makepyfile(test_timed='def test_quick():\n  pass\n')
  result = pytester.runpytest('-p', 'no:cacheprovider', plugins=[SlowTestHint(seconds=0.2)])
  result.assert_outcomes(passed=1)
  assert not [line for line in result.outlines if line.startswith('unmarked tests over')]
