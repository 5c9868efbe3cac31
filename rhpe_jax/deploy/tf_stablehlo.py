"""A `jax.export.Exported` as a TensorFlow op, in StableHLO the installed
TensorFlow reads.

JAX and TensorFlow each embed their own StableHLO. An artefact is readable by
an older StableHLO only if it uses none of the operations added since (jax
0.10 writes StableHLO 1.15 and TF 2.21, which reads 1.13.7, reads it; jax
0.12 writes 1.18 with `vhlo.custom_call_v2`, which TF 2.21 cannot read). So
the test is TensorFlow's own deserialiser, not a comparison of version
numbers; when it fails, TensorFlow re-serialises JAX's module for its own
version (jax.export offers no public choice of the target version), and when
that fails too the error is one line naming both versions and the way out.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from typing import Any, Sequence

import jax

_PRODUCER = re.compile(rb'StableHLO_v(\d+\.\d+\.\d+)')


class StableHloMismatch(ValueError):
  """JAX's StableHLO cannot be brought to a version TensorFlow reads."""


def written_version(serialized: bytes) -> str:
  """The StableHLO version a portable artefact was written for (its
  producer string 'StableHLO_vX.Y.Z'); 'unknown' if absent."""
  match = _PRODUCER.search(serialized)
  return match.group(1).decode() if match else 'unknown'


def tensorflow_version() -> str:
  """The newest StableHLO version the installed TensorFlow reads."""
  from tensorflow.compiler.mlir.stablehlo import stablehlo  # pylint: disable=g-import-not-at-top
  return stablehlo.get_current_version()


@contextlib.contextmanager
def _native_stderr_off():
  """MLIR's C++ diagnostics (pages of the module) off file descriptor 2: a
  failed attempt below is expected and answered by one line of our own."""
  saved = os.dup(2)
  with open(os.devnull, 'wb') as null:
    os.dup2(null.fileno(), 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def _tensorflow_reads(serialized: bytes) -> bool:
  from tensorflow.compiler.mlir.stablehlo import stablehlo  # pylint: disable=g-import-not-at-top
  try:
    with _native_stderr_off():
      stablehlo.deserialize_portable_artifact_str(serialized)
  except Exception:  # pylint: disable=broad-except  # TF raises a bare Exception here
    return False
  return True


def _reserialize(module_text: str, version: str) -> bytes | None:
  """The module serialised by TensorFlow for StableHLO `version`; None if
  TensorFlow cannot parse or express it."""
  from tensorflow.compiler.mlir.stablehlo import stablehlo  # pylint: disable=g-import-not-at-top
  try:
    with _native_stderr_off():
      return stablehlo.serialize_portable_artifact_str(module_text, version)
  except Exception:  # pylint: disable=broad-except
    return None


def for_tensorflow(exported: jax.export.Exported) -> jax.export.Exported:
  """`exported` itself when TensorFlow reads its StableHLO, else the same
  module re-serialised by TensorFlow for its own StableHLO version.

  Raises StableHloMismatch (one line) when TensorFlow cannot express it.
  """
  if _tensorflow_reads(exported.mlir_module_serialized):
    return exported
  wanted, written = tensorflow_version(), written_version(exported.mlir_module_serialized)
  serialized = _reserialize(exported.mlir_module(), wanted)
  if serialized is None or not _tensorflow_reads(serialized):
    raise StableHloMismatch(
        f'jax {jax.__version__} writes StableHLO {written}, which the installed TensorFlow '
        f'(StableHLO {wanted}) cannot read; install the tested versions (README.md, '
        f'"Supported versions"), or a TensorFlow that reads StableHLO {written}, '
        "or export with formats=['jax_export']")
  return dataclasses.replace(exported, mlir_module_serialized=serialized)


def call_exported(exported: jax.export.Exported, args: Sequence[Any]) -> Any:
  """Runs `exported` on TF tensors (its flattened arguments, in order) as one
  XlaCallModule op, as jax2tf does; returns its outputs' pytree.

  Dimensions that are symbolic in the export are None in the op's output
  shapes; TensorFlow refines them from the arguments when it runs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.compiler.tf2xla.python import xla as tfxla  # pylint: disable=g-import-not-at-top
  kept = [args[i] for i in sorted(exported.module_kept_var_idx)]
  outputs = tfxla.call_module(
      kept, version=exported.calling_convention_version,
      module=exported.mlir_module_serialized,
      Tout=[tf.as_dtype(aval.dtype) for aval in exported.out_avals],
      Sout=[tuple(d if isinstance(d, int) else None for d in aval.shape)
            for aval in exported.out_avals],
      platforms=[p.upper() for p in exported.platforms],
      disabled_checks=[str(check) for check in exported.disabled_safety_checks],
      use_shardy_partitioner=bool(jax.config.jax_use_shardy_partitioner))
  return jax.tree_util.tree_unflatten(exported.out_tree, list(outputs))
