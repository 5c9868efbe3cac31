"""A trained network as self-contained inference artefacts for other runtimes.

The inference function takes uint8 RGB images (B, S, S, 3) and returns
`keypoints` (B, J, 2) in input pixels, `confidence` (B, J) and the last
stage's `heatmaps` (B, S/4, S/4, J): the predictor's function
(rhpe_jax.inference.predictor.predict: normalisation, network, last stage,
decoding) on the network with batch norm folded into the convolutions, in
float32.

Four writers serialise it:
  jax_export   `jax.export` (StableHLO), callable from any JAX program;
  saved_model  a TF SavedModel (the `jax.export` StableHLO in one
               XlaCallModule op, as jax2tf makes it), for TF Serving and TF
               programs;
  tflite       the TFLite converter's translation of that StableHLO into
               builtin TFLite ops (no SELECT_TF_OPS, no Flex delegate);
  onnx         jax2onnx's ONNX model of the same function, for onnxruntime
               (rhpe_jax.deploy.onnx_export).
The batch size is symbolic in all three unless a fixed one is asked for.
The two TF artefacts carry StableHLO in the version the installed TensorFlow
reads (rhpe_jax.deploy.tf_stablehlo), or stop with one line saying why not. JAX can
only serialise to StableHLO in current versions (jax2tf's graph-of-TF-ops mode
is gone), so the TFLite file comes from the converter's StableHLO
legalisation; decode.heatmaps_to_keypoints and the predictor's last-stage
slice avoid the two operations that it cannot translate (a two-operand argmax
reduction, a gather on a batch of symbolic size).
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rhpe_jax import checkpoints
from rhpe_jax.core import keypoint_sets
from rhpe_jax.deploy import tf_stablehlo
from rhpe_jax.inference import estimator
from rhpe_jax.inference import predictor
from rhpe_jax.model import network as model_lib

FORMATS = ('saved_model', 'tflite', 'jax_export', 'onnx')
DEFAULT_FORMATS = ('saved_model', 'tflite', 'jax_export')  # those without extra packages
# The formats written at each precision: float16 weights (TFLite's float16
# quantisation), int8 (TFLite's post-training integer quantisation and
# onnxruntime's static quantisation, onnx_export.int8_model, both calibrated
# on CALIBRATION_IMAGES crops of the training split). ONNX float16 is
# float16 weights as well (onnx_export.float16_weights): jax2onnx 0.13 cannot
# convert the float16 network (a Concat of float16 and float32).
PRECISION_FORMATS = {'float32': FORMATS, 'float16': ('tflite', 'onnx'),
                     'int8': ('tflite', 'onnx')}
CALIBRATION_IMAGES = 8
AGREEMENT_IMAGES = 8  # validation crops on which a reduced precision is measured
# The decode's DIV and LOG (sub-pixel refinement) stay float in an int8 model:
# quantised, a curvature rounded to 0 divides by zero.
_FLOAT_OPS_IN_INT8 = ('DIV', 'LOG')
STRIDE = model_lib.STRIDE
OUTPUTS = ('keypoints', 'confidence', 'heatmaps')  # what the artefacts return
# StableHLO for these platforms goes into the jax.export and SavedModel
# artefacts; TFLite gets a CPU-only lowering of its own.
PLATFORMS = ('cpu', 'cuda', 'tpu')

InferenceFn = Callable[[jax.Array], dict[str, jax.Array]]


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
  """Format names from 'a,b' or a list; one-line error for unknown names."""
  names = [n.strip() for n in (text.split(',') if isinstance(text, str) else text)]
  names = [n for n in names if n]
  unknown = [n for n in names if n not in FORMATS]
  if unknown or not names:
    raise ValueError(f'unknown export formats {unknown or names}; choose from {",".join(FORMATS)}')
  return tuple(dict.fromkeys(names))


def check_precision(precision: str, formats: Sequence[str]) -> None:
  """One-line error for an unknown precision or one a format lacks."""
  if precision not in PRECISION_FORMATS:
    raise ValueError(f'unknown precision {precision!r}; choose from '
                     f'{",".join(PRECISION_FORMATS)}')
  lacking = [f for f in formats if f not in PRECISION_FORMATS[precision]]
  if lacking:
    raise ValueError(f'precision={precision} is written for '
                     f'{",".join(PRECISION_FORMATS[precision])} only, not {",".join(lacking)}')


def check_image_size(image_size: int) -> None:
  if image_size <= 0 or image_size % STRIDE:
    raise ValueError(f'image size must be a positive multiple of {STRIDE}, got {image_size}')


def _batch_norm_affine(norm: Mapping[str, Any], stats: Mapping[str, Any]
                       ) -> tuple[jax.Array, jax.Array]:
  """Batch norm at inference as x * s + o: s = gamma / sqrt(var + eps),
  o = beta - mean * s (per channel; (P, C) for statistics per pass)."""
  scale = norm['scale'] / jnp.sqrt(stats['var'] + model_lib.BATCH_NORM_EPSILON)
  return scale, norm['bias'] - stats['mean'] * scale


def _fold_conv(conv: Mapping[str, Any], norm: Mapping[str, Any], stats: Mapping[str, Any]
               ) -> dict[str, jax.Array]:
  """Kernel and bias of conv-then-batch-norm as one convolution: BN(x * W + c)
  = x * (W s) + (c s + o), s and o per output channel (_batch_norm_affine)."""
  scale, offset = _batch_norm_affine(norm, stats)
  return {'kernel': conv['kernel'] * scale, 'bias': conv['bias'] * scale + offset}


def _fold_tree(params: Mapping[str, Any], stats: Mapping[str, Any] | None) -> dict[str, Any]:
  if 'BatchNorm_0' in params:
    return {'Conv_0': _fold_conv(params['Conv_0'], params['BatchNorm_0'], stats['BatchNorm_0'])}
  return {name: _fold_tree(child, (stats or {}).get(name)) if isinstance(child, Mapping) else child
          for name, child in params.items()}


def fold_batch_norm(params: Mapping[str, Any], batch_stats: Mapping[str, Any]
                    ) -> dict[str, Any]:
  """Parameters of the `batch_norm_folded` network computing what the
  trained network computes at inference (running averages).

  The feed-forward batch norms are folded into their convolutions. The
  fusion passes share their convolutions but not their statistics, so the
  fusion convolutions stay as they are (stored once) and each pass's batch
  norm becomes a scale and offset of its own, applied after them
  ('fusion_batch_norm', (passes, C) each).
  """
  params, batch_stats = dict(params), dict(batch_stats)
  fusion = dict(params.pop('fusion'))
  per_pass = params.pop('fusion_batch_norm', {})  # batch_norm_per_pass: (passes, C) each
  scale_offsets = {}
  for name, stats in batch_stats.pop('fusion').items():
    layer = dict(fusion[name])
    norm = layer.pop('BatchNorm_0', None) or per_pass[name]
    scale, offset = _batch_norm_affine(norm, stats['BatchNorm_0'])
    scale_offsets[name] = {'scale': scale, 'bias': offset}
    fusion[name] = layer
  return dict(_fold_tree(params, batch_stats), fusion=fusion, fusion_batch_norm=scale_offsets)


def inference_model(config: ml_collections.ConfigDict) -> model_lib.RecurrentPoseNet:
  """The config's network with batch norm folded, float32, no body-part heads,
  and plain convolutions (the runtimes that load an export have their own)."""
  return model_lib.create_model(config).clone(
      num_parts=0, dtype=jnp.float32, batch_norm_folded=True, remat=False, tuned_convolutions=False)


def inference_params(config: ml_collections.ConfigDict, variables: Mapping[str, Any]
                     ) -> dict[str, Any]:
  """The folded parameters of the network's variables ({'params',
  'batch_stats'}), without the body-part heads."""
  folded = fold_batch_norm(variables['params'], variables['batch_stats'])
  for heads in (folded['heads_0'], folded['fusion']['heads']):
    heads.pop('parts', None)
  return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), folded)


def inference_fn(config: ml_collections.ConfigDict
                 ) -> Callable[[Mapping[str, Any], jax.Array], dict[str, jax.Array]]:
  """(folded parameters, uint8 images (B, S, S, 3)) -> {keypoints, confidence,
  heatmaps}: the predictor's `predict` on the folded network."""
  net = inference_model(config)

  def infer(params: Mapping[str, Any], images: jax.Array) -> dict[str, jax.Array]:
    return predictor.predict(net, {'params': params}, images, outputs=OUTPUTS)

  return infer


def make_inference_fn(config: ml_collections.ConfigDict, params: Mapping[str, Any]
                      ) -> InferenceFn:
  """`inference_fn` with the folded parameters built in (as constants)."""
  return functools.partial(inference_fn(config), params)


def input_spec(image_size: int, batch: int | None) -> jax.ShapeDtypeStruct:
  """uint8 (B, S, S, 3), B symbolic ('batch') when `batch` is None."""
  check_image_size(image_size)
  if batch is not None and batch <= 0:
    raise ValueError(f'batch must be positive (or None for any size), got {batch}')
  leading = jax.export.symbolic_shape('batch') if batch is None else (batch,)
  return jax.ShapeDtypeStruct((*leading, image_size, image_size, 3), jnp.uint8)


def export_jax(config: ml_collections.ConfigDict, params: Mapping[str, Any], image_size: int,
               batch: int | None = None, platforms: Sequence[str] = PLATFORMS
               ) -> jax.export.Exported:
  """The inference function with its parameters as constants, for images only."""
  return jax.export.export(jax.jit(make_inference_fn(config, params)),
                           platforms=tuple(platforms))(input_spec(image_size, batch))


def write_jax_export(path: str | os.PathLike, exported: jax.export.Exported) -> None:
  pathlib.Path(path).write_bytes(exported.serialize())


def export_for_tensorflow(config: ml_collections.ConfigDict, params: Mapping[str, Any],
                          image_size: int, batch: int | None,
                          platforms: Sequence[str]) -> jax.export.Exported:
  """`inference_fn` exported with the parameters as arguments (so that the
  TF artefacts store them once, as variables), in StableHLO the installed
  TensorFlow reads (tf_stablehlo.for_tensorflow: one-line error otherwise)."""
  param_specs = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  exported = jax.export.export(jax.jit(inference_fn(config)), platforms=tuple(platforms))(
      param_specs, input_spec(image_size, batch))
  return tf_stablehlo.for_tensorflow(exported)


def _tf_module(exported: jax.export.Exported, params: Mapping[str, Any]):
  """A tf.Module holding the parameters as tf.Variables (stored once, outside
  the graph) and, as `serve`, the exported inference function as one
  XlaCallModule op (what jax2tf makes, from a module TensorFlow reads)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images = exported.in_avals[-1]
  module = tf.Module()
  # In the export's argument order: the parameters' leaves, then the images.
  module.params = [tf.Variable(x, trainable=False) for x in jax.tree_util.tree_leaves(params)]
  module.serve = tf.function(
      lambda images: tf_stablehlo.call_exported(exported, [*module.params, images]),
      autograph=False,
      input_signature=[tf.TensorSpec([d if isinstance(d, int) else None for d in images.shape],
                                     tf.uint8, name='images')])
  return module


def write_saved_model(directory: str | os.PathLike, exported: jax.export.Exported,
                      params: Mapping[str, Any]) -> None:
  """SavedModel with signature `serving_default`: images -> the three outputs,
  from `export_for_tensorflow(..., platforms=PLATFORMS)` and its parameters."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  module = _tf_module(exported, params)
  tf.saved_model.save(module, str(directory),
                      signatures={'serving_default': module.serve.get_concrete_function()})


def _name_tensors_after_signature(model: bytes) -> bytes:
  """The flatbuffer with every signature input/output tensor named as in the
  signature ('images', 'keypoints', ...) instead of 'StatefulPartitionedCall:0'."""
  from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
  for signature in tree.signatureDefs:
    tensors = tree.subgraphs[signature.subgraphIndex].tensors
    for entry in list(signature.inputs) + list(signature.outputs):
      tensors[entry.tensorIndex].name = entry.name
  return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def tflite_model(exported: jax.export.Exported, params: Mapping[str, Any],
                 precision: str = 'float32', calibration: np.ndarray | None = None) -> bytes:
  """The TFLite flatbuffer (builtin ops only) of a CPU-only
  `export_for_tensorflow` and its parameters: float32; float16 weights; or
  int8 calibrated on the uint8 images `calibration` (N, S, S, 3), one at a
  time, with _FLOAT_OPS_IN_INT8 kept float."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  module = _tf_module(exported, params)
  function = module.serve.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if precision == 'float32':
    return _name_tensors_after_signature(converter.convert())
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if precision == 'float16':
    converter.target_spec.supported_types = [tf.float16]
    return _name_tensors_after_signature(converter.convert())
  if calibration is None:
    raise ValueError('int8 needs calibration images')
  images = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
  converter.representative_dataset = images
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # its tf.lite.Interpreter's deprecation notice
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=images,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=list(_FLOAT_OPS_IN_INT8)))
    model = debugger.get_nondebug_quantized_model()
  return _name_tensors_after_signature(model)


def split_crops(config: ml_collections.ConfigDict, split: str, count: int,
                image_size: int) -> np.ndarray:
  """The first `count` un-augmented uint8 crops (N, S, S, 3) of the
  config's dataset `split`, as evaluation makes them."""
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  sized = config.copy_and_resolve_references()
  sized.input_size = image_size
  raw = input_pipeline.load_split(config.dataset, split, config.data_dir,
                                  shard_for_process=False).take(count)
  ds = input_pipeline.make_eval_dataset(raw, config=augment.AugmentConfig.from_mapping(sized),
                                        global_batch_size=count)
  batch = next(iter(ds.as_numpy_iterator()))
  return np.asarray(batch['image'][batch['valid'] > 0], np.uint8).reshape(
      -1, image_size, image_size, 3)


def run_tflite(model: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
  """The TFLite flatbuffer `model` run by the TFLite interpreter."""
  import warnings  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # tf.lite.Interpreter's deprecation notice
    runner = tf.lite.Interpreter(model_content=model).get_signature_runner('serving_default')
  return runner(images=images)


def agreement_of(got: Mapping[str, np.ndarray], reference: InferenceFn, images: np.ndarray
              ) -> dict[str, Any]:
  """How far an artefact's outputs `got` on `images` are from the float32
  network `reference`'s: keypoint distance in input pixels (median, max)
  and the largest confidence difference."""
  expected = jax.jit(reference)(images)
  distance = np.linalg.norm(got['keypoints'] - np.asarray(expected['keypoints']), axis=-1)
  return {'images': int(len(images)),
          'keypoint_error_px_median': round(float(np.median(distance)), 4),
          'keypoint_error_px_max': round(float(distance.max()), 4),
          'confidence_error_max': round(float(
              np.abs(got['confidence'] - np.asarray(expected['confidence'])).max()), 5)}


# The platforms each TF artefact is lowered for.
_TF_PLATFORMS = {'saved_model': PLATFORMS, 'tflite': ('cpu',)}


_README = """\
# Pose network export

Recurrent Human Pose Estimation network (rhpe_jax), checkpoint step {step},
exported for inference: batch norm folded into the convolutions, {precision}.

## Input
`images`: uint8 RGB, shape ({batch}, {size}, {size}, 3), values 0-255 (no
normalisation needed: the artefacts subtract 128 and divide by 256 themselves).
The network expects one person roughly centred, filling about 2/3 of the
height (MPII's crop: a square of side 1.5 x 200 x scale px around the person
centre, resized to {size} x {size}).

## Outputs
- `keypoints` ({batch}, {num_keypoints}, 2): [x, y] of every keypoint in input pixels
  (0-based pixel centres: the top-left pixel's centre is (0, 0)).
- `confidence` ({batch}, {num_keypoints}): the maximum of the keypoint's heat map (about
  1 for a sure keypoint; low for occluded or absent ones).
- `heatmaps` ({batch}, {grid}, {grid}, {num_keypoints}): the last stage's heat maps;
  heat-map pixel (u, v) is centred on input pixel ({stride} u + {half}, {stride} v + {half}).

Keypoint order ({keypoint_set}): {keypoint_list}.

## Back to the original image
If the input is the square crop of side `L` pixels whose top-left corner
is at `(x0, y0)` in the original image, resized to {size} x {size}, a keypoint
`(x, y)` in input pixels is, in original pixels,

    x_orig = x0 + (x + 0.5) * L / {size} - 0.5
    y_orig = y0 + (y + 0.5) * L / {size} - 0.5

(for any affine crop, apply the inverse of the original->input map).

## Files
{files}
"""

_FILE_NOTES = {
    'saved_model': ('saved_model/', 'TF SavedModel, signature `serving_default` '
                    '(`tf.saved_model.load(d).signatures["serving_default"](images=x)`, '
                    'or TF Serving).'),
    'tflite': ('model.tflite', 'TFLite, builtin ops only; run it with '
               '`ai_edge_litert.interpreter.Interpreter` (or `tf.lite.Interpreter`) '
               'through `get_signature_runner()`.'),
    'jax_export': ('model.jax_export', '`jax.export` serialisation: '
                   '`jax.export.deserialize(open(f, "rb").read()).call(images)` returns a dict.'),
    'onnx': (estimator.ONNX_FILE, 'ONNX (opset {opset}), batch free; onnxruntime (Python, C++, '
             'onnxruntime-web), below.'),
}

_ONNX_USAGE = """
## Running model.onnx
Python (`pip install onnxruntime`):

    import numpy as np, onnxruntime, os
    options = onnxruntime.SessionOptions()  # one thread per core, spinning off: fastest on CPU
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = onnxruntime.InferenceSession('model.onnx', options,
                                           providers=['CPUExecutionProvider'])
    # images: uint8 (B, {size}, {size}, 3)
    keypoints, confidence, heatmaps = session.run(None, {{'images': images}})

C++ (onnxruntime's C++ API, `#include <onnxruntime_cxx_api.h>`):

    Ort::Env env;
    Ort::Session session(env, "model.onnx", Ort::SessionOptions{{}});
    std::vector<int64_t> shape{{1, {size}, {size}, 3}};
    auto input = Ort::Value::CreateTensor<uint8_t>(
        Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault),
        pixels.data(), pixels.size(), shape.data(), shape.size());
    const char* in[] = {{"images"}};
    const char* out[] = {{"keypoints", "confidence", "heatmaps"}};
    auto outputs = session.Run(Ort::RunOptions{{}}, in, &input, 1, out, 3);
    const float* keypoints = outputs[0].GetTensorData<float>();  // (1, {num_keypoints}, 2)

Browser (onnxruntime-web, `npm install onnxruntime-web`):

    import * as ort from 'onnxruntime-web';
    const session = await ort.InferenceSession.create('model.onnx');
    const images = new ort.Tensor('uint8', pixels, [1, {size}, {size}, 3]);  // RGB, row-major
    const {{keypoints, confidence}} = await session.run({{images}});

The page `index.html` does all of it: serve this folder (`python -m http.server`),
open http://localhost:8000/index.html and choose a picture of one person (or
the webcam); `index.html?image=URL` predicts URL and writes the keypoints
(image pixels) as JSON into the element with id `keypoints`. It runs offline
with onnxruntime-web's WebAssembly files beside it ({web_files}, about 15 MB):
export with `--onnxruntime_web=node_modules/onnxruntime-web` after
`npm install onnxruntime-web@{web_version}`, or without npm:

    curl -L https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{web_version}.tgz | tar xz
    cp {web_copy} .
"""

MANIFEST = estimator.MANIFEST


_PRECISION_NOTES = {
    'float32': 'float32',
    'float16': 'float16 weights (stored float16, computed in float32 on CPU)',
    'int8': ('int8 (TFLite post-training integer quantisation, the decode\'s DIV and LOG '
             'float; ONNX: onnxruntime static quantisation of the convolutions, per channel, '
             'the rest float; both calibrated on {n} crops of the training split)'),
}


def readme_text(config: ml_collections.ConfigDict, step: int, image_size: int,
                batch: int | None, formats: Sequence[str], precision: str = 'float32',
                agreement: Mapping[str, Any] | None = None) -> str:
  """DIR/README.md: input, outputs, joint order, mapping back to the image,
  how to run each artefact, a reduced precision's measured agreement."""
  from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
  keypoint_set = keypoint_sets.of_config(config)
  files = '\n'.join(f'- `{_FILE_NOTES[f][0]}`: {_FILE_NOTES[f][1].format(opset=onnx_export.OPSET)}'
                    for f in formats)
  files += f'\n- `{MANIFEST}`: versions, config, checkpoint step, input and output contract.'
  text = _README.format(
      precision=_PRECISION_NOTES[precision].format(n=CALIBRATION_IMAGES), step=step,
      batch='B' if batch is None else batch, size=image_size,
      grid=image_size // STRIDE, num_keypoints=keypoint_set.num_keypoints, stride=STRIDE,
      half=(STRIDE - 1) / 2, keypoint_set=keypoint_set.name,
      keypoint_list=', '.join(f'{i} {n}' for i, n in enumerate(keypoint_set.keypoint_names)),
      files=files)
  if 'onnx' in formats:
    text += _ONNX_USAGE.format(
        size=image_size, num_keypoints=keypoint_set.num_keypoints,
        web_version=onnx_export.ONNXRUNTIME_WEB_VERSION,
        web_files=', '.join(onnx_export.ONNXRUNTIME_WEB_FILES),
        web_copy=' '.join(f'package/dist/{name}' for name in onnx_export.ONNXRUNTIME_WEB_FILES))
  if agreement:
    text += '\n## Agreement with the float32 network\n'
    for name, measured in agreement.items():
      text += (f'On {measured["images"]} crops of the validation split, the {precision} '
               f'{_FILE_NOTES[name][0]}\'s keypoints are {measured["keypoint_error_px_median"]} '
               f'px (median) and {measured["keypoint_error_px_max"]} px (worst) from the float32 '
               f'network\'s, its confidences within {measured["confidence_error_max"]}.\n')
  return text


def manifest(config: ml_collections.ConfigDict, step: int, image_size: int,
             batch: int | None, formats: Sequence[str], stablehlo: str | None,
             precision: str = 'float32', agreement: Mapping[str, Any] | None = None
             ) -> dict[str, Any]:
  """DIR/manifest.json: what wrote the artefacts (versions; `stablehlo`: the
  version written into the StableHLO artefacts, None without one), from which
  network and checkpoint, and their input and output contract."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  keypoint_set = keypoint_sets.of_config(config)
  installed = metadata.packages_distributions()  # import name -> distributions
  versions = {}
  for name in ('rhpe_jax', 'jax', 'jaxlib', 'flax', 'tensorflow', 'jax2onnx', 'onnx',
               'onnxruntime'):  # tensorflow: from tensorflow or tensorflow-cpu
    versions[name] = next((metadata.version(d) for d in installed.get(name, ())), None)
  return {
      'formats': {name: _FILE_NOTES[name][0] for name in formats},
      'versions': versions,
      'stablehlo_version': stablehlo,
      'precision': precision,
      'agreement_with_float32': None if agreement is None else {
          name: {'split': config.eval_split, **measured} for name, measured in agreement.items()},
      'checkpoint_step': step,
      'config': json.loads(config.to_json_best_effort()),
      'input': {'name': 'images', 'dtype': 'uint8', 'layout': 'NHWC, RGB',
                'shape': [batch, image_size, image_size, 3],
                'normalisation': f'inside the artefact: (pixel - {model_lib.PIXEL_MEAN:g}) / '
                                 f'{model_lib.PIXEL_SCALE:g}'},
      # What PoseEstimator.from_export runs around the model (rhpe_jax.inference.estimator).
      estimator.PROCESSING: estimator.processing(
          keypoint_set, input_size=image_size, stride=STRIDE, box_scale=config.box_scale,
          pixel_mean=model_lib.PIXEL_MEAN, pixel_scale=model_lib.PIXEL_SCALE),
      'output': {
          'keypoints': {'shape': [batch, keypoint_set.num_keypoints, 2], 'dtype': 'float32',
                        'units': '[x, y] in input pixels, 0-based pixel centres'},
          'confidence': {'shape': [batch, keypoint_set.num_keypoints], 'dtype': 'float32'},
          'heatmaps': {'shape': [batch, image_size // STRIDE, image_size // STRIDE,
                                 keypoint_set.num_keypoints], 'dtype': 'float32'},
          'stages': config.num_iterations + 2, 'stage_returned': 'last',
          'keypoint_set': keypoint_set.name, 'keypoint_names': list(keypoint_set.keypoint_names)},
  }


def _onnx_model(config: ml_collections.ConfigDict, params: Mapping[str, Any], image_size: int,
                batch: int | None) -> Any:
  from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
  return onnx_export.onnx_model(make_inference_fn(config, params), input_spec(image_size, batch),
                                OUTPUTS)


def export(config: ml_collections.ConfigDict, variables: Mapping[str, Any],
           output: str | os.PathLike, *,
           formats: Sequence[str] = DEFAULT_FORMATS, image_size: int | None = None,
           batch: int | None = None, step: int = 0, precision: str = 'float32',
           onnxruntime_web: str | os.PathLike | None = None) -> dict[str, str]:
  """Writes the chosen artefacts of the network's `variables`, README.md and
  manifest.json to `output` (with ONNX, the browser page beside model.onnx,
  and onnxruntime-web's files from the folder `onnxruntime_web` when given:
  onnx_export.write_web_page); returns their paths.

  Everything is written to a temporary folder beside `output` and moved in
  at the end: a failed conversion leaves no partial artefact behind."""
  formats = parse_formats(formats)
  image_size = config.input_size if image_size is None else image_size
  input_spec(image_size, batch)  # validates before any work
  check_precision(precision, formats)
  if 'onnx' in formats:
    from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
    onnx_export.check_packages()
    if onnxruntime_web:
      onnx_export.onnxruntime_web_files(onnxruntime_web)
  elif onnxruntime_web:
    raise ValueError('onnxruntime_web is for the browser page of the onnx format '
                     '(add onnx to formats)')
  params = inference_params(config, variables)
  # The TF artefacts' StableHLO first: a version TensorFlow cannot read stops
  # the export here, before anything is written.
  for_tf = {name: export_for_tensorflow(config, params, image_size, batch, _TF_PLATFORMS[name])
            for name in formats if name in _TF_PLATFORMS}
  calibration = None
  if precision == 'int8':
    calibration = split_crops(config, config.train_split, CALIBRATION_IMAGES, image_size)
  out = pathlib.Path(output)
  out.parent.mkdir(parents=True, exist_ok=True)
  stablehlo, agreement = None, {}
  if precision != 'float32':
    reference = make_inference_fn(config, params)
    crops = split_crops(config, config.eval_split, AGREEMENT_IMAGES, image_size)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
  try:
    for name in formats:
      path = staging / _FILE_NOTES[name][0]
      if name == 'jax_export':
        exported = export_jax(config, params, image_size, batch)
        stablehlo = tf_stablehlo.written_version(exported.mlir_module_serialized)
        write_jax_export(path, exported)
      elif name == 'saved_model':
        write_saved_model(path, for_tf[name], params)
      elif name == 'tflite':
        model = tflite_model(for_tf[name], params, precision, calibration)
        path.write_bytes(model)
        if precision != 'float32':
          agreement[name] = agreement_of(run_tflite(model, crops), reference, crops)
      else:
        from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
        model = _onnx_model(config, params, image_size, batch)
        if precision == 'float16':
          model = onnx_export.float16_weights(model)
        elif precision == 'int8':
          model = onnx_export.int8_model(model, calibration)
        onnx_export.write_onnx(path, model)
        onnx_export.write_web_page(staging, onnxruntime_web)
        if precision != 'float32':
          agreement[name] = agreement_of(onnx_export.run_onnx(path, crops), reference, crops)
    if stablehlo is None and for_tf:
      stablehlo = tf_stablehlo.written_version(
          next(iter(for_tf.values())).mlir_module_serialized)
    (staging / 'README.md').write_text(readme_text(config, step, image_size, batch, formats,
                                                   precision, agreement))
    (staging / MANIFEST).write_text(json.dumps(
        manifest(config, step, image_size, batch, formats, stablehlo, precision, agreement),
        indent=1) + '\n')
    out.mkdir(exist_ok=True)
    for written in staging.iterdir():
      target = out / written.name
      if target.is_dir():
        shutil.rmtree(target)
      os.replace(written, target)
    files = {name: _FILE_NOTES[name][0] for name in formats}
    files.update(readme='README.md', manifest=MANIFEST)
    if 'onnx' in formats:
      files['web_page'] = 'index.html'
    paths = {name: str(out / file.rstrip('/')) for name, file in files.items()}
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return paths


def export_checkpoint(config: ml_collections.ConfigDict | str | None, workdir: str,
                      output: str, *,
                      checkpoint: str = 'best',
                      formats: str | Sequence[str] = DEFAULT_FORMATS,
                      image_size: int | None = None, batch: int | None = None,
                      precision: str = 'float32',
                      onnxruntime_web: str | None = None) -> dict[str, str]:
  """`experiments.export`: checks the arguments, restores a checkpoint of
  `workdir` (`config` None: the one the run wrote), writes the artefacts;
  returns their paths."""
  config = checkpoints.config_of_workdir(workdir, config)
  formats = parse_formats(formats)
  check_precision(precision, formats)
  input_spec(config.input_size if image_size is None else image_size, batch)
  checkpoints.find_checkpoint(workdir, checkpoint)
  if os.path.isfile(output):
    raise FileExistsError(f'output {output} is a file, not a directory')
  variables, step = checkpoints.restore_variables(config, workdir, checkpoint)
  return export(config, variables, output, formats=formats, image_size=image_size,
                batch=batch, step=step, precision=precision, onnxruntime_web=onnxruntime_web)
