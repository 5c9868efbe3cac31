"""rhpe_jax.deploy.tf_stablehlo: a jax.export artefact brought to the StableHLO the
installed TensorFlow reads and run as a TF op, against NumPy.

On the locked Python 3.11 stack (jax 0.10, StableHLO 1.15 written; TF 2.21
reads 1.13.7) TensorFlow reads JAX's artefacts as they are; on the newest
stack (jax 0.12 writes 1.18 with vhlo.custom_call_v2) it does not, and the
module is re-serialised. The second and third tests give TensorFlow's reader
the limits of an older TensorFlow, so that both paths run on every stack."""
from __future__ import annotations

import re

import numpy as np
import pytest

from rhpe_jax.deploy import tf_stablehlo


def _function_and_reference():
  """A function with a symbolic batch (its export checks the batch size with a
  shape_assertion custom call, the operation jax 0.12 writes as
  vhlo.custom_call_v2) and its NumPy twin."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  weights = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)

  def f(x):
    return {'y': jnp.tanh(x @ weights) + x.sum(axis=1, keepdims=True), 'n': x.shape[0] * 2}

  def reference(x):
    return {'y': np.tanh(x @ weights) + x.sum(axis=1, keepdims=True), 'n': x.shape[0] * 2}

  (batch,) = jax.export.symbolic_shape('b')
  exported = jax.export.export(jax.jit(f), platforms=('cpu',))(
      jax.ShapeDtypeStruct((batch, 3), jnp.float32))
  return exported, reference


def _run_in_tensorflow(exported, x):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  run = tf.function(lambda t: tf_stablehlo.call_exported(exported, [t]), autograph=False,
                    input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  return {k: np.asarray(v) for k, v in run(tf.constant(x)).items()}


def _check_runs_in_tensorflow(exported, reference):
  for batch in (1, 5):
    x = np.random.default_rng(batch).normal(size=(batch, 3)).astype(np.float32)
    got, want = _run_in_tensorflow(exported, x), reference(x)
    np.testing.assert_allclose(got['y'], want['y'], rtol=1e-5, atol=1e-6)
    assert int(got['n']) == want['n']


def _version(text: str) -> tuple[int, ...]:
  return tuple(int(p) for p in text.split('.'))


@pytest.fixture
def tf_stablehlo_module():
  from tensorflow.compiler.mlir.stablehlo import stablehlo  # pylint: disable=g-import-not-at-top
  return stablehlo


def test_the_result_is_what_tensorflow_reads_and_computes_the_function(tf_stablehlo_module):
  exported, reference = _function_and_reference()
  written = tf_stablehlo.written_version(exported.mlir_module_serialized)
  assert re.fullmatch(r'\d+\.\d+\.\d+', written)
  try:
    tf_stablehlo_module.deserialize_portable_artifact_str(exported.mlir_module_serialized)
    readable = True
  except Exception:  # pylint: disable=broad-except
    readable = False
  result = tf_stablehlo.for_tensorflow(exported)
  # TensorFlow's own reader accepts the result (raises otherwise).
  tf_stablehlo_module.deserialize_portable_artifact_str(result.mlir_module_serialized)
  if readable:
    assert result is exported
  else:  # the newest stack: re-serialised for TensorFlow's version
    assert tf_stablehlo.written_version(result.mlir_module_serialized) == \
        tf_stablehlo_module.get_current_version()
  _check_runs_in_tensorflow(result, reference)


def test_an_older_tensorflow_gets_the_module_in_its_version(tf_stablehlo_module, monkeypatch):
  """TensorFlow's reader limited to artefacts written for StableHLO <= 1.13.7
  (what TF 2.21 reports): JAX's artefact (1.15 or newer) is refused, the
  module is re-serialised by TensorFlow for 1.13.7 and still computes f."""
  real_reader = tf_stablehlo_module.deserialize_portable_artifact_str

  def older_reader(serialized):
    if _version(tf_stablehlo.written_version(serialized)) > (1, 13, 7):
      raise Exception('failed to deserialize module')  # pylint: disable=broad-exception-raised
    return real_reader(serialized)

  monkeypatch.setattr(tf_stablehlo_module, 'deserialize_portable_artifact_str', older_reader)
  monkeypatch.setattr(tf_stablehlo_module, 'get_current_version', lambda: '1.13.7')
  exported, reference = _function_and_reference()
  assert _version(tf_stablehlo.written_version(exported.mlir_module_serialized)) > (1, 13, 7)
  result = tf_stablehlo.for_tensorflow(exported)
  assert result is not exported
  assert tf_stablehlo.written_version(result.mlir_module_serialized) == '1.13.7'
  assert result.in_avals == exported.in_avals and result.out_tree == exported.out_tree
  _check_runs_in_tensorflow(result, reference)


def test_a_gap_that_cannot_be_bridged_is_one_line_naming_both_versions(tf_stablehlo_module,
                                                                     monkeypatch):
  def reads_nothing(serialized):
    raise Exception('failed to deserialize module')  # pylint: disable=broad-exception-raised

  monkeypatch.setattr(tf_stablehlo_module, 'deserialize_portable_artifact_str', reads_nothing)
  monkeypatch.setattr(tf_stablehlo_module, 'get_current_version', lambda: '1.2.3')
  exported, _ = _function_and_reference()
  written = tf_stablehlo.written_version(exported.mlir_module_serialized)
  with pytest.raises(tf_stablehlo.StableHloMismatch) as error:
    tf_stablehlo.for_tensorflow(exported)
  message = str(error.value)
  assert '\n' not in message
  assert f'StableHLO {written}' in message and 'StableHLO 1.2.3' in message
  assert "formats=['jax_export']" in message and 'Supported versions' in message


def test_written_version_reads_the_producer_string():
  assert tf_stablehlo.written_version(b'ML\xefR\rStableHLO_v1.13.7\x00\x01') == '1.13.7'
  assert tf_stablehlo.written_version(b'ML\xefR\rMLIR20.0.0\x00') == 'unknown'
