"""The measurements `experiments.benchmark --what` offers (rhpe_jax.perf.benchmark
runs them). Light on purpose: the command line reads the names before it
imports JAX."""

# The compiled steps (profile_step times these too).
STEPS = ('train_step', 'inference')
WHAT = STEPS + ('input_pipeline', 'tflite', 'onnx', 'predict_folder', 'predict_video',
                'first_prediction')
