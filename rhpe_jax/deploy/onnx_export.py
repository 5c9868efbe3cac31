"""The inference function (rhpe_jax.deploy.export.inference_fn) as an ONNX
model, through jax2onnx, with a free batch size.

jax2onnx traces the function it converts with `jnp.shape` replaced by a
primitive of its own, and flax's `nn.scan` (the fusion passes) cannot build
its carry from such a shape. So the function is traced by JAX first, to a
jaxpr with a symbolic batch, and jax2onnx converts the evaluation of that
jaxpr. Two of its equations are rewritten on the way, as the same
computation in operations jax2onnx 0.13 converts: jax 0.10's `stack`
primitive (the decode's [x, y] pair), which jax2onnx does not know, and the
integer `rem` (the arg-max's column), whose conversion fails for a symbolic
batch: rem(x, y) = x - div(x, y) * y, with lax's truncating div (C's `%`,
which lax.rem is). Calls (jit, custom_jvp, custom_vjp) are inlined; every
other equation is bound as it is. The ONNX model is checked against the JAX
function on real images by tests/deploy/test_onnx_export.py.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PACKAGES = ('jax2onnx', 'onnx', 'onnxruntime')  # the writer's and the checks' packages
OPSET = 21  # ONNX 1.16; onnxruntime 1.20 and later (onnxruntime-web included) run it
_INLINED = ('jit', 'pjit', 'closed_call', 'core_call', 'custom_jvp_call', 'custom_vjp_call')


class MissingPackage(ValueError):
  """A package the ONNX export needs is not installed."""


def check_packages() -> None:
  """One line naming what to install when a package of PACKAGES is missing."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
  if missing:
    raise MissingPackage(f'--formats=onnx needs {", ".join(missing)}: '
                         "pip install 'rhpe_jax[onnx]' (or pip install " + ' '.join(PACKAGES) + ')')


def versions() -> dict[str, str]:
  """The installed versions of PACKAGES (for the manifest)."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return {name: metadata.version(name) for name in PACKAGES}


def _sub_jaxpr(eqn) -> Any:
  """The closed jaxpr an inlined call runs."""
  for key in ('jaxpr', 'call_jaxpr', 'fun_jaxpr'):
    if key in eqn.params:
      return eqn.params[key]
  raise ValueError(f'no jaxpr in the parameters of {eqn.primitive.name}')


def _evaluate(jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
  """`jaxpr` evaluated on `args`, calls inlined and `stack` and integer
  `rem` rewritten (module docstring)."""
  from jax import lax  # pylint: disable=g-import-not-at-top
  from jax.extend import core as jex_core  # pylint: disable=g-import-not-at-top
  env: dict[Any, Any] = {}

  def read(var):
    return var.val if isinstance(var, jex_core.Literal) else env[var]

  for var, value in zip(jaxpr.constvars, consts):
    env[var] = value
  for var, value in zip(jaxpr.invars, args):
    env[var] = value
  for eqn in jaxpr.eqns:
    inputs = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name in _INLINED:
      inner = _sub_jaxpr(eqn)
      inner_jaxpr = getattr(inner, 'jaxpr', inner)
      inner_consts = getattr(inner, 'consts', ())
      if name == 'custom_vjp_call' or name == 'custom_jvp_call':
        inputs = inputs[len(inputs) - len(inner_jaxpr.invars):]
      outputs = _evaluate(inner_jaxpr, inner_consts, inputs)
    elif name == 'stack':
      axis = eqn.params['axis']
      outputs = [lax.concatenate([lax.expand_dims(x, (axis,)) for x in inputs], axis)]
    elif name == 'rem' and jnp.issubdtype(eqn.invars[0].aval.dtype, jnp.integer):
      x, y = inputs
      outputs = [x - lax.div(x, y) * y]
    else:
      result = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
      outputs = result if eqn.primitive.multiple_results else [result]
    for var, value in zip(eqn.outvars, outputs):
      env[var] = value
  return [read(v) for v in jaxpr.outvars]


def convertible_fn(fn: Callable[[jax.Array], Mapping[str, jax.Array]],
                   spec: jax.ShapeDtypeStruct, outputs: Sequence[str]
                   ) -> Callable[[jax.Array], tuple[jax.Array, ...]]:
  """images -> the `outputs` of `fn`, as a tuple, through `fn`'s jaxpr for
  `spec` (module docstring): what jax2onnx converts."""
  closed = jax.make_jaxpr(lambda images: tuple(fn(images)[k] for k in outputs))(spec)

  def run(images: jax.Array) -> tuple[jax.Array, ...]:
    return tuple(_evaluate(closed.jaxpr, closed.consts, [images]))

  return run


def onnx_model(fn: Callable[[jax.Array], Mapping[str, jax.Array]],
               spec: jax.ShapeDtypeStruct, outputs: Sequence[str]) -> Any:
  """The checked `onnx.ModelProto` of `fn` (uint8 images of `spec`'s shape,
  batch symbolic when it is) with named inputs (`images`) and outputs."""
  check_packages()
  import jax2onnx  # pylint: disable=g-import-not-at-top
  import onnx  # pylint: disable=g-import-not-at-top
  import logging  # pylint: disable=g-import-not-at-top
  # Their warnings (plugins for packages of other versions, untyped shape
  # values that serialisation skips) say nothing about this model.
  loggers = [logging.getLogger(name) for name in ('jax2onnx', 'onnx_ir')]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    model = jax2onnx.to_onnx(convertible_fn(fn, spec, outputs), [spec], model_name='rhpe_pose',
                             opset=OPSET, input_names=['images'],
                             output_names=list(outputs))
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)
  onnx.checker.check_model(model, full_check=True)
  return model


def write_onnx(path: str | os.PathLike, model: Any) -> None:
  pathlib.Path(path).write_bytes(model.SerializeToString())


def run_onnx(path: str | os.PathLike, images: np.ndarray, threads: int | None = None
             ) -> dict[str, np.ndarray]:
  """The ONNX file run by onnxruntime's CPU provider: output name -> array."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  options = onnxruntime.SessionOptions()
  if threads:
    options.intra_op_num_threads = threads
  session = onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  return dict(zip(names, session.run(names, {'images': images})))


def _graphs(graph: Any) -> Any:
  """`graph` and every subgraph inside it (Loop and If bodies), depth first."""
  yield graph
  for node in graph.node:
    for attribute in node.attribute:
      if attribute.HasField('g'):
        yield from _graphs(attribute.g)
      for sub in attribute.graphs:
        yield from _graphs(sub)


def float16_weights(model: Any, min_size: int = 16) -> Any:
  """`model` with every float32 initializer of `min_size` elements or more
  stored as float16 and cast back to float32 where the graph starts: half
  the file, arithmetic in float32 (the ONNX counterpart of TFLite's float16
  weights; jax2onnx 0.13 cannot convert the float16 network itself)."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import helper, numpy_helper  # pylint: disable=g-import-not-at-top
  model = onnx.ModelProto.FromString(model.SerializeToString())
  for graph in _graphs(model.graph):
    casts, kept = [], []
    for tensor in graph.initializer:
      if tensor.data_type != onnx.TensorProto.FLOAT or np.prod(tensor.dims) < min_size:
        kept.append(tensor)
        continue
      half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16),
                                     f'{tensor.name}__float16')
      kept.append(half)
      casts.append(helper.make_node('Cast', [half.name], [tensor.name], to=onnx.TensorProto.FLOAT,
                                    name=f'{tensor.name}__to_float32'))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
  onnx.checker.check_model(model, full_check=True)
  return model
