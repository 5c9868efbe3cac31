"""The inference function (rhpe_jax.deploy.export.inference_fn) as an ONNX
model, through jax2onnx, with a free batch size.

jax2onnx traces the function it converts with `jnp.shape` replaced by a
primitive of its own, and flax's `nn.scan` (the fusion passes) cannot build
its carry from such a shape. So the function is traced by JAX first, to a
jaxpr with a symbolic batch, and jax2onnx converts the evaluation of that
jaxpr. Some of its equations are rewritten on the way, as the same
computation in what jax2onnx 0.13 converts best:
  - `scan` (the fusion passes) is unrolled: jax2onnx writes a scan as an
    ONNX Loop whatever its `unroll`, and inside a Loop onnxruntime gathers
    and transposes the shared weights on every pass (and cannot save the
    model it optimised); unrolled, each weight is one initializer that
    every pass reads;
  - ReLU (`jax.nn.relu`'s `custom_jvp_call`, max(x, 0) inside) is bound as
    `jax.nn.relu`, which jax2onnx writes as `Relu` (onnxruntime fuses it
    into the convolution before it; `Max(x, 0)` it does not);
  - jax 0.10's `stack` primitive (the decode's [x, y] pair), which jax2onnx
    does not know, as a concatenation of expanded operands;
  - the integer `rem` (the arg-max's column), whose conversion fails for a
    symbolic batch: rem(x, y) = x - div(x, y) * y, with lax's truncating div
    (C's `%`, which lax.rem is).
Other calls (jit, custom_jvp, custom_vjp) are inlined; every other equation
is bound as it is. The ONNX model is checked against the JAX function on
real images by tests/deploy/test_onnx_export.py.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rhpe_jax.inference import estimator

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
    raise MissingPackage(f"formats=['onnx'] needs {', '.join(missing)}: "
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


def _stack(values: Sequence[Any], axis: int) -> Any:
  from jax import lax  # pylint: disable=g-import-not-at-top
  return lax.concatenate([lax.expand_dims(x, (axis,)) for x in values], axis)


def _unrolled_scan(eqn, inputs: Sequence[Any], used: Sequence[bool]) -> list[Any]:
  """A `scan` equation evaluated pass by pass on `inputs` (consts, carry,
  scanned inputs): its carry out, then its stacked outputs (None where not
  `used`)."""
  from jax import lax  # pylint: disable=g-import-not-at-top
  params = eqn.params
  body, length = params['jaxpr'], params['length']
  consts = list(inputs[:params['num_consts']])
  carry = list(inputs[params['num_consts']:params['num_consts'] + params['num_carry']])
  scanned = inputs[params['num_consts'] + params['num_carry']:]
  used_stacked = used[len(carry):]
  steps = range(length - 1, -1, -1) if params['reverse'] else range(length)
  outputs = {}
  for step in steps:
    row = [lax.index_in_dim(x, step, keepdims=False) for x in scanned]
    result = _evaluate(body.jaxpr, body.consts, consts + carry + row,
                       [True] * len(carry) + list(used_stacked))
    carry, outputs[step] = result[:len(carry)], result[len(carry):]
  stacked = [_stack([outputs[step][k] for step in range(length)], 0) if wanted else None
             for k, wanted in enumerate(used_stacked)]
  return carry + stacked


def _evaluate(jaxpr, consts: Sequence[Any], args: Sequence[Any],
              used: Sequence[bool] | None = None) -> list[Any]:
  """The `used` outputs of `jaxpr` (all when None; None for the others)
  evaluated on `args`: only the equations they need, calls inlined, scans
  unrolled, ReLU, `stack` and integer `rem` rewritten (module docstring).
  Skipping the rest matters: the network's empty body-part maps, (B, H, W,
  0), would otherwise be broadcast by a Reshape that onnxruntime rejects."""
  from jax import lax  # pylint: disable=g-import-not-at-top
  from jax.extend import core as jex_core  # pylint: disable=g-import-not-at-top
  used = [True] * len(jaxpr.outvars) if used is None else used
  is_var = lambda v: not isinstance(v, jex_core.Literal)
  needed = {v for v, wanted in zip(jaxpr.outvars, used) if wanted and is_var(v)}
  live = []
  for eqn in reversed(jaxpr.eqns):
    if any(v in needed for v in eqn.outvars):
      live.append(eqn)
      needed.update(v for v in eqn.invars if is_var(v))
  env: dict[Any, Any] = {}

  def read(var):
    return var.val if isinstance(var, jex_core.Literal) else env[var]

  for var, value in zip(jaxpr.constvars, consts):
    env[var] = value
  for var, value in zip(jaxpr.invars, args):
    env[var] = value
  for eqn in reversed(live):
    inputs = [read(v) for v in eqn.invars]
    wanted = [v in needed for v in eqn.outvars]
    name = eqn.primitive.name
    if name == 'custom_jvp_call' and eqn.params['call_jaxpr'].jaxpr.debug_info.func_name == 'relu':
      outputs = [jax.nn.relu(*inputs)]  # jax2onnx's Relu while it converts
    elif name == 'scan':
      outputs = _unrolled_scan(eqn, inputs, wanted)
    elif name in _INLINED:
      inner = _sub_jaxpr(eqn)
      inner_jaxpr = getattr(inner, 'jaxpr', inner)
      inner_consts = getattr(inner, 'consts', ())
      if name == 'custom_vjp_call' or name == 'custom_jvp_call':
        inputs = inputs[len(inputs) - len(inner_jaxpr.invars):]
      outputs = _evaluate(inner_jaxpr, inner_consts, inputs, wanted)
    elif name == 'stack':
      outputs = [_stack(inputs, eqn.params['axis'])]
    elif name == 'rem' and jnp.issubdtype(eqn.invars[0].aval.dtype, jnp.integer):
      x, y = inputs
      outputs = [x - lax.div(x, y) * y]
    else:
      result = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
      outputs = result if eqn.primitive.multiple_results else [result]
    for var, value in zip(eqn.outvars, outputs):
      env[var] = value
  return [read(v) if wanted else None for v, wanted in zip(jaxpr.outvars, used)]


def convertible_fn(fn: Callable[[jax.Array], Mapping[str, jax.Array]],
                   spec: jax.ShapeDtypeStruct, outputs: Sequence[str]
                   ) -> Callable[[jax.Array], tuple[jax.Array, ...]]:
  """images -> the `outputs` of `fn`, as a tuple, through `fn`'s jaxpr for
  `spec` (module docstring): what jax2onnx converts."""
  def called_once(images: jax.Array) -> tuple[jax.Array, ...]:
    computed = fn(images)  # (not once per output)
    return tuple(computed[k] for k in outputs)

  closed = jax.make_jaxpr(called_once)(spec)

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


# The browser page (web/index.html, written beside model.onnx) runs the model
# with onnxruntime-web's WebAssembly build: these files of the npm package's
# dist/ folder, beside the page (about 14.9 MB, nearly all the .wasm).
ONNXRUNTIME_WEB_VERSION = '1.31.1'
ONNXRUNTIME_WEB_FILES = ('ort.wasm.min.js', 'ort-wasm-simd-threaded.mjs',
                         'ort-wasm-simd-threaded.wasm')
WEB_PAGE = pathlib.Path(__file__).with_name('web') / 'index.html'


def onnxruntime_web_files(folder: str | os.PathLike) -> list[pathlib.Path]:
  """ONNXRUNTIME_WEB_FILES in `folder`: the npm package's folder
  (node_modules/onnxruntime-web), its dist/, or a folder holding the files;
  one-line error naming what is missing."""
  folder = pathlib.Path(folder)
  for candidate in (folder, folder / 'dist', folder / 'node_modules' / 'onnxruntime-web' / 'dist'):
    files = [candidate / name for name in ONNXRUNTIME_WEB_FILES]
    if all(file.is_file() for file in files):
      return files
  raise FileNotFoundError(
      f'onnxruntime_web {folder} holds no {", ".join(ONNXRUNTIME_WEB_FILES)} (nor does its '
      f'dist/): give the folder of npm install onnxruntime-web@{ONNXRUNTIME_WEB_VERSION}')


def write_web_page(directory: str | os.PathLike, onnxruntime_web: str | os.PathLike | None
                   ) -> None:
  """The browser page into `directory` and, when given, onnxruntime-web's
  files from `onnxruntime_web` (onnxruntime_web_files)."""
  directory = pathlib.Path(directory)
  shutil.copyfile(WEB_PAGE, directory / WEB_PAGE.name)
  for file in onnxruntime_web_files(onnxruntime_web) if onnxruntime_web else ():
    shutil.copyfile(file, directory / file.name)


def describe_options(options: Any) -> dict[str, Any]:
  """The settings of estimator.onnx_session_options as printable values."""
  return {'intra_op_num_threads': options.intra_op_num_threads,
          'inter_op_num_threads': options.inter_op_num_threads,
          'execution_mode': options.execution_mode.name,
          'graph_optimization_level': options.graph_optimization_level.name,
          **{key: options.get_session_config_entry(key) for key in estimator.ONNX_NO_SPINNING}}


def session(path: str | os.PathLike, threads: int | None = None) -> Any:
  """An onnxruntime CPU session of the ONNX file with the README's options
  (estimator.onnx_session_options)."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  return onnxruntime.InferenceSession(str(path), estimator.onnx_session_options(threads),
                                      providers=['CPUExecutionProvider'])


def run_onnx(path: str | os.PathLike, images: np.ndarray, threads: int | None = None
             ) -> dict[str, np.ndarray]:
  """The ONNX file run by onnxruntime's CPU provider: output name -> array."""
  runner = session(path, threads)
  names = [o.name for o in runner.get_outputs()]
  return dict(zip(names, runner.run(names, {'images': images})))


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


# What int8 quantises: the convolutions (nearly all the work). Everything
# else stays float, the decode's divisions and logarithms included (a
# curvature rounded to 0 would divide by zero).
INT8_OPS = ('Conv',)


def int8_model(model: Any, calibration: np.ndarray) -> Any:
  """`model` with its convolutions in int8 by onnxruntime.quantization:
  static quantisation (QDQ), weights int8 per output channel, activations
  uint8 with ranges calibrated (min-max) on the uint8 images `calibration`
  (N, S, S, 3), one at a time. The model is pre-processed first
  (onnxruntime's basic optimisations fold the kernels' NHWC->NCHW Transposes
  into initializers, which the quantiser needs; jax2onnx's symbolic batch
  defeats the symbolic shape inference, which is skipped)."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnxruntime import quantization  # pylint: disable=g-import-not-at-top
  from onnxruntime.quantization import shape_inference  # pylint: disable=g-import-not-at-top

  class Images(quantization.CalibrationDataReader):
    def __init__(self):
      self.batches = iter([{'images': calibration[i:i + 1]} for i in range(len(calibration))])

    def get_next(self):
      return next(self.batches, None)

  with tempfile.TemporaryDirectory() as tmp:
    given, prepared, quantised = (os.path.join(tmp, name) for name in
                                  ('float.onnx', 'prepared.onnx', 'int8.onnx'))
    write_onnx(given, model)
    shape_inference.quant_pre_process(given, prepared, skip_symbolic_shape=True)
    quantization.quantize_static(
        prepared, quantised, Images(), quant_format=quantization.QuantFormat.QDQ,
        op_types_to_quantize=list(INT8_OPS), per_channel=True,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        calibrate_method=quantization.CalibrationMethod.MinMax)
    quantised_model = onnx.load(quantised)
  onnx.checker.check_model(quantised_model, full_check=True)
  return quantised_model
